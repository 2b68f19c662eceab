"""Exact two-device DAG partition by minimum s-t cut (DADS, made exact).

Hu et al., "Dynamic Adaptive DNN Surgery for Inference Acceleration on the
Edge", INFOCOM'19 (DADS) cut a DAG between the device and a server with a
max-flow/min-cut; its public code charges a transfer per edge. The
construction here (ALGORITHMS.md) is exact under docs/DESIGN.md's model, where a
tensor read by several nodes on the other side is sent once, and transfers
go both ways:

- a vertex per node ``v``; ``s -> v`` with the node's cost on the server
  (paid when ``v`` is on the server side), ``v -> t`` with its cost on the
  device; a node that cannot run on (or is pinned off) a side gets an
  infinite edge; graph inputs are pinned to the device;
- device -> server transfer of ``u`` paid once: auxiliary ``a_u``, ``u -> a_u``
  with the transfer's cost, ``a_u -> w`` infinite for every consumer ``w``;
- server -> device transfer of ``u`` paid once: auxiliary ``b_u``, ``b_u -> u``
  with the transfer's cost, ``w -> b_u`` infinite for every consumer ``w``;
- a graph output must reach the source: ``s -> b_o`` infinite, so ``b_o`` is
  always on the device side and the return is paid once when ``o`` is on the
  server -- also when ``o`` has device-side consumers (ALGORITHMS.md's
  ``s -> o += tau`` would pay that tensor twice).

The costs are the objective's linear form (:func:`tiercut.cost.linear_form`):
latency, source energy, total energy, cost, or a weighted sum are all
separable, so the minimum cut value is the optimum. Max-flow runs in
python-igraph (``Graph.st_mincut``). Float capacities can leave a rounding
crumb that yields a non-minimal partition with the right flow value
(ALGORITHMS.md), so the partition's objective is recomputed and, if it does
not equal the cut value, the cut is solved again with integer capacities.

Guarantee: optimal over all placements on the source and the server for
the objective, with pinned nodes; memory limits and budgets are not part of
the cut: the result is checked and, if it breaks one, returned marked
infeasible (use ``ilp``). With more than two devices, ``server=None`` tries
each other device and keeps the best: optimal only among two-device
placements, so the plan is marked optimal only when the problem has exactly
two devices.
Complexity: one max-flow on |V| + 2|V| vertices and O(|V| + |E|) edges
(push-relabel in igraph, O(V^3) worst case, near-linear on these graphs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tiercut.cost import CompiledProblem, LinearForm, compile_problem, decode, evaluate, linear_form, linear_value
from tiercut.plan.base import PlacementResult, Planner, check_server
from tiercut.problem import Problem

#: relative tolerance between the cut value and the partition's recomputed objective
VERIFY_RTOL = 1e-9


@dataclass(frozen=True)
class FlowNetwork:
    """The s-t flow network of the exact two-device cut (vertex 0 = s, 1 = t, 2 + i = node i).

    Attributes:
        n_vertices: vertices (s, t, nodes, auxiliary a_u and b_u).
        tails, heads, capacities: the edges (zero-capacity edges dropped).
        infinite: the capacity standing for infinity (larger than any finite cut).
        scale: capacities are the objective's terms times ``scale``.
        node_vertices: vertex of each graph node.
    """

    n_vertices: int
    tails: np.ndarray
    heads: np.ndarray
    capacities: np.ndarray
    infinite: float
    scale: float
    node_vertices: np.ndarray


def flow_network(
    comp: CompiledProblem, form: LinearForm, device: int, server: int, *, integer: bool = False
) -> FlowNetwork | None:
    """The exact construction between ``device`` (source side) and ``server``; None if a node runs on neither."""
    n = comp.n_nodes
    allowed = comp.allowed
    if not (allowed[:, device] | allowed[:, server]).all():
        return None
    cost_dev = np.where(allowed[:, device], form.node[:, device], np.inf)
    cost_srv = np.where(allowed[:, server], form.node[:, server], np.inf)
    up = form.transfer[:, device, server]  # device -> server
    down = form.transfer[:, server, device]

    has_consumer = np.zeros(n, dtype=bool)
    has_consumer[comp.edge_src] = True
    senders_a = np.flatnonzero(has_consumer)
    senders_b = np.flatnonzero(has_consumer | comp.is_output)
    a_index = np.full(n, -1, dtype=np.int64)
    a_index[senders_a] = 2 + n + np.arange(len(senders_a))
    b_index = np.full(n, -1, dtype=np.int64)
    b_index[senders_b] = 2 + n + len(senders_a) + np.arange(len(senders_b))
    n_vertices = 2 + n + len(senders_a) + len(senders_b)
    node_v = 2 + np.arange(n)

    finite_parts = [cost_dev, cost_srv, up[senders_a], down[senders_b]]
    total = sum(float(np.where(np.isfinite(p), p, 0.0).sum()) for p in finite_parts)
    scale = (2.0**50) / max(4.0 * total, 1e-300) if integer else 1.0
    big = 2.0 * total * scale + 1.0

    def cap(values: np.ndarray) -> np.ndarray:
        values = np.where(np.isfinite(values), values * scale, big)
        return np.round(values) if integer else values

    parts = [
        (np.zeros(n, dtype=np.int64), node_v, cap(cost_srv)),  # s -> v: paid when v is on the server
        (node_v, np.ones(n, dtype=np.int64), cap(cost_dev)),  # v -> t: paid when v is on the device
        (node_v[senders_a], a_index[senders_a], cap(up[senders_a])),
        (a_index[comp.edge_src], node_v[comp.edge_dst], np.full(len(comp.edge_src), big)),
        (b_index[senders_b], node_v[senders_b], cap(down[senders_b])),
        (node_v[comp.edge_dst], b_index[comp.edge_src], np.full(len(comp.edge_src), big)),
    ]
    outputs = np.flatnonzero(comp.is_output)
    parts.append((np.zeros(len(outputs), dtype=np.int64), b_index[outputs], np.full(len(outputs), big)))
    tails = np.concatenate([e[0] for e in parts])
    heads = np.concatenate([e[1] for e in parts])
    caps = np.concatenate([e[2] for e in parts])
    keep = caps > 0
    return FlowNetwork(int(n_vertices), tails[keep], heads[keep], caps[keep], big, scale, node_v)


def mincut_two_devices(
    comp: CompiledProblem, form: LinearForm, device: int, server: int, *, integer: bool = False
) -> tuple[np.ndarray, float] | None:
    """Minimum cut between devices ``device`` (the source side) and ``server`` with python-igraph.

    Returns (placement row, cut value), or None when no placement on these
    two devices exists (a node runs on neither, or needs a missing link).
    """
    import igraph

    network = flow_network(comp, form, device, server, integer=integer)
    if network is None:
        return None
    edges = list(zip(network.tails.tolist(), network.heads.tolist(), strict=True))  # 3x faster than ndarray.tolist()
    graph = igraph.Graph(n=network.n_vertices, edges=edges, directed=True)
    cut = graph.st_mincut(0, 1, capacity=network.capacities.tolist())
    if cut.value >= network.infinite:
        return None
    membership = np.asarray(cut.membership)
    device_side = membership[network.node_vertices] == membership[0]
    row = np.where(device_side, device, server).astype(np.int64)
    return row, float(cut.value) / network.scale


class MinCutPlanner(Planner):
    """Exact device/server partition of a DAG by one minimum s-t cut (DADS, made exact)."""

    name = "mincut"
    summary = "exact two-device DAG partition by minimum s-t cut (tensor sent once per device)"
    reference = "Hu et al., DADS, INFOCOM'19; exact construction in ALGORITHMS.md"
    guarantee = (
        "optimal over two-device placements for any objective with pinned nodes; memory and budgets checked, not optimised"
    )
    complexity = "one max-flow on O(|V|) vertices and O(|V| + |E|) edges"

    def __init__(self, server: str | None = None) -> None:
        self.server = server

    def servers(self, problem: Problem) -> list[str]:
        if self.server is not None:
            return [self.server]
        return [d for d in problem.device_names if d != problem.source]

    def scope(self, problem: Problem) -> list[str] | None:
        return None if self.server is None else [problem.source, self.server]

    def check(self, problem: Problem) -> str | None:
        if (reason := check_server(problem, self.server)) is not None:
            return reason
        if len(problem.devices) < 2:
            return "it needs a second device besides the source"
        return None

    def _solve(self, problem: Problem) -> PlacementResult:
        comp = compile_problem(problem)
        form = linear_form(comp, problem.objective)
        src = comp.source
        best: tuple[tuple[int, float], np.ndarray, str, str] | None = None
        notes = []
        for server in self.servers(problem):
            srv = problem.device_index(server)
            found = mincut_two_devices(comp, form, src, srv)
            if found is None:
                notes.append(f"no placement on {problem.source}+{server}")
                continue
            row, value = found
            objective = float(linear_value(comp, form, row)[0])
            how = "float capacities"
            if not math.isclose(objective, value, rel_tol=VERIFY_RTOL, abs_tol=1e-15):
                exact = mincut_two_devices(comp, form, src, srv, integer=True)
                if exact is not None:
                    row_int = exact[0]
                    objective_int = float(linear_value(comp, form, row_int)[0])
                    if objective_int < objective:
                        row, objective = row_int, objective_int
                how = "integer capacities (float cut failed verification)"
            if len(self.servers(problem)) == 1:
                key = (0, objective)  # one candidate: make_plan evaluates it
            else:
                ev = evaluate(problem, decode(comp, row))
                key = (0 if ev.feasible else 1, ev.objective_value if ev.feasible else len(ev.violations))
            if best is None or key < best[0]:
                best = (key, row, server, how)
        if best is None:
            return PlacementResult(problem.local_placement(), note="; ".join(notes) or "no server")
        key, row, server, how = best
        note = f"min cut between {problem.source} and {server} ({how})"
        if not problem.constraints.is_unconstrained or any(d.memory_bytes is not None for d in problem.devices):
            note += "; memory limits and budgets are checked, not optimised (ilp optimises them)"
        exact_scope = len(problem.devices) == 2
        # optimal for the constrained problem too when the unconstrained optimum satisfies the
        # constraints; make_plan reports it only if the placement is feasible
        return PlacementResult(decode(comp, row), optimal=exact_scope, note=note)
