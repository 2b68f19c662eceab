"""The route of one query: which device runs which partition, and what travels where.

A query on a stage's placement runs that stage's partitions in their
execution order (:mod:`tiercut.graph.split`). The client sends a worker the
values and the *index of the next partition* (the migration seed's running
phase); the worker runs its partitions and, when the next one is on another
server, forwards the values and the index there itself (end -> edge ->
cloud), the results coming back along the chain of calls.

The rule every process applies (:func:`run_route`), with ``chain`` the
devices that called it (the client first):

* run the next step when it is its own;
* stop and return when the next step belongs to a device in ``chain`` (the
  caller continues);
* otherwise forward to that device: the callee runs everything up to the
  first step of a device in ``chain + [me]``, so the caller knows which
  values to send (:meth:`Route.needed`) and which to ask back
  (:meth:`Route.produced` of that span that later steps or the result read).

Only values a later step or the model's output reads are kept or sent.

Early exits (:class:`ExitCheck`): a step may carry an exit check, naming the
value its exit head produced (logits), a confidence rule from a fixed set
(:data:`EXIT_RULES`, BranchyNet's entropy or the max softmax) and a
threshold. The device that ran the step evaluates the rule right after it;
when it fires the query ends there: every other value is dropped, nothing is
forwarded further, and the exit's answer returns along the chain of calls
(``ForwardResult.exit`` names the exit; the position is the route's end).
The check is data: a rule *name* the process looks up in its own table.

A route arrives from the network: :meth:`Route.from_dict` bounds its steps
(:data:`MAX_ROUTE_STEPS`), its value names (:data:`MAX_ROUTE_NAMES` in all,
each at most :data:`MAX_NAME_CHARS` characters), and everything done with it
is linear in its size (each value's last reader is found once).

Parallel groups (:attr:`Route.parallel`): a run of consecutive steps that
read nothing of each other (the tiles of a tiled stage,
:mod:`tiercut.runtime.tiled`) runs at once. The device that reaches the
group runs its own steps of it and forwards every other step alone (a
process entered at a step inside a group runs that one step and returns),
all concurrently; when a forward fails, that step is run here instead if
this device holds its program (the tile recomputed locally), else the
failure propagates as any forward's would.

Relays (:attr:`Route.relays`): when the cost model routes the tensors
between two devices through others (no direct link, or a faster path of
links), a forward goes to the first relay with the rest of the path in the
message (``via``); each relay forwards the message unchanged to the next
device and the reply back, computing nothing (store-and-forward, as
:mod:`tiercut.cost.routing`); :meth:`Route.next_hop` is the one rule.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError

#: bounds on a route received from the network
MAX_ROUTE_STEPS = 4096
MAX_ROUTE_NAMES = 65536
MAX_NAME_CHARS = 256
#: confidence rules an exit check may name (tiercut.exits.confidence evaluates them; nothing else is accepted)
EXIT_RULES = ("entropy", "max_softmax")
#: at most this many relays on one forward, and relay entries in one route (bounds what a message can ask)
MAX_RELAYS = 8
MAX_RELAY_PAIRS = 256


class RouteError(TiercutError):
    """A route that is malformed or cannot be followed."""


def _names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_ROUTE_NAMES:
        raise RouteError(f"route {what} is not a list of at most {MAX_ROUTE_NAMES} names")
    for name in value:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
            raise RouteError(f"route {what} holds a name that is not a string of 1..{MAX_NAME_CHARS} characters")
    return tuple(value)


@dataclass(frozen=True)
class ExitCheck:
    """An early exit evaluated right after a step, on the device that ran it.

    Attributes:
        name: the exit's name (``exit1``...).
        value: the step's output holding the exit head's logits (batch x classes).
        rule: ``entropy`` (exits when the softmax entropy in nats < threshold) or ``max_softmax``
            (exits when the largest softmax probability >= threshold).
        threshold: the rule's threshold.
    """

    name: str
    value: str
    rule: str
    threshold: float

    def __post_init__(self) -> None:
        import math

        if self.rule not in EXIT_RULES:
            raise RouteError(f"exit check rule {self.rule!r:.40} is not one of {', '.join(EXIT_RULES)}")
        if not isinstance(self.threshold, float) or not math.isfinite(self.threshold):
            raise RouteError("exit check threshold is not a finite number")
        for what, text in (("name", self.name), ("value", self.value)):
            if not isinstance(text, str) or not 0 < len(text) <= MAX_NAME_CHARS:
                raise RouteError(f"exit check {what} is not a string of 1..{MAX_NAME_CHARS} characters")

    def fires(self, logits: Any) -> bool:
        """Whether the exit lets the query out: every row of ``logits`` (a 2-D float tensor) is confident."""
        import torch

        from tiercut.exits.confidence import fires, scores_from_logits

        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point() or logits.numel() == 0:
            shown = f"a tensor of shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise RouteError(f"exit {self.name!r} reads {self.value!r}, {shown}, not a 2-D float tensor of logits")
        entropy, max_prob = scores_from_logits(logits.detach().cpu())
        return bool(fires(entropy if self.rule == "entropy" else max_prob, self.rule, self.threshold).all())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "rule": self.rule, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: Any) -> ExitCheck:
        if not isinstance(data, Mapping):
            raise RouteError("exit check is not a mapping")
        threshold = data.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise RouteError("exit check threshold is not a number")
        return cls(data.get("name"), data.get("value"), data.get("rule"), float(threshold))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Step:
    """One partition of a query's route.

    Attributes:
        index: the partition's index in the stage's split (execution order).
        device: the device that runs it.
        program_id: the program a worker runs (None for the client's own steps).
        input_names: values it reads.
        output_names: values it produces.
        exit: the early exit evaluated after it (None: none); its value is one of ``output_names``.
    """

    index: int
    device: str
    program_id: str | None
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    exit: ExitCheck | None = None

    def __post_init__(self) -> None:
        if self.exit is not None and self.exit.value not in self.output_names:
            raise RouteError(f"exit {self.exit.name!r} reads {self.exit.value!r}, which its step does not produce")

    def to_dict(self) -> dict[str, Any]:
        data = {
            "index": self.index,
            "device": self.device,
            "program_id": self.program_id,
            "input_names": list(self.input_names),
            "output_names": list(self.output_names),
        }
        if self.exit is not None:
            data["exit"] = self.exit.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Step:
        if not isinstance(data, Mapping):
            raise RouteError("route step is not a mapping")
        try:
            program_id = data.get("program_id")
            index, device = data["index"], data["device"]
            if not isinstance(index, int) or isinstance(index, bool) or not isinstance(device, str):
                raise TypeError
            if program_id is not None and (not isinstance(program_id, str) or len(program_id) > MAX_NAME_CHARS):
                raise TypeError
            step = cls(
                index=index,
                device=device[: MAX_NAME_CHARS + 1],
                program_id=program_id,
                input_names=_names(data["input_names"], "step inputs"),
                output_names=_names(data["output_names"], "step outputs"),
                exit=None if data.get("exit") is None else ExitCheck.from_dict(data["exit"]),
            )
        except (KeyError, TypeError, ValueError):
            raise RouteError("a route step lacks a field or holds a wrong type") from None
        if not 0 < len(step.device) <= MAX_NAME_CHARS:
            raise RouteError(f"a route step names a device of more than {MAX_NAME_CHARS} characters")
        return step


@dataclass(frozen=True)
class Route:
    """The steps of one query, in execution order, and the values its result reads.

    Attributes:
        steps: the partitions in execution order.
        result_names: values the model's output is built from (they return to the source).
        source: the device where the input is produced and the result needed.
    """

    steps: tuple[Step, ...]
    result_names: tuple[str, ...]
    source: str
    relays: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    parallel: tuple[tuple[int, int], ...] = ()
    _last_read: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _group: dict[int, tuple[int, int]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.parallel) > MAX_ROUTE_STEPS:
            raise RouteError(f"route has {len(self.parallel)} parallel groups, more than {MAX_ROUTE_STEPS}")
        previous_end = 0
        for group in self.parallel:
            if (
                not isinstance(group, tuple) or len(group) != 2
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in group)
                or not previous_end <= group[0] < group[1] <= len(self.steps)
            ):
                raise RouteError(f"route parallel group {group!r:.80} is not an increasing, disjoint step range")
            previous_end = group[1]
            made: set[str] = set()
            for step in self.steps[group[0] : group[1]]:
                made.update(step.output_names)
            for step in self.steps[group[0] : group[1]]:
                if made & set(step.input_names):
                    raise RouteError(f"step {step.index} of a parallel group reads a value another step of it makes")
            for position in range(*group):
                self._group[position] = group
        if len(self.relays) > MAX_RELAY_PAIRS:
            raise RouteError(f"route has {len(self.relays)} relay entries, more than {MAX_RELAY_PAIRS}")
        for key, path in self.relays.items():
            a, sep, b = key.partition(">")
            if not sep or not a or not b or len(path) > MAX_RELAYS or len(set(path)) != len(path) or a in path or b in path:
                raise RouteError(f"route relay entry {key!r:.80} -> {list(path)!r:.80} is malformed")
        for index, step in enumerate(self.steps):
            for name in step.input_names:
                self._last_read[name] = index
        for name in self.result_names:
            self._last_read[name] = len(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def group_of(self, position: int) -> tuple[int, int] | None:
        """The parallel group (start, end) holding step ``position``, if any."""
        return self._group.get(position)

    def is_live(self, name: str, position: int) -> bool:
        """Whether a step from ``position`` on, or the result, reads ``name``."""
        return self._last_read.get(name, -1) >= position

    def span_end(self, position: int, stop_devices: set[str] | frozenset[str]) -> int:
        """First index >= ``position`` whose device is in ``stop_devices`` (``len`` if none)."""
        for index in range(position, len(self.steps)):
            if self.steps[index].device in stop_devices:
                return index
        return len(self.steps)

    def needed(self, start: int, end: int) -> list[str]:
        """Values steps ``start..end-1`` read that none of them produced before reading."""
        produced: set[str] = set()
        needed: dict[str, None] = {}
        for step in self.steps[start:end]:
            for name in step.input_names:
                if name not in produced:
                    needed[name] = None
            produced.update(step.output_names)
        return list(needed)

    def produced(self, start: int, end: int) -> list[str]:
        """Values steps ``start..end-1`` produce."""
        out: dict[str, None] = {}
        for step in self.steps[start:end]:
            for name in step.output_names:
                out[name] = None
        return list(out)

    def devices(self) -> list[str]:
        return list(dict.fromkeys(step.device for step in self.steps))

    def exit_step(self, name: str, start: int, end: int) -> Step | None:
        """The step of ``start..end-1`` whose exit is ``name`` (None if none)."""
        for step in self.steps[start:end]:
            if step.exit is not None and step.exit.name == name:
                return step
        return None

    def next_hop(self, me: str, target: str) -> tuple[str, list[str]]:
        """Where ``me`` sends a forward meant for ``target``: (the device to call, the rest of the path after it)."""
        path = self.relays.get(f"{me}>{target}", ())
        if not path:
            return target, []
        return path[0], [*path[1:], target]

    def relay_devices(self) -> list[str]:
        """Devices that only forward for this route."""
        return list(dict.fromkeys(d for path in self.relays.values() for d in path))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "steps": [s.to_dict() for s in self.steps],
            "result_names": list(self.result_names),
            "source": self.source,
        }
        if self.relays:
            data["relays"] = {k: list(v) for k, v in self.relays.items()}
        if self.parallel:
            data["parallel"] = [list(g) for g in self.parallel]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Route:
        if not isinstance(data, Mapping) or not isinstance(data.get("steps"), list):
            raise RouteError("route is not a mapping with a list of steps")
        if len(data["steps"]) > MAX_ROUTE_STEPS:
            raise RouteError(f"route has {len(data['steps'])} steps, more than {MAX_ROUTE_STEPS}")
        if "result_names" not in data or not isinstance(data.get("source"), str):
            raise RouteError("route lacks result_names or source")
        steps = tuple(Step.from_dict(s) for s in data["steps"])
        names = sum(len(s.input_names) + len(s.output_names) for s in steps)
        if names > MAX_ROUTE_NAMES:
            raise RouteError(f"route names {names} values, more than {MAX_ROUTE_NAMES}")
        relays = data.get("relays", {})
        if (
            not isinstance(relays, Mapping)
            or len(relays) > MAX_RELAY_PAIRS
            or not all(
                isinstance(k, str) and len(k) <= 2 * MAX_NAME_CHARS + 1 and isinstance(v, list) and len(v) <= MAX_RELAYS
                and all(isinstance(d, str) and 0 < len(d) <= MAX_NAME_CHARS for d in v)
                for k, v in relays.items()
            )
        ):
            raise RouteError("route relays are not a small mapping of device pairs to device lists")
        parallel = data.get("parallel", [])
        if not isinstance(parallel, list) or len(parallel) > MAX_ROUTE_STEPS or not all(
            isinstance(g, list) and len(g) == 2 for g in parallel
        ):
            raise RouteError("route parallel groups are not a list of [start, end] pairs")
        return cls(
            steps=steps,
            result_names=_names(data["result_names"], "result"),
            source=data["source"][:MAX_NAME_CHARS],
            relays={k: tuple(v) for k, v in relays.items()},
            parallel=tuple(tuple(g) for g in parallel),
        )


@dataclass
class HopRecord:
    """What one process did for a query: a step it ran or a forward it made.

    Attributes:
        kind: ``"run"`` (a partition ran here), ``"forward"`` (values sent to ``peer``) or ``"relay"``
            (a message passed on to ``peer`` and its reply back, nothing computed).
        device: the device that did it.
        index: the partition index (run) or the first index of the forwarded span.
        start_s, end_s: ``time.time()`` bounds.
        compute_s: seconds of the partition's execution (run).
        peer: the device forwarded to (forward).
        bytes_sent, bytes_received: frame bytes of the forward and its reply.
        payload_sent, payload_received: the tensor bytes among them (what the cost model counts as ``out(u)``).
    """

    kind: str
    device: str
    index: int
    start_s: float
    end_s: float
    compute_s: float = 0.0
    peer: str = ""
    bytes_sent: int = 0
    bytes_received: int = 0
    payload_sent: int = 0
    payload_received: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "device": self.device,
            "index": self.index,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "compute_s": self.compute_s,
            "peer": self.peer,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "payload_sent": self.payload_sent,
            "payload_received": self.payload_received,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HopRecord:
        return cls(
            kind=str(data.get("kind", "")),
            device=str(data.get("device", "")),
            index=int(data.get("index", 0)),
            start_s=float(data.get("start_s", 0.0)),
            end_s=float(data.get("end_s", 0.0)),
            compute_s=float(data.get("compute_s", 0.0)),
            peer=str(data.get("peer", "")),
            bytes_sent=int(data.get("bytes_sent", 0)),
            bytes_received=int(data.get("bytes_received", 0)),
            payload_sent=int(data.get("payload_sent", 0)),
            payload_received=int(data.get("payload_received", 0)),
        )


@dataclass(frozen=True)
class ForwardResult:
    """What a forward returns: the values asked for, the position reached, and the callee's records.

    ``exit`` names the early exit the query left at below (then ``values`` holds only its answer).
    """

    values: Mapping[str, Any]
    position: int
    records: Sequence[HopRecord] = ()
    exit: str = ""


RunStep = Callable[[Step, Mapping[str, Any]], Awaitable[tuple[Mapping[str, Any], float]]]
Forward = Callable[[str, int, Mapping[str, Any], list[str], list[str]], Awaitable[ForwardResult]]


async def _run_own(
    step: Step, me: str, values: Mapping[str, Any], run_step: RunStep, records: list[HopRecord]
) -> Mapping[str, Any]:
    import time

    missing = [n for n in step.input_names if n not in values]
    if missing:
        raise RouteError(f"partition {step.index} on {me!r} needs value {missing[0]!r}, which did not arrive")
    start = time.time()
    outputs, compute_s = await run_step(step, {n: values[n] for n in step.input_names})
    records.append(HopRecord("run", me, step.index, start, time.time(), compute_s=compute_s))
    return outputs


async def _forward_span(
    route: Route, device: str, position: int, end: int, values: Mapping[str, Any], forward: Forward, chain: list[str]
) -> ForwardResult:
    """Send steps ``position..end-1`` to ``device``; checks it came back at ``end`` with every value asked."""
    me = chain[-1]
    needed = route.needed(position, end)
    missing = [n for n in needed if n not in values]
    if missing:
        raise RouteError(f"device {me!r} must send {missing[0]!r} to {device!r} but does not hold it")
    wanted = [n for n in route.produced(position, end) if route.is_live(n, end)]
    result = await forward(device, position, {n: values[n] for n in needed}, wanted, chain)
    if result.position != end:
        raise RouteError(
            f"device {device!r} stopped at partition position {result.position}, expected {end}; "
            "the devices disagree about the route"
        )
    absent = [n for n in wanted if n not in result.values]
    if absent:
        raise RouteError(f"device {device!r} did not return {absent[0]!r}")
    return result


async def _run_group(
    route: Route,
    me: str,
    chain: list[str],
    group: tuple[int, int],
    values: dict[str, Any],
    run_step: RunStep,
    forward: Forward,
    records: list[HopRecord],
) -> None:
    """Every step of a parallel group at once: ours here, each other one forwarded alone; a failed forward's
    step is run here when this device holds its program (else the forward's error propagates)."""
    import asyncio

    async def one(position: int) -> tuple[Mapping[str, Any], list[HopRecord]]:
        step = route.steps[position]
        own: list[HopRecord] = []
        if step.device == me:
            return await _run_own(step, me, values, run_step, own), own
        try:
            result = await _forward_span(route, step.device, position, position + 1, values, forward, chain)
            return result.values, list(result.records)
        except asyncio.CancelledError:
            raise
        except Exception as failure:  # the tile's worker is lost: recompute it here if we can
            try:
                return await _run_own(step, me, values, run_step, own), own
            except Exception:
                raise failure from None

    results = await asyncio.gather(*(one(p) for p in range(*group)))
    for outputs, hops in results:
        values.update(outputs)
        records.extend(hops)


async def run_route(
    route: Route,
    me: str,
    chain: Sequence[str],
    position: int,
    values: dict[str, Any],
    run_step: RunStep,
    forward: Forward,
    records: list[HopRecord],
    exited: list[str] | None = None,
) -> int:
    """Follow ``route`` from ``position`` as device ``me`` called by ``chain``; returns the position reached.

    ``values`` is updated in place with what was produced here or below (and
    pruned to what is still needed). ``run_step(step, inputs)`` runs one of
    ``me``'s steps and returns ``(outputs, compute_s)``;
    ``forward(device, position, values, wanted, chain)`` sends a span to
    another device. When an early exit fires (here or below), ``values``
    keeps only its answer, its name is appended to ``exited`` and the route's
    end is returned: nothing further runs or is sent.
    """

    def leave(name: str, answer: str) -> int:
        kept = values[answer]
        values.clear()
        values[answer] = kept
        if exited is not None:
            exited.append(name)
        return len(route)

    stop = set(chain)
    if me in stop:
        raise RouteError(f"device {me!r} appears twice in the call chain {list(chain)}; the route loops")
    entered = route.group_of(position)
    if chain and entered is not None:  # sent one step of a parallel group: run it and return
        if route.steps[position].device != me:
            raise RouteError(f"step {position} of a parallel group was sent to {me!r}, not its device")
        values.update(await _run_own(route.steps[position], me, values, run_step, records))
        return position + 1
    while position < len(route):
        start_position = position
        step = route.steps[position]
        group = route.group_of(position)
        if group is not None and group[0] == position:
            await _run_group(route, me, [*chain, me], group, values, run_step, forward, records)
            position = group[1]
        elif step.device == me:
            values.update(await _run_own(step, me, values, run_step, records))
            position += 1
            if step.exit is not None and step.exit.fires(values.get(step.exit.value)):
                return leave(step.exit.name, step.exit.value)
        elif step.device in stop:
            break
        else:
            end = route.span_end(position, stop | {me})
            needed = route.needed(position, end)
            missing = [n for n in needed if n not in values]
            if missing:
                raise RouteError(f"device {me!r} must send {missing[0]!r} to {step.device!r} but does not hold it")
            wanted = [n for n in route.produced(position, end) if route.is_live(n, end)]
            result = await forward(step.device, position, {n: values[n] for n in needed}, wanted, [*chain, me])
            if result.exit:
                check = route.exit_step(result.exit, position, end)
                if check is None or check.exit is None or result.position != len(route):
                    raise RouteError(f"device {step.device!r} reports exit {result.exit[:40]!r}, which is not on its span")
                if check.exit.value not in result.values:
                    raise RouteError(f"device {step.device!r} left at exit {result.exit!r} without its answer")
                values[check.exit.value] = result.values[check.exit.value]
                records.extend(result.records)
                return leave(result.exit, check.exit.value)
            if result.position != end:
                raise RouteError(
                    f"device {step.device!r} stopped at partition position {result.position}, expected {end}; "
                    "the devices disagree about the route"
                )
            absent = [n for n in wanted if n not in result.values]
            if absent:
                raise RouteError(f"device {step.device!r} did not return {absent[0]!r}")
            values.update(result.values)
            records.extend(result.records)
            position = end
        # forget what no later step reads: the inputs and outputs of the steps just passed (linear overall)
        for passed in route.steps[start_position:position]:
            for name in (*passed.input_names, *passed.output_names):
                if name in values and not route.is_live(name, position):
                    del values[name]
    return position


__all__ = ["EXIT_RULES", "MAX_RELAYS", "ExitCheck", "ForwardResult", "HopRecord", "Route", "RouteError", "Step", "run_route"]
