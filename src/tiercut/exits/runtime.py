"""Exits that really fire: a split executor that stops a query at its exit and sends nothing further.

:class:`ExitExecutor` runs a trained multi-exit network cut by a placement,
one query at a time, the way a device-edge-cloud deployment does: the layers
of each device run where they are placed (torch.fx nodes of the captured
network, in topological order), every tensor that crosses devices is
encoded with the runtime's wire format (:mod:`tiercut.runtime.codec`: a
header and raw bytes, never pickle), counted and decoded on the other side,
and at each active exit the confidence rule is evaluated *on the device that
computed the branch*. When it fires, that device sends the answer to the
source (nothing if it is the source) and the query ends: no layer past the
exit runs and no tensor past it is sent. The last active exit always
answers.

Each :class:`QueryTrace` records the exit taken, the answer (equal to the
exit head's output), the tensors sent with their payload bytes (what the
cost model counts as ``out(u)``) and their encoded frame bytes. It runs
in-process; on gRPC workers the same rule runs through :mod:`tiercut.exits.deploy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tiercut.errors import TiercutError
from tiercut.exits.confidence import check_rule, fires, scores_from_logits


@dataclass(frozen=True)
class Sent:
    """One tensor sent between devices: producer node, from, to, payload and frame bytes."""

    node: str
    src: str
    dst: str
    payload_bytes: int
    frame_bytes: int


@dataclass(frozen=True)
class QueryTrace:
    """What one query did: the exit it left at, the answer, what it sent, which nodes ran."""

    exit: str
    answer: Any
    sent: tuple[Sent, ...]
    ran: tuple[str, ...]

    @property
    def payload_bytes(self) -> int:
        return sum(s.payload_bytes for s in self.sent)

    @property
    def frame_bytes(self) -> int:
        return sum(s.frame_bytes for s in self.sent)


@dataclass(eq=False)
class ExitExecutor:
    """Runs a captured multi-exit network over a placement with ``active`` exits (see the module docstring).

    Attributes:
        captured: the :class:`~tiercut.graph.capture.CapturedModel` of the multi-exit network.
        exits: the exits (:class:`~tiercut.exits.types.ExitBranch`, their nodes named as in ``captured.graph``).
        placement: layer-graph node -> device for every deployed node.
        active: active exits in depth order.
        rule, thresholds: the confidence rule and each active side exit's threshold.
        source: the device where the input is and the answer is needed.
    """

    captured: Any
    exits: Sequence[Any]
    placement: Mapping[str, str]
    active: Sequence[str]
    rule: str
    thresholds: Mapping[str, float]
    source: str
    _plan: list[tuple[str, list[Any]]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        check_rule(self.rule)
        by_name = {e.name: e for e in self.exits}
        graph = self.captured.graph
        order = list(graph.names)
        done: set[str] = set()
        fx_nodes = {n.name: n for n in self.captured.graph_module.graph.nodes}
        owner = self.captured.owner
        members: dict[str, list[Any]] = {}
        for fx_name, layer in owner.items():
            members.setdefault(layer, []).append(fx_nodes[fx_name])
        for name in self.active:
            if name not in by_name:
                raise TiercutError(f"no exit {name!r}; exits are {', '.join(by_name)}")
            e = by_name[name]
            need: set[str] = set()
            stack = [e.output]
            while stack:
                n = stack.pop()
                if n not in need and n not in done:
                    need.add(n)
                    stack.extend(graph[n].inputs)
            steps = [n for n in order if n in need]
            for n in steps:
                if n not in self.placement and not graph[n].is_input:
                    raise TiercutError(f"placement has no device for node {n!r}")
            self._plan.append((name, [fx for n in steps for fx in members.get(n, [])]))
            done |= need
        self._owner = owner
        self._exits = by_name

    def _device(self, fx_name: str) -> str:
        layer = self._owner[fx_name]
        return self.source if self.captured.graph[layer].is_input else self.placement[layer]

    def run(self, x: Any) -> QueryTrace:
        """One query (a batch of one) through the active exits."""
        import torch

        from tiercut.runtime.codec import decode_frame, encode_frame, value_nbytes

        gm = self.captured.graph_module
        interp = torch.fx.Interpreter(gm)
        env: dict[str, Any] = {}
        held: dict[str, set[str]] = {}  # value -> devices holding it
        sent: list[Sent] = []
        ran: list[str] = []

        def fetch(name: str, device: str) -> Any:
            here = held[name]
            if device not in here:
                src = self._device(name)
                frame = encode_frame({"node": name}, {"v": env[name]})
                value = decode_frame(frame).values["v"]
                sent.append(Sent(self._owner[name], src, device, value_nbytes(env[name]), len(frame)))
                env[name] = value
                here.add(device)
            return env[name]

        with torch.no_grad():
            for k, (exit_name, fx_list) in enumerate(self._plan):
                for node in fx_list:
                    device = self._device(node.name)
                    if node.op == "placeholder":
                        env[node.name] = x
                    else:
                        for src in node.all_input_nodes:
                            if src.op != "get_attr":
                                fetch(src.name, device)
                        interp.env = {n: env[n.name] for n in node.all_input_nodes if n.name in env}
                        if node.op == "get_attr":
                            env[node.name] = interp.run_node(node)
                        else:
                            args = torch.fx.node.map_arg(node.args, lambda n: env[n.name])
                            kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n.name])
                            env[node.name] = getattr(interp, node.op)(node.target, args, kwargs)
                        if self._owner[node.name] not in ran:
                            ran.append(self._owner[node.name])
                    held[node.name] = {device}
                e = self._exits[exit_name]
                out_fx = next(n.name for n in fx_list[::-1] if self._owner[n.name] == e.output) if fx_list else e.output
                logits = env[out_fx]
                last = k == len(self._plan) - 1
                if last or self._confident(exit_name, logits):
                    answer = fetch(out_fx, self.source)
                    return QueryTrace(exit_name, answer, tuple(sent), tuple(ran))
        raise TiercutError("no active exit answered")  # unreachable: the last active exit always answers

    def _confident(self, exit_name: str, logits: Any) -> bool:
        entropy, max_prob = scores_from_logits(logits)
        score = entropy if self.rule == "entropy" else max_prob
        return bool(fires(np.asarray(score), self.rule, float(self.thresholds[exit_name]))[0])


__all__ = ["ExitExecutor", "QueryTrace", "Sent"]
