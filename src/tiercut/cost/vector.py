"""The cost model (docs/cost-model.md), vectorised: thousands of placements per call.

Placements are an int array ``[n_placements, n_nodes]`` of device indices
(``problem.device_names`` order, nodes in ``problem.graph`` order). The
figures equal :func:`tiercut.cost.evaluate`'s (tested with hypothesis); this
is what the metaheuristics score their populations with.

Transfers follow the problem's routing (:mod:`tiercut.cost.routing`): the
path each tensor takes between two devices is precomputed per node
(:attr:`CompiledProblem.route`) from the candidate paths
(:class:`PathTable`), so routed and directional links cost no more here
than direct ones.

The multi-user equal-share model reuses the same kernel with per-placement
speed shares: ``device_share[p, d]`` multiplies compute times on ``d`` (the
number of users sharing it) and ``link_share[p, a, b]`` multiplies the
bandwidth term of every hop over the link ``(a, b)``. They stretch the
latency; energy and price are charged for the user's own (unstretched) work,
as in :func:`tiercut.cost.evaluate` (``charge_stretched`` likewise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from tiercut.cost.model import BUDGET_RTOL
from tiercut.errors import TiercutError
from tiercut.problem import METRICS, Problem

#: elements of the [placements, nodes, devices] work arrays per chunk.
CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class PathTable:
    """Every candidate path of a problem's routing as arrays (row ``K`` is the empty path).

    The time of a path for ``s`` bytes is ``latency[k] + s * seconds_per_byte[k]``; with
    equal-share multipliers ``m`` on the links (flattened ``[D * D]``, directed pairs)
    the byte term becomes ``s * hop_spb[k] @ m``. Energy and the source's busy
    times split the same way (a latency part and per-hop byte weights).

    Attributes:
        latency, seconds_per_byte, price_per_byte: [K + 1].
        hop_spb: [K + 1, D * D] seconds per byte of each directed hop the path takes.
        energy_latency, hop_energy_spb: total-energy parts ((P_tx(sender) + P_rx(receiver)) per hop).
        tx_latency, hop_tx_spb: the hops the source sends.
        rx_latency, hop_rx_spb: the hops the source receives.
        devices: each path's devices (``()`` for the empty row).
        hop_message_link_s: [K + 1, D * D] seconds each directed hop's link is busy per message besides its
            bytes (``message_overhead_bytes / bandwidth``; docs/cost-model.md "Per-message costs").
        message_device_s: [K + 1, D] seconds each device is busy per message of the path (``message_s`` per
            hop it sends or receives, relays included).
    """

    latency: np.ndarray
    seconds_per_byte: np.ndarray
    price_per_byte: np.ndarray
    hop_spb: np.ndarray
    energy_latency: np.ndarray
    hop_energy_spb: np.ndarray
    tx_latency: np.ndarray
    hop_tx_spb: np.ndarray
    rx_latency: np.ndarray
    hop_rx_spb: np.ndarray
    devices: tuple[tuple[str, ...], ...]
    hop_message_link_s: np.ndarray | None = None
    message_device_s: np.ndarray | None = None
    energy_spb: np.ndarray = field(init=False, repr=False)
    tx_spb: np.ndarray = field(init=False, repr=False)
    rx_spb: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "energy_spb", self.hop_energy_spb.sum(axis=1))
        object.__setattr__(self, "tx_spb", self.hop_tx_spb.sum(axis=1))
        object.__setattr__(self, "rx_spb", self.hop_rx_spb.sum(axis=1))

    @property
    def empty(self) -> int:
        """Index of the empty path (same device, or unreachable)."""
        return len(self.latency) - 1


@dataclass(frozen=True)
class CompiledProblem:
    """A problem as arrays (built once by :func:`compile_problem`).

    Attributes:
        problem: the problem it came from.
        compute: [n, D] seconds; inf where a node cannot run (inputs: 0 on the
            source, inf elsewhere).
        allowed: [n, D] bool: device allowed for the node (can run, pins, inputs).
        param_bytes: [n] the nodes' ``param_bytes`` (shared weights on their first user).
        private_param_bytes: [n] bytes of the parameters only this node uses.
        shared_params: (bytes, node indices) of each parameter several nodes use.
        out_bytes: [n].
        is_output: [n] bool.
        edge_src, edge_dst: [E] node indices of the distinct DAG edges.
        senders: node indices whose output goes somewhere (consumers or output).
        has_link: [D, D] bool: a direct link (True on the diagonal).
        reachable: [D, D] bool: a path of links (True on the diagonal).
        paths: the routing's candidate paths (:class:`PathTable`).
        route: [n, D, D] the path node ``v``'s tensor takes from ``a`` to ``b``
            (``paths.empty`` on the diagonal and for unreachable pairs).
        power_compute, power_tx, power_rx, power_idle, price_per_s: [D].
        memory_limit: [D] bytes (inf: unlimited or memory not enforced).
        source: index of the source device.
        pinned_nodes, pinned_devices: [k] node and device indices of pins.
    """

    problem: Problem
    compute: np.ndarray
    allowed: np.ndarray
    param_bytes: np.ndarray
    private_param_bytes: np.ndarray
    shared_params: tuple[tuple[float, np.ndarray], ...]
    out_bytes: np.ndarray
    is_output: np.ndarray
    edge_src: np.ndarray
    edge_dst: np.ndarray
    senders: np.ndarray
    has_link: np.ndarray
    reachable: np.ndarray
    paths: PathTable
    route: np.ndarray
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

    def transfer_arrays(self) -> dict[str, np.ndarray]:
        """[n, D, D] per-transfer figures of node ``v``'s tensor from ``a`` to ``b`` (0 on the diagonal,
        inf seconds where unreachable): ``seconds``, ``energy_total`` (tx/rx of every hop), ``tx_source`` and
        ``rx_source`` (the source's busy seconds), ``price`` (money)."""
        t = self.paths
        r = self.route
        out = self.out_bytes[:, None, None]
        seconds = t.latency[r] + out * t.seconds_per_byte[r]
        seconds = np.where(self.reachable[None, :, :], seconds, np.inf)
        return {
            "seconds": seconds,
            "energy_total": t.energy_latency[r] + out * t.energy_spb[r],
            "tx_source": t.tx_latency[r] + out * t.tx_spb[r],
            "rx_source": t.rx_latency[r] + out * t.rx_spb[r],
            "price": out * t.price_per_byte[r],
        }


def _path_table(
    problem: Problem, index: dict[str, int]
) -> tuple[PathTable, dict[tuple[str, str], list[int]], np.ndarray]:
    routing = problem.routing
    D = len(index)
    devs = problem.devices
    src = problem.source
    rows: list[tuple] = []
    by_pair: dict[tuple[str, str], list[int]] = {}
    for a in problem.device_names:
        for b in problem.device_names:
            for path in routing.candidates.get((a, b), ()):
                by_pair.setdefault((a, b), []).append(len(rows))
                rows.append(path)
    K = len(rows)
    latency = np.zeros(K + 1)
    spb = np.zeros(K + 1)
    price = np.zeros(K + 1)
    hop_spb = np.zeros((K + 1, D * D))
    e_lat = np.zeros(K + 1)
    e_spb = np.zeros((K + 1, D * D))
    tx_lat = np.zeros(K + 1)
    tx_spb = np.zeros((K + 1, D * D))
    rx_lat = np.zeros(K + 1)
    rx_spb = np.zeros((K + 1, D * D))
    link_msg = np.zeros((K + 1, D * D))
    device_msg = np.zeros((K + 1, D))
    message_s = np.array([getattr(d, "message_s", 0.0) for d in devs])
    for k, path in enumerate(rows):
        latency[k] = path.latency_s
        spb[k] = path.seconds_per_byte
        price[k] = path.price_per_byte
        for hop, fixed in zip(path.hops, path.fixed_seconds(), strict=True):
            flat = index[hop.src] * D + index[hop.dst]
            w = 1.0 / hop.bandwidth_bytes_per_s
            power = devs[index[hop.src]].power_tx_w + devs[index[hop.dst]].power_rx_w
            hop_spb[k, flat] += w
            e_lat[k] += power * fixed
            e_spb[k, flat] += power * w
            link_msg[k, flat] += hop.message_overhead_bytes * w
            device_msg[k, index[hop.src]] += message_s[index[hop.src]]
            device_msg[k, index[hop.dst]] += message_s[index[hop.dst]]
            if hop.src == src:
                tx_lat[k] += fixed
                tx_spb[k, flat] += w
            if hop.dst == src:
                rx_lat[k] += fixed
                rx_spb[k, flat] += w
    table = PathTable(
        latency, spb, price, hop_spb, e_lat, e_spb, tx_lat, tx_spb, rx_lat, rx_spb,
        (*tuple(p.devices for p in rows), ()), link_msg, device_msg,
    )
    selection = np.array([p.selection for p in rows] + [(0.0, 0.0)], dtype=np.float64).reshape(K + 1, 2)
    return table, by_pair, selection


def compile_problem(problem: Problem) -> CompiledProblem:
    """The arrays of ``problem`` for :func:`evaluate_many` (built once per problem and cached on it)."""
    cached = problem._derived.get("compiled")
    if cached is not None:
        return cached
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
    out_bytes = np.array([node.out_bytes for node in graph], dtype=np.float64)

    has_link = np.eye(D, dtype=bool)
    for link in problem.links:
        has_link[index[link.a], index[link.b]] = has_link[index[link.b], index[link.a]] = True
    table, by_pair, selection = _path_table(problem, index)
    reachable = np.eye(D, dtype=bool)
    route = np.full((n, D, D), table.empty, dtype=np.int64)
    for (a, b), ks in by_pair.items():
        ia, ib = index[a], index[b]
        reachable[ia, ib] = True
        ks_arr = np.array(ks, dtype=np.int64)
        times = selection[ks_arr, 0][None, :] + out_bytes[:, None] * selection[ks_arr, 1][None, :]
        route[:, ia, ib] = ks_arr[np.argmin(times, axis=1)]

    weight_names, uses = graph.param_table()
    users: dict[str, list[int]] = {}
    for i, node in enumerate(graph):
        for param in uses[node.name]:
            users.setdefault(param, []).append(i)
    private = np.zeros(n)
    shared = []
    for param, nodes_using in users.items():
        if len(nodes_using) == 1:
            private[nodes_using[0]] += weight_names[param]
        else:
            shared.append((float(weight_names[param]), np.array(nodes_using, dtype=np.int64)))

    devs = problem.devices
    memory_limit = np.array(
        [np.inf if (d.memory_bytes is None or not problem.constraints.memory) else float(d.memory_bytes) for d in devs]
    )
    comp = CompiledProblem(
        problem=problem,
        compute=compute,
        allowed=allowed,
        param_bytes=np.array([node.param_bytes for node in graph], dtype=np.float64),
        private_param_bytes=private,
        shared_params=tuple(shared),
        out_bytes=out_bytes,
        is_output=is_output,
        edge_src=edge_src,
        edge_dst=edge_dst,
        senders=senders,
        has_link=has_link,
        reachable=reachable,
        paths=table,
        route=route,
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
    problem._derived["compiled"] = comp
    return comp


def memory_many(comp: CompiledProblem, X: np.ndarray) -> np.ndarray:
    """[P, D] bytes of the distinct parameters each device's nodes use, per placement row."""
    P = X.shape[0]
    D = comp.n_devices
    memory = np.empty((P, D))
    for d in range(D):
        on = d == X
        memory[:, d] = (comp.private_param_bytes[None, :] * on).sum(axis=1)
        for nbytes, nodes in comp.shared_params:
            memory[:, d] += nbytes * on[:, nodes].any(axis=1)
    return memory


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
        bottleneck_s: [P] the largest pipeline stage time
            (:mod:`tiercut.cost.throughput`; inf where not valid), computed
            when the objective is ``throughput`` or ``stages=True``, else None.
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
    bottleneck_s: np.ndarray | None = None

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
    stages: bool = False,
    charge_stretched: bool = False,
    source_users: float = 1.0,
) -> BatchEvaluation:
    """Score every row of ``placements`` ([P, n] device indices).

    ``device_share`` ([P, D]) and ``link_share`` ([P, D, D]) are the
    equal-share multipliers of the multi-user model (default 1): they stretch
    the latency, energy and price are charged for the unstretched work unless
    ``charge_stretched`` (a slower resource, not a shared one: the gym).
    ``source_users``: users sharing the source device's idle power (as in
    :func:`tiercut.cost.evaluate`). ``stages``: also compute ``bottleneck_s``
    (always done for the throughput objective).
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
            charge_stretched,
            source_users,
        )
    problem_obj = comp.problem.objective
    bottleneck = None
    if stages or problem_obj.is_throughput:
        from tiercut.cost.throughput import stage_times_many

        times = stage_times_many(comp, X)
        bottleneck = times.max(axis=1) if times.shape[1] else np.zeros(P)
        bottleneck = np.where(valid, bottleneck, np.inf)
        out["bottleneck"] = bottleneck
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
        bottleneck_s=bottleneck,
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
    charge_stretched: bool = False,
    source_users: float = 1.0,
) -> None:
    P, n = X.shape
    D = comp.n_devices
    s = comp.source
    sl = slice(offset, offset + P)
    rows = np.arange(P)[:, None]

    c = comp.compute[np.arange(n)[None, :], X]  # [P, n]
    ok = np.isfinite(c).all(axis=1)
    c = np.where(np.isfinite(c), c, 0.0)
    if device_share is not None:  # latency: the stretched seconds; energy and price: the own work c
        stretched = c * device_share[rows, X]
        compute_total = stretched.sum(axis=1)
        if charge_stretched:
            c = stretched
    else:
        compute_total = c.sum(axis=1)
    on_source = s == X
    busy_compute = (c * on_source).sum(axis=1)
    energy_total = (comp.power_compute[X] * c).sum(axis=1)
    cost = (comp.price_per_s[X] * c).sum(axis=1)

    if len(comp.senders):
        mask = transfer_mask(comp, X)  # [P, S, D]
        a = X[:, comp.senders]  # [P, S]
        dev = np.arange(D)[None, None, :]
        if not comp.reachable.all():
            ok &= ~(mask & ~comp.reachable[a[:, :, None], dev]).any(axis=(1, 2))
        t = comp.paths
        k = np.where(mask, comp.route[comp.senders[None, :, None], a[:, :, None], dev], t.empty)  # [P, S, D]
        out_bytes = comp.out_bytes[comp.senders][None, :, None]
        if link_share is None:
            tau = t.latency[k] + out_bytes * t.seconds_per_byte[k]
            energy_tr = t.energy_latency[k] + out_bytes * t.energy_spb[k]
            tx = t.tx_latency[k] + out_bytes * t.tx_spb[k]
            rx = t.rx_latency[k] + out_bytes * t.rx_spb[k]
        elif not charge_stretched:  # latency stretched; radio energy for the hops' own time
            share = link_share.reshape(P, D * D)
            prow = rows[:, :, None]
            tau = t.latency[k] + out_bytes * (share @ t.hop_spb.T)[prow, k]
            energy_tr = t.energy_latency[k] + out_bytes * t.energy_spb[k]
            tx = t.tx_latency[k] + out_bytes * t.tx_spb[k]
            rx = t.rx_latency[k] + out_bytes * t.rx_spb[k]
        else:
            share = link_share.reshape(P, D * D)
            prow = rows[:, :, None]
            tau = t.latency[k] + out_bytes * (share @ t.hop_spb.T)[prow, k]
            energy_tr = t.energy_latency[k] + out_bytes * (share @ t.hop_energy_spb.T)[prow, k]
            tx = t.tx_latency[k] + out_bytes * (share @ t.hop_tx_spb.T)[prow, k]
            rx = t.rx_latency[k] + out_bytes * (share @ t.hop_rx_spb.T)[prow, k]
        transfer_total = tau.sum(axis=(1, 2))
        busy_tx = tx.sum(axis=(1, 2))
        busy_rx = rx.sum(axis=(1, 2))
        energy_total = energy_total + energy_tr.sum(axis=(1, 2))
        if t.price_per_byte.any():
            cost = cost + (out_bytes * t.price_per_byte[k]).sum(axis=(1, 2))
    else:
        transfer_total = busy_tx = busy_rx = np.zeros(P)

    latency = compute_total + transfer_total
    src_dev = comp.problem.devices[s]
    idle = (latency if source_users == 1.0 else latency / source_users) - busy_compute - busy_tx - busy_rx
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
    memory[sl] = memory_many(comp, X)
    valid[sl] = ok


__all__ = [
    "METRICS",
    "BatchEvaluation",
    "CompiledProblem",
    "PathTable",
    "compile_problem",
    "decode",
    "encode",
    "evaluate_many",
    "memory_many",
    "transfer_mask",
]
