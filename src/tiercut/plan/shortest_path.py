"""Shortest path through a layered graph of (unit, device) states.

The execution-graph formulation of IONN (Jeong et al., "IONN:
Incremental Offloading of Neural Network Computations from Mobile Devices
to Edge Servers", SoCC'18), generalised to several devices as in PerDNN
(Jeong et al., 2021) and the multi-device MDPO-style planners the survey
lists: the DAG becomes a chain of units at its separators
(:mod:`tiercut.plan.structure`; an inception or residual block is one
unit), every unit runs whole on one device, and a placement is a path
``start -> (unit 1, d1) -> (unit 2, d2) -> ... -> end`` whose edge weights
are the unit's objective part (its nodes on ``d_k`` and the transfers into
and inside it, :class:`~tiercut.plan.structure.UnitEvaluator`) plus, at the
end, the return of the result to the source. Dijkstra (networkx) finds the
best path.

Guarantee: optimal for chains (every unit is one layer) for any objective
with pinned nodes; on other DAGs optimal among placements that keep each
block on one device (the IONN/PerDNN granularity). Memory limits and
budgets are checked afterwards, not optimised (use ``ilp``).
Complexity: O(U |D|^2) edges for U units, Dijkstra O(E log V).
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from tiercut.cost import compile_problem, decode, linear_form
from tiercut.plan.base import PlacementResult, Planner
from tiercut.plan.structure import UnitEvaluator, units
from tiercut.problem import Problem


class ShortestPathPlanner(Planner):
    """Best unit-atomic placement over any number of devices (IONN/PerDNN layered graph)."""

    name = "shortest-path"
    summary = "shortest path through (block, device) layers; each block whole on one device"
    reference = "IONN (Jeong et al., SoCC'18) execution graph; PerDNN (Jeong et al., 2021) multi-server"
    guarantee = "optimal on chains (any objective, pins); optimal among block-atomic placements otherwise"
    complexity = "O(U |D|^2) edges, Dijkstra"

    def __init__(self) -> None:
        pass

    def _solve(self, problem: Problem) -> PlacementResult:
        comp = compile_problem(problem)
        form = linear_form(comp, problem.objective)
        D = comp.n_devices
        chain = units(comp)
        graph = nx.DiGraph()
        for k, unit in enumerate(chain):
            evaluator = UnitEvaluator(comp, form, unit)
            entries = list(range(D)) if unit.entry is not None else [None]
            rows, pairs = [], []
            for e in entries:
                for d in range(D):
                    boundary = ([e] if e is not None else []) + [comp.source] * len(unit.inputs)
                    rows.append(boundary + [d] * len(unit.nodes))
                    pairs.append((e, d))
            cost = evaluator.cost(np.array(rows, dtype=np.int64))
            for (e, d), c in zip(pairs, cost, strict=True):
                if not np.isfinite(c):
                    continue
                tail = "start" if e is None else (k - 1, e)
                graph.add_edge(tail, (k, d), weight=float(c))
        last = chain[-1].exit
        for d in range(D):
            back = float(form.transfer[last, d, comp.source]) if comp.is_output[last] else 0.0
            if (len(chain) - 1, d) in graph and np.isfinite(back):
                graph.add_edge((len(chain) - 1, d), "end", weight=back)
        if "end" not in graph or "start" not in graph:
            return PlacementResult(problem.local_placement(), note="no block-atomic placement exists")
        try:
            path = nx.dijkstra_path(graph, "start", "end", weight="weight")
        except nx.NetworkXNoPath:
            return PlacementResult(problem.local_placement(), note="no block-atomic placement exists")
        row = np.full(comp.n_nodes, comp.source, dtype=np.int64)
        for k, d in path[1:-1]:
            row[list(chain[k].nodes)] = d
        atomic = all(len(u.nodes) == 1 for u in chain)
        note = f"{len(chain)} units" + ("" if atomic else "; blocks kept whole (optimal among block-atomic placements)")
        return PlacementResult(decode(comp, row), optimal=atomic, note=note)
