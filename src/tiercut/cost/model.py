"""The cost model of DESIGN.md, one placement at a time.

For a placement ``x: V -> D`` (graph inputs on the source):

- ``dest(u) = {x(w) : u -> w} ∪ ({source} if u is a graph output)``;
- ``transfers(x) = {(u, x(u), d) : d in dest(u), d != x(u)}`` (a tensor is sent
  once to each other device that needs it);
- ``tau(u, a, b) = latency(a, b) + out(u) / bandwidth(a, b)``;
- ``T(x) = sum_v c(v, x(v)) + sum_transfers tau`` (sequential: one node or one
  transfer at a time, as in Neurosurgeon and DADS);
- source energy ``P_compute*busy_compute + P_tx*busy_tx + P_rx*busy_rx +
  P_idle*(T - busy_compute - busy_tx - busy_rx)`` with the source's powers;
- total energy: every device's compute energy plus the tx energy of the
  sender and the rx energy of the receiver of every transfer (idle power
  is not part of it);
- cost: ``sum_v price_per_s(x(v)) * c(v, x(v)) + sum_transfers out(u) *
  price_per_byte(a, b)``;
- memory: parameter bytes per device.

This module is the reference transcription of those formulas; the
vectorised evaluator (:mod:`tiercut.cost.vector`) is tested against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from tiercut.errors import TiercutError
from tiercut.problem import METRICS, Objective, Problem

#: relative slack when checking a budget, so that a plan sitting exactly on
#: its budget is not rejected for a rounding crumb.
BUDGET_RTOL = 1e-9


@dataclass(frozen=True)
class Transfer:
    """One tensor sent from one device to another."""

    node: str
    src: str
    dst: str
    out_bytes: int
    seconds: float


@dataclass(frozen=True)
class Evaluation:
    """The cost model's figures of one placement.

    Attributes:
        placement: node -> device (inputs included).
        latency_s: T(x).
        energy_source_j, energy_total_j, cost: see the module docstring.
        compute_s, transfer_s: the two parts of ``latency_s``.
        busy_compute_s, busy_tx_s, busy_rx_s: the source device's busy times.
        transfers: every transfer, in topological order of the tensor.
        memory_bytes: device -> parameter bytes placed on it (every device).
        objective_value: the problem objective's value.
        valid: every node runs on a device with a compute time, inputs are
            on the source and every transfer has a link. When False the
            figures are inf.
        violations: one line per broken rule or constraint.
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

    @property
    def feasible(self) -> bool:
        return not self.violations

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
    """tau for ``out_bytes`` from ``a`` to ``b``: 0 on one device, inf without a link."""
    if a == b:
        return 0.0
    link = problem.link(a, b)
    if link is None:
        return math.inf
    return link.latency_s + out_bytes / link.bandwidth_bps


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


def evaluate(problem: Problem, placement: Mapping[str, str]) -> Evaluation:
    """Every figure of ``placement`` under ``problem``'s cost model and constraints.

    ``placement`` maps every node (inputs may be left out: they are on the
    source) to a device name. A node missing from it, or an unknown device,
    is a :class:`TiercutError`; a placement that breaks the model (a node on
    a device where it cannot run, an input off the source, a transfer
    without a link) is evaluated as invalid with inf figures.
    """
    graph = problem.graph
    device_names = problem.device_names
    names = set(device_names)
    devices = {d.name: d for d in problem.devices}
    full: dict[str, str] = {}
    for node in graph:
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

    memory = {d: 0 for d in device_names}
    for node in graph:
        memory[full[node.name]] += node.param_bytes

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
        compute += seconds
        dev = devices[device]
        energy_total += dev.power_compute_w * seconds
        cost += dev.price_per_s * seconds
        if device == problem.source:
            busy_compute += seconds

    consumers = graph.consumers()
    transfers: list[Transfer] = []
    for node in graph:
        here = full[node.name]
        dest = {full[w] for w in consumers[node.name]}
        if node.is_output:
            dest.add(problem.source)
        for device in device_names:  # deterministic order
            if device not in dest or device == here:
                continue
            if problem.link(here, device) is None:
                violations.append(f"{node.name!r} must go from {here!r} to {device!r}, which have no link")
                continue
            seconds = transfer_seconds(problem, node.out_bytes, here, device)
            transfers.append(Transfer(node.name, here, device, node.out_bytes, seconds))
    if violations:
        return _invalid(problem, full, memory, violations)

    src = problem.device(problem.source)
    transfer_total = 0.0
    busy_tx = busy_rx = 0.0
    for t in transfers:
        transfer_total += t.seconds
        link = problem.link(t.src, t.dst)
        assert link is not None
        energy_total += (devices[t.src].power_tx_w + devices[t.dst].power_rx_w) * t.seconds
        cost += t.out_bytes * link.price_per_byte
        if t.src == problem.source:
            busy_tx += t.seconds
        if t.dst == problem.source:
            busy_rx += t.seconds
    latency = compute + transfer_total
    idle = latency - busy_compute - busy_tx - busy_rx
    energy_source = (
        src.power_compute_w * busy_compute + src.power_tx_w * busy_tx + src.power_rx_w * busy_rx + src.power_idle_w * idle
    )
    metrics = {"latency": latency, "energy_source": energy_source, "energy_total": energy_total, "cost": cost}
    violations.extend(constraint_violations(problem, full, metrics, memory))
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
    "Transfer",
    "constraint_violations",
    "evaluate",
    "metric_values",
    "objective_value",
    "transfer_seconds",
]
