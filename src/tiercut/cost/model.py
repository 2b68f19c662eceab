"""The cost model (docs/cost-model.md), one placement at a time.

For a placement ``x: V -> D`` (graph inputs on the source):

- ``dest(u) = {x(w) : u -> w} ∪ ({source} if u is a graph output)``;
- ``transfers(x) = {(u, x(u), d) : d in dest(u), d != x(u)}`` (a tensor is sent
  once to each other device that needs it);
- routing (:mod:`tiercut.cost.routing`): a transfer follows the path of links
  that minimises its own time, store-and-forward through relays that only
  forward; each hop in its own direction's figures (a link may give its two
  directions different ones); ``tau(u, a, b)`` is the sum of the hop times
  ``latency + out(u) / bandwidth``; a pair without a path is unreachable;
- ``T(x) = sum_v c(v, x(v)) + sum_transfers tau`` (sequential: one node or one
  transfer at a time, as in Neurosurgeon and DADS);
- per-message costs (0 unless given): every hop is one message and also costs
  its sender's and receiver's ``message_s`` and its link's
  ``message_overhead_bytes / bandwidth`` (part of the hop's time, so of
  ``tau``; :func:`tiercut.cost.routing.hop_fixed_s`);
- source energy ``P_compute*busy_compute + P_tx*busy_tx + P_rx*busy_rx +
  P_idle*(T - busy_compute - busy_tx - busy_rx)`` with the source's powers;
  on a multi-hop transfer the source accrues only the hops it is an end of:
  ``busy_tx`` the hops it sends, ``busy_rx`` the hops it receives (both when
  it relays a tensor of the graph), idle power during the other hops;
- total energy: every device's compute energy plus, for every hop of every
  transfer, the tx energy of the hop's sender and the rx energy of its
  receiver for the hop's time (idle power is not part of it);
- cost: ``sum_v price_per_s(x(v)) * c(v, x(v)) + sum_transfers out(u) *
  sum_hops price_per_byte(hop)``;
- pipelined stages (:mod:`tiercut.cost.throughput`): each device's compute and
  each link direction's transfer time per query; the bottleneck is the largest,
  the throughput objective's value;
- memory: per device, the bytes of the distinct parameters its nodes use (a
  parameter shared by several nodes is counted once per device that runs one
  of them; :meth:`tiercut.graph.LayerGraph.param_table`).

Cut compression (JALAD, :mod:`tiercut.cost.cut_compression`): with a
``compression`` decision (node -> codec), each transfer of a compressed tensor
costs its encode time on the sender, the routed time of its compressed bytes
and its decode time on the receiver; the summed accuracy loss of the
compressed tensors must stay within the problem's ``accuracy_loss_max``.

The multi-user equal-share model reuses :func:`evaluate` with share
multipliers: compute times on a device times its ``device_share`` and each
hop's ``out / bandwidth`` term times its link's ``link_share`` (the paths stay
the problem's own routes). The stretched times make the latency; energy and
price are charged for the user's own work (the unstretched seconds: during
the rest of a stretched second the shared resource does the other users'
work), and the source's ``busy_*`` times are its own work, so its energy is
``P_idle*T + sum_X (P_X - P_idle)*busy_X`` with ``T`` the stretched latency
(docs/cost-model.md "Multi-user"; the simulator's attribution rule).
``charge_stretched=True`` charges them for the stretched seconds instead: the
multipliers then describe a slower resource, not a shared one (the gym's
bandwidth and load processes, :mod:`tiercut.gym.task`).

This module is the reference transcription of those formulas; the
vectorised evaluator (:mod:`tiercut.cost.vector`) is tested against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from tiercut.cost.cut_compression import accuracy_loss, transfer_figures
from tiercut.errors import TiercutError
from tiercut.problem import METRICS, Objective, Problem

#: relative slack when checking a budget, so that a plan sitting exactly on
#: its budget is not rejected for a rounding crumb.
BUDGET_RTOL = 1e-9


@dataclass(frozen=True)
class Hop:
    """One hop of a transfer: from ``src`` to ``dst`` over their link, taking ``seconds``."""

    src: str
    dst: str
    seconds: float


@dataclass(frozen=True)
class Transfer:
    """One tensor sent from one device to another.

    Attributes:
        node: the tensor's producer.
        src, dst: where it is and where it is needed.
        out_bytes: its bytes.
        seconds: tau, the sum of ``hop_seconds``.
        path: the devices it travels through, ``src`` first and ``dst`` last
            (relays in between).
        hop_seconds: each hop's time.
        codec: the cut codec it is compressed with ("" raw); then ``seconds``
            includes ``encode_s`` on ``src`` and ``decode_s`` on ``dst``, and
            ``wire_bytes`` travel the path.
    """

    node: str
    src: str
    dst: str
    out_bytes: int
    seconds: float
    path: tuple[str, ...] = ()
    hop_seconds: tuple[float, ...] = ()
    codec: str = ""
    wire_bytes: float | None = None
    encode_s: float = 0.0
    decode_s: float = 0.0

    @property
    def hops(self) -> tuple[Hop, ...]:
        """Each hop (a direct transfer is one hop)."""
        if not self.path:
            return (Hop(self.src, self.dst, self.seconds),)
        return tuple(Hop(a, b, t) for (a, b), t in zip(zip(self.path, self.path[1:]), self.hop_seconds, strict=True))


@dataclass(frozen=True)
class Evaluation:
    """The cost model's figures of one placement.

    Attributes:
        placement: node -> device (inputs included).
        latency_s: T(x).
        energy_source_j, energy_total_j, cost: see the module docstring.
        compute_s, transfer_s: the two parts of ``latency_s``.
        busy_compute_s, busy_tx_s, busy_rx_s: the source device's busy times (its own
            work: unstretched under share multipliers).
        transfers: every transfer, in topological order of the tensor.
        memory_bytes: device -> parameter bytes placed on it (every device).
        objective_value: the problem objective's value.
        valid: every node runs on a device with a compute time, inputs are
            on the source and every transfer has a link. When False the
            figures are inf.
        violations: one line per broken rule or constraint.
        compression: node -> cut codec of the tensors sent compressed (only
            tensors that cross devices).
        accuracy_loss: their summed accuracy loss.
        pipeline_stages: pipeline stage -> busy seconds per query (every device and
            link direction; :mod:`tiercut.cost.throughput`), empty when invalid.
        bottleneck_s: the largest stage time (inf when invalid); the
            throughput is ``1 / bottleneck_s`` queries per second.
    """

    placement: Mapping[str, str]
    latency_s: float
    energy_source_j: float
    energy_total_j: float
    cost: float
    compute_s: float
    transfer_s: float
    busy_compute_s: float
    busy_tx_s: float
    busy_rx_s: float
    transfers: tuple[Transfer, ...]
    memory_bytes: Mapping[str, int]
    objective_value: float
    valid: bool
    violations: tuple[str, ...] = field(default_factory=tuple)
    compression: Mapping[str, str] = field(default_factory=dict)
    accuracy_loss: float = 0.0
    pipeline_stages: Mapping[str, float] = field(default_factory=dict)
    bottleneck_s: float = math.inf

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def throughput_qps(self) -> float:
        """Queries per second of the pipelined stream (``1 / bottleneck_s``)."""
        from tiercut.cost.throughput import throughput_qps

        return throughput_qps(self.bottleneck_s)

    def metric(self, name: str) -> float:
        """A figure by metric name (``latency``, ``energy_source``, ``energy_total``, ``cost``)."""
        return metric_values(self)[name]


def metric_values(evaluation: Evaluation) -> dict[str, float]:
    return {
        "latency": evaluation.latency_s,
        "energy_source": evaluation.energy_source_j,
        "energy_total": evaluation.energy_total_j,
        "cost": evaluation.cost,
    }


def objective_value(objective: Objective, metrics: Mapping[str, float]) -> float:
    """``sum(weight * metric)`` over the objective's metric weights."""
    total = 0.0
    for name, weight in objective.metric_weights().items():
        value = metrics[name]
        if math.isinf(value):
            return math.inf
        total += weight * value
    return total


def transfer_seconds(problem: Problem, out_bytes: int, a: str, b: str) -> float:
    """tau for ``out_bytes`` from ``a`` to ``b`` along its best path: 0 on one device, inf when unreachable."""
    return float(problem.routing.seconds(a, b, out_bytes))


def memory_bytes(problem: Problem, placement: Mapping[str, str]) -> dict[str, int]:
    """Device -> bytes of the distinct parameters the nodes placed on it use (every device)."""
    names, uses = problem.graph.param_table()
    held: dict[str, set[str]] = {d: set() for d in problem.device_names}
    for node in problem.graph:
        device = placement.get(node.name, problem.source if node.is_input else None)
        if device is not None and device in held:
            held[device].update(uses[node.name])
    return {d: sum(names[p] for p in params) for d, params in held.items()}


def _invalid(problem: Problem, placement: Mapping[str, str], memory: dict[str, int], violations: list[str]) -> Evaluation:
    inf = math.inf
    return Evaluation(
        placement=dict(placement),
        latency_s=inf,
        energy_source_j=inf,
        energy_total_j=inf,
        cost=inf,
        compute_s=inf,
        transfer_s=inf,
        busy_compute_s=inf,
        busy_tx_s=inf,
        busy_rx_s=inf,
        transfers=(),
        memory_bytes=memory,
        objective_value=inf,
        valid=False,
        violations=tuple(violations),
    )


def _full_placement(problem: Problem, placement: Mapping[str, str]) -> dict[str, str]:
    """``placement`` with the graph inputs on the source; a missing node, unknown device or node is an error."""
    names = set(problem.device_names)
    full: dict[str, str] = {}
    for node in problem.graph:
        device = placement.get(node.name)
        if device is None:
            if node.is_input:
                device = problem.source
            else:
                raise TiercutError(f"placement has no device for node {node.name!r}; place every node")
        if device not in names:
            raise TiercutError(f"placement puts {node.name!r} on unknown device {device!r}; devices are {', '.join(names)}")
        full[node.name] = device
    extra = set(placement) - set(full)
    if extra:
        raise TiercutError(f"placement names unknown node {sorted(extra)[0]!r}")
    return full


def evaluate(
    problem: Problem,
    placement: Mapping[str, str],
    *,
    device_share: Mapping[str, float] | None = None,
    link_share: Mapping[frozenset[str], float] | None = None,
    compression: Mapping[str, str] | None = None,
    charge_stretched: bool = False,
    source_users: float = 1.0,
) -> Evaluation:
    """Every figure of ``placement`` under ``problem``'s cost model and constraints.

    ``placement`` maps every node (inputs may be left out: they are on the
    source) to a device name. A node missing from it, or an unknown device,
    is a :class:`TiercutError`; a placement that breaks the model (a node on
    a device where it cannot run, an input off the source, a transfer
    between devices no path of links joins) is evaluated as invalid with inf
    figures. ``device_share`` (device -> factor on its compute times) and
    ``link_share`` (link key -> factor on the ``out / bandwidth`` term of
    every hop over it) are the multi-user equal-share multipliers (default 1):
    they stretch the latency, while energy and price are charged for the
    user's own (unstretched) work, unless ``charge_stretched`` (the
    multipliers are a slower resource, not a shared one). ``source_users``: the
    number of users whose source this problem's source device is (the
    multi-user model, one query of each in flight): the source's idle power over
    the latency is split among them, ``E_source = P_idle*T/source_users +
    sum_X (P_X - P_idle)*busy_X`` (the simulator's attribution rule).
    ``compression`` (node -> cut codec, :mod:`tiercut.cost.cut_compression`)
    compresses those tensors' transfers; a tensor that crosses no device is
    dropped from it, an option the problem does not offer is a
    :class:`TiercutError`.
    """
    graph = problem.graph
    device_names = problem.device_names
    devices = {d.name: d for d in problem.devices}
    full = _full_placement(problem, placement)

    if compression:
        accuracy_loss(problem, compression)  # every named option exists, crossing or not
    memory = memory_bytes(problem, full)
    dshare = device_share or {}
    lshare = link_share or {}

    violations: list[str] = []
    compute = 0.0
    busy_compute = 0.0
    energy_total = 0.0
    cost = 0.0
    for node in graph:
        device = full[node.name]
        if node.is_input:
            if device != problem.source:
                violations.append(f"graph input {node.name!r} is on {device!r}, not on the source {problem.source!r}")
            continue
        seconds = problem.compute_s[node.name].get(device)
        if seconds is None:
            violations.append(f"node {node.name!r} cannot run on {device!r}")
            continue
        stretched = seconds * dshare.get(device, 1.0)
        compute += stretched
        if charge_stretched:
            seconds = stretched
        dev = devices[device]
        energy_total += dev.power_compute_w * seconds
        cost += dev.price_per_s * seconds
        if device == problem.source:
            busy_compute += seconds

    consumers = graph.consumers()
    routing = problem.routing
    source = problem.source
    transfers: list[Transfer] = []
    transfer_total = 0.0
    busy_tx = busy_rx = 0.0
    used: dict[str, str] = {}
    for node in graph:
        here = full[node.name]
        dest = {full[w] for w in consumers[node.name]}
        if node.is_output:
            dest.add(source)
        codec = (compression or {}).get(node.name)
        for device in device_names:  # deterministic order
            if device not in dest or device == here:
                continue
            if codec is not None:
                if lshare:
                    raise TiercutError("cut compression is not part of the multi-user equal-share model")
                fig = transfer_figures(problem, node.name, here, device, codec)
                if fig is None:
                    violations.append(f"{node.name!r} must go from {here!r} to {device!r}, which no path of links joins")
                    continue
                used[node.name] = codec
                transfers.append(
                    Transfer(node.name, here, device, node.out_bytes, fig.seconds, fig.path, fig.hop_seconds,
                             codec, fig.wire_bytes, fig.encode_s, fig.decode_s)
                )
                transfer_total += fig.seconds
                cost += fig.cost
                energy_total += fig.energy_total_j
                busy_compute += fig.busy_compute_source_s
                busy_tx += fig.busy_tx_source_s
                busy_rx += fig.busy_rx_source_s
                continue
            path = routing.path(here, device, node.out_bytes)
            if path is None:
                violations.append(f"{node.name!r} must go from {here!r} to {device!r}, which no path of links joins")
                continue
            own = path.hop_seconds(node.out_bytes)  # the hops' own work: radio energy is charged for it
            if lshare:
                hops = tuple(
                    fixed + node.out_bytes / h.bandwidth_bytes_per_s * lshare.get(frozenset((h.src, h.dst)), 1.0)
                    for fixed, h in zip(path.fixed_seconds(), path.hops, strict=True)
                )
                seconds = sum(hops)
                if charge_stretched:
                    own = hops
            else:
                hops = own
                seconds = path.seconds(node.out_bytes)
            transfers.append(Transfer(node.name, here, device, node.out_bytes, seconds, path.devices, hops))
            transfer_total += seconds
            cost += node.out_bytes * path.price_per_byte
            for hop, t in zip(path.hops, own, strict=True):
                energy_total += (devices[hop.src].power_tx_w + devices[hop.dst].power_rx_w) * t
                if hop.src == source:
                    busy_tx += t
                if hop.dst == source:
                    busy_rx += t
    if violations:
        return _invalid(problem, full, memory, violations)

    src = problem.device(source)
    latency = compute + transfer_total
    awake = latency if source_users == 1.0 else latency / source_users  # its part of the source's idle draw
    idle = awake - busy_compute - busy_tx - busy_rx
    energy_source = (
        src.power_compute_w * busy_compute + src.power_tx_w * busy_tx + src.power_rx_w * busy_rx + src.power_idle_w * idle
    )
    from tiercut.cost.throughput import bottleneck, stage_times

    stages = bottleneck(stage_times(problem, full, transfers))
    metrics = {"latency": latency, "energy_source": energy_source, "energy_total": energy_total, "cost": cost,
               "bottleneck": stages.bottleneck_s}
    violations.extend(constraint_violations(problem, full, metrics, memory))
    loss = accuracy_loss(problem, used)
    budget = None if problem.cut_compression is None else problem.cut_compression.accuracy_loss_max
    if budget is not None and loss > budget + 1e-12:
        violations.append(f"accuracy loss {loss:.4g} of the compressed cut tensors is over its budget {budget:.4g}")
    return Evaluation(
        placement=full,
        latency_s=latency,
        energy_source_j=energy_source,
        energy_total_j=energy_total,
        cost=cost,
        compute_s=compute,
        transfer_s=transfer_total,
        busy_compute_s=busy_compute,
        busy_tx_s=busy_tx,
        busy_rx_s=busy_rx,
        transfers=tuple(transfers),
        memory_bytes=memory,
        objective_value=objective_value(problem.objective, metrics),
        valid=True,
        violations=tuple(violations),
        compression=used,
        accuracy_loss=loss,
        pipeline_stages=stages.stages,
        bottleneck_s=stages.bottleneck_s,
    )


def constraint_violations(
    problem: Problem, placement: Mapping[str, str], metrics: Mapping[str, float], memory: Mapping[str, int]
) -> list[str]:
    """One line per broken constraint: memory, budgets, pinned nodes."""
    out: list[str] = []
    cons = problem.constraints
    if cons.memory:
        for device in problem.devices:
            if device.memory_bytes is not None and memory[device.name] > device.memory_bytes:
                out.append(
                    f"{device.name!r} holds {memory[device.name]:,} parameter bytes, over its memory of {device.memory_bytes:,}"
                )
    units = {"latency": "s", "energy_source": "J", "energy_total": "J", "cost": ""}
    for metric, budget in cons.budgets().items():
        if metrics[metric] > budget * (1 + BUDGET_RTOL) + 1e-15:
            out.append(f"{metric} {metrics[metric]:.6g}{units[metric]} is over its budget {budget:.6g}{units[metric]}")
    for node, device in cons.pinned.items():
        if placement.get(node) != device:
            out.append(f"node {node!r} is pinned to {device!r} but placed on {placement.get(node)!r}")
    return out


__all__ = [
    "BUDGET_RTOL",
    "METRICS",
    "Evaluation",
    "Hop",
    "Transfer",
    "constraint_violations",
    "evaluate",
    "memory_bytes",
    "metric_values",
    "objective_value",
    "transfer_seconds",
]
