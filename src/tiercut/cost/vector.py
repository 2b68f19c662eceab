"""The cost model of DESIGN.md, vectorised: thousands of placements per call.

Placements are an int array ``[n_placements, n_nodes]`` of device indices
(``problem.device_names`` order, nodes in ``problem.graph`` order). The
figures equal :func:`tiercut.cost.evaluate`'s (tested with hypothesis); this
is what the metaheuristics score their populations with.

The multi-user equal-share model reuses the same kernel with per-placement
speed shares: ``device_share[p, d]`` multiplies compute times on ``d`` (the
number of users sharing it) and ``link_share[p, a, b]`` multiplies the
bandwidth term of transfers over ``(a, b)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tiercut.cost.model import BUDGET_RTOL
from tiercut.errors import TiercutError
from tiercut.problem import METRICS, Problem

#: elements of the [placements, nodes, devices] work arrays per chunk.
CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class CompiledProblem:
    """A problem as arrays (built once by :func:`compile_problem`).

    Attributes:
        problem: the problem it came from.
        compute: [n, D] seconds; inf where a node cannot run (inputs: 0 on the
            source, inf elsewhere).
        allowed: [n, D] bool: device allowed for the node (can run, pins, inputs).
        param_bytes, out_bytes: [n].
        is_output: [n] bool.
        edge_src, edge_dst: [E] node indices of the distinct DAG edges.
        senders: node indices whose output goes somewhere (consumers or output).
        latency, inv_bandwidth: [D, D] link latency and 1/bandwidth (0 on the
            diagonal; inf latency where there is no link).
        has_link: [D, D] bool, True on the diagonal.
        price_per_byte: [D, D].
        power_compute, power_tx, power_rx, power_idle, price_per_s: [D].
        memory_limit: [D] bytes (inf: unlimited or memory not enforced).
        source: index of the source device.
        pinned_nodes, pinned_devices: [k] node and device indices of pins.
    """

    problem: Problem
    compute: np.ndarray
    allowed: np.ndarray
    param_bytes: np.ndarray
    out_bytes: np.ndarray
    is_output: np.ndarray
    edge_src: np.ndarray
    edge_dst: np.ndarray
    senders: np.ndarray
    latency: np.ndarray
    inv_bandwidth: np.ndarray
    has_link: np.ndarray
    price_per_byte: np.ndarray
    power_compute: np.ndarray
    power_tx: np.ndarray
    power_rx: np.ndarray
    power_idle: np.ndarray
    price_per_s: np.ndarray
    memory_limit: np.ndarray
    source: int
    pinned_nodes: np.ndarray
    pinned_devices: np.ndarray

    @property
    def n_nodes(self) -> int:
        return int(self.compute.shape[0])

    @property
    def n_devices(self) -> int:
        return int(self.compute.shape[1])


def compile_problem(problem: Problem) -> CompiledProblem:
    """The arrays of ``problem`` for :func:`evaluate_many`."""
    graph = problem.graph
    names = problem.device_names
    n, D = len(graph), len(names)
    index = {name: i for i, name in enumerate(names)}
    src = index[problem.source]
    compute = np.full((n, D), np.inf)
    for i, node in enumerate(graph):
        if node.is_input:
            compute[i, src] = 0.0
            continue
        for device, seconds in problem.compute_s[node.name].items():
            compute[i, index[device]] = seconds
    allowed = np.isfinite(compute)
    pinned_nodes, pinned_devices = [], []
    for node_name, device in problem.constraints.pinned.items():
        i = graph.index(node_name)
        pinned_nodes.append(i)
        pinned_devices.append(index[device])
        row = np.zeros(D, dtype=bool)
        row[index[device]] = True
        allowed[i] &= row
    edges = graph.edges()
    edge_src = np.array([graph.index(u) for u, _ in edges], dtype=np.int64)
    edge_dst = np.array([graph.index(w) for _, w in edges], dtype=np.int64)
    is_output = np.array([node.is_output for node in graph], dtype=bool)
    has_consumer = np.zeros(n, dtype=bool)
    has_consumer[edge_src] = True
    senders = np.flatnonzero(has_consumer | is_output)

    latency = np.full((D, D), np.inf)
    inv_bw = np.zeros((D, D))
    has_link = np.eye(D, dtype=bool)
    ppb = np.zeros((D, D))
    np.fill_diagonal(latency, 0.0)
    for link in problem.links:
        a, b = index[link.a], index[link.b]
        for x, y in ((a, b), (b, a)):
            latency[x, y] = link.latency_s
            inv_bw[x, y] = 1.0 / link.bandwidth_bps
            has_link[x, y] = True
            ppb[x, y] = link.price_per_byte
    devs = problem.devices
    memory_limit = np.array(
        [np.inf if (d.memory_bytes is None or not problem.constraints.memory) else float(d.memory_bytes) for d in devs]
    )
    return CompiledProblem(
        problem=problem,
        compute=compute,
        allowed=allowed,
        param_bytes=np.array([node.param_bytes for node in graph], dtype=np.float64),
        out_bytes=np.array([node.out_bytes for node in graph], dtype=np.float64),
        is_output=is_output,
        edge_src=edge_src,
        edge_dst=edge_dst,
        senders=senders,
        latency=latency,
        inv_bandwidth=inv_bw,
        has_link=has_link,
        price_per_byte=ppb,
        power_compute=np.array([d.power_compute_w for d in devs]),
        power_tx=np.array([d.power_tx_w for d in devs]),
        power_rx=np.array([d.power_rx_w for d in devs]),
        power_idle=np.array([d.power_idle_w for d in devs]),
        price_per_s=np.array([d.price_per_s for d in devs]),
        memory_limit=memory_limit,
        source=src,
        pinned_nodes=np.array(pinned_nodes, dtype=np.int64),
        pinned_devices=np.array(pinned_devices, dtype=np.int64),
    )


@dataclass(frozen=True)
class BatchEvaluation:
    """Figures of many placements (arrays over placements).

    Attributes:
        latency_s, energy_source_j, energy_total_j, cost, objective: [P]; inf
            where the placement is not valid.
        memory_bytes: [P, D] parameter bytes per device.
        valid: [P] every node on a device that can run it, inputs on the
            source, every transfer over a link.
        feasible: [P] valid and no constraint broken.
        penalty: [P] 0 when feasible; else the summed relative excess over
            the memory limits and budgets plus one per misplaced pinned node
            (inf when not valid) — a smooth measure for metaheuristics.
    """

    latency_s: np.ndarray
    energy_source_j: np.ndarray
    energy_total_j: np.ndarray
    cost: np.ndarray
    objective: np.ndarray
    memory_bytes: np.ndarray
    valid: np.ndarray
    feasible: np.ndarray
    penalty: np.ndarray

    def metric(self, name: str) -> np.ndarray:
        return {
            "latency": self.latency_s,
            "energy_source": self.energy_source_j,
            "energy_total": self.energy_total_j,
            "cost": self.cost,
        }[name]

    def __len__(self) -> int:
        return int(self.latency_s.shape[0])


def encode(problem: Problem | CompiledProblem, placement: Mapping[str, str]) -> np.ndarray:
    """A placement dict as a row of device indices (inputs default to the source)."""
    prob = problem.problem if isinstance(problem, CompiledProblem) else problem
    row = np.empty(len(prob.graph), dtype=np.int64)
    for i, node in enumerate(prob.graph):
        device = placement.get(node.name, prob.source if node.is_input else None)
        if device is None:
            raise TiercutError(f"placement has no device for node {node.name!r}; place every node")
        row[i] = prob.device_index(device)
    return row


def decode(problem: Problem | CompiledProblem, row: np.ndarray) -> dict[str, str]:
    """A row of device indices as a placement dict."""
    prob = problem.problem if isinstance(problem, CompiledProblem) else problem
    names = prob.device_names
    return {node.name: names[int(d)] for node, d in zip(prob.graph, row, strict=True)}


def evaluate_many(
    problem: Problem | CompiledProblem,
    placements: np.ndarray,
    *,
    device_share: np.ndarray | None = None,
    link_share: np.ndarray | None = None,
) -> BatchEvaluation:
    """Score every row of ``placements`` ([P, n] device indices).

    ``device_share`` ([P, D]) and ``link_share`` ([P, D, D]) are the
    equal-share multipliers of the multi-user model (default 1).
    """
    comp = problem if isinstance(problem, CompiledProblem) else compile_problem(problem)
    X = np.asarray(placements)
    if X.ndim == 1:
        X = X[None, :]
    P, n = X.shape
    D = comp.n_devices
    if n != comp.n_nodes:
        raise TiercutError(f"placements have {n} columns; the problem has {comp.n_nodes} nodes")
    if P and (X.min() < 0 or X.max() >= D):
        raise TiercutError(f"placements hold device indices outside 0..{D - 1}")
    X = X.astype(np.int64, copy=False)
    out = {k: np.empty(P) for k in ("latency", "energy_source", "energy_total", "cost")}
    memory = np.empty((P, D))
    valid = np.empty(P, dtype=bool)
    width = max(1, len(comp.senders)) * D
    step = max(1, CHUNK_ELEMENTS // width)
    for start in range(0, P, step):
        stop = min(P, start + step)
        _kernel(
            comp,
            X[start:stop],
            None if device_share is None else device_share[start:stop],
            None if link_share is None else link_share[start:stop],
            out,
            memory,
            valid,
            start,
        )
    problem_obj = comp.problem.objective
    objective = np.zeros(P)
    for name, weight in problem_obj.metric_weights().items():
        objective = objective + weight * out[name]
    objective[~valid] = np.inf

    penalty = np.zeros(P)
    with np.errstate(divide="ignore", invalid="ignore"):
        limits = comp.memory_limit
        finite = np.isfinite(limits)
        if finite.any():
            excess = np.maximum(memory[:, finite] - limits[finite], 0.0)
            penalty += (excess / np.maximum(limits[finite], 1.0)).sum(axis=1)
        for name, budget in comp.problem.constraints.budgets().items():
            value = out[name]
            over = value > budget * (1 + BUDGET_RTOL) + 1e-15
            rel = np.where(over, (value - budget) / max(budget, 1e-12), 0.0)
            penalty += rel
        if len(comp.pinned_nodes):
            penalty += (X[:, comp.pinned_nodes] != comp.pinned_devices[None, :]).sum(axis=1)
    penalty[~valid] = np.inf
    feasible = valid & (penalty == 0)
    return BatchEvaluation(
        latency_s=out["latency"],
        energy_source_j=out["energy_source"],
        energy_total_j=out["energy_total"],
        cost=out["cost"],
        objective=objective,
        memory_bytes=memory,
        valid=valid,
        feasible=feasible,
        penalty=penalty,
    )


def transfer_mask(comp: CompiledProblem, X: np.ndarray) -> np.ndarray:
    """[P, S, D] bool: sender ``senders[s]``'s tensor goes to device d (d != its own)."""
    P, _ = X.shape
    D = comp.n_devices
    position = np.full(comp.n_nodes, -1, dtype=np.int64)
    position[comp.senders] = np.arange(len(comp.senders))
    mask = np.zeros((P, len(comp.senders), D), dtype=bool)
    if len(comp.edge_src):
        rows = np.arange(P)[:, None]
        mask[rows, position[comp.edge_src][None, :], X[:, comp.edge_dst]] = True
    out_pos = position[np.flatnonzero(comp.is_output)]
    if len(out_pos):
        mask[:, out_pos, comp.source] = True
    own = X[:, comp.senders]
    mask[np.arange(P)[:, None], np.arange(len(comp.senders))[None, :], own] = False
    return mask


def _kernel(
    comp: CompiledProblem,
    X: np.ndarray,
    device_share: np.ndarray | None,
    link_share: np.ndarray | None,
    out: dict[str, np.ndarray],
    memory: np.ndarray,
    valid: np.ndarray,
    offset: int,
) -> None:
    P, n = X.shape
    D = comp.n_devices
    s = comp.source
    sl = slice(offset, offset + P)
    rows = np.arange(P)[:, None]

    c = comp.compute[np.arange(n)[None, :], X]  # [P, n]
    if device_share is not None:
        c = c * device_share[rows, X]
    ok = np.isfinite(c).all(axis=1)
    c = np.where(np.isfinite(c), c, 0.0)
    compute_total = c.sum(axis=1)
    on_source = s == X
    busy_compute = (c * on_source).sum(axis=1)
    energy_total = (comp.power_compute[X] * c).sum(axis=1)
    cost = (comp.price_per_s[X] * c).sum(axis=1)

    if len(comp.senders):
        mask = transfer_mask(comp, X)  # [P, S, D]
        a = X[:, comp.senders]  # [P, S]
        pair = a[:, :, None] * D + np.arange(D)[None, None, :]  # flat (sender device, destination) index
        if not comp.has_link.all():
            ok &= ~(mask & ~comp.has_link.ravel()[pair]).any(axis=(1, 2))
        latency_flat = np.where(comp.has_link, comp.latency, 0.0).ravel()
        inv_bw = comp.inv_bandwidth.ravel()[pair]
        if link_share is not None:
            inv_bw = inv_bw * link_share.reshape(P, D * D)[rows[:, :, None], pair]
        out_bytes = comp.out_bytes[comp.senders][None, :, None]
        tau = (latency_flat[pair] + out_bytes * inv_bw) * mask
        per_sender = tau.sum(axis=2)  # [P, S]
        transfer_total = per_sender.sum(axis=1)
        busy_tx = (per_sender * (a == s)).sum(axis=1)
        busy_rx = tau[:, :, s].sum(axis=1)
        received = tau.sum(axis=1)  # [P, D] seconds of transfers into each device
        energy_total = energy_total + (per_sender * comp.power_tx[a]).sum(axis=1) + received @ comp.power_rx
        if comp.price_per_byte.any():
            cost = cost + (comp.price_per_byte.ravel()[pair] * mask * out_bytes).sum(axis=(1, 2))
    else:
        transfer_total = busy_tx = busy_rx = np.zeros(P)

    latency = compute_total + transfer_total
    src_dev = comp.problem.devices[s]
    idle = latency - busy_compute - busy_tx - busy_rx
    energy_source = (
        src_dev.power_compute_w * busy_compute
        + src_dev.power_tx_w * busy_tx
        + src_dev.power_rx_w * busy_rx
        + src_dev.power_idle_w * idle
    )
    inf = math.inf
    out["latency"][sl] = np.where(ok, latency, inf)
    out["energy_source"][sl] = np.where(ok, energy_source, inf)
    out["energy_total"][sl] = np.where(ok, energy_total, inf)
    out["cost"][sl] = np.where(ok, cost, inf)
    for d in range(D):
        memory[sl, d] = (comp.param_bytes[None, :] * (d == X)).sum(axis=1)
    valid[sl] = ok


__all__ = [
    "METRICS",
    "BatchEvaluation",
    "CompiledProblem",
    "compile_problem",
    "decode",
    "encode",
    "evaluate_many",
    "transfer_mask",
]
