"""Neurosurgeon: the best single split point between the device and one server.

Kang et al., "Neurosurgeon: Collaborative Intelligence Between the Cloud and
Mobile Edge", ASPLOS'17. For a chain of layers and every split point ``j``
(0: everything on the server, n: everything local), the latency is the
device time of layers ``1..j`` plus the transfer of the tensor at ``j`` plus
the server time of the rest plus the return of the result; energy likewise
with the powers; the best split wins.

On a DAG this planner tries every cut of the graph's topological order: the
first ``j`` non-input nodes on the source, the rest on the server; every
tensor crossing the cut is sent once (docs/DESIGN.md's model), so the figure of
each split is the cost model's. With more than two devices, ``server=None``
tries every other device as the server and keeps the best split overall.

Guarantee: the best placement among the single-cut placements of the
topological order (for each server tried), for any objective; not optimal
among all placements (a DAG or multi-cut placement can be better; see
``mincut`` and ``ilp``). Constraints are checked: a split breaking one is not
chosen; if every split breaks one, the least-breaking one is returned
marked infeasible.
Complexity: O(|V| (|V| + |E|) |D|) with the vectorised cost model.
"""

from __future__ import annotations

import numpy as np

from tiercut.cost import compile_problem, decode, evaluate_many
from tiercut.plan.base import PlacementResult, Planner, check_server
from tiercut.problem import Problem


class NeurosurgeonPlanner(Planner):
    """Best single split of the topological order between the source and a server."""

    name = "neurosurgeon"
    plans_throughput = True
    summary = "best single split point of the layer order between the device and one server"
    reference = "Kang et al., Neurosurgeon, ASPLOS'17"
    guarantee = "best among single-cut placements (per server); not globally optimal"
    complexity = "O(|V| (|V| + |E|) |D|)"

    def __init__(self, server: str | None = None) -> None:
        self.server = server

    def servers(self, problem: Problem) -> list[str]:
        if self.server is not None:
            return [self.server]
        return [
            d
            for d in problem.device_names
            if d != problem.source and problem.reachable(problem.source, d) and problem.reachable(d, problem.source)
        ]

    def scope(self, problem: Problem) -> list[str] | None:
        return None if self.server is None else [problem.source, self.server]

    def check(self, problem: Problem) -> str | None:
        if (reason := check_server(problem, self.server)) is not None:
            return reason
        if not self.servers(problem):
            return "no other device exchanges tensors with the source (no path of links)"
        return None

    def splits(self, problem: Problem, server: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Placements of splits ``start..stop-1``: split j puts the first j non-input nodes on the source."""
        src = problem.device_index(problem.source)
        srv = problem.device_index(server)
        is_input = np.array([n.is_input for n in problem.graph])
        order = np.cumsum(~is_input)  # 1-based rank among non-input nodes
        n_compute = int((~is_input).sum())
        j = np.arange(start, n_compute + 1 if stop is None else stop)[:, None]
        return np.where((order[None, :] <= j) | is_input[None, :], src, srv)

    def _solve(self, problem: Problem) -> PlacementResult:
        comp = compile_problem(problem)
        n_compute = sum(1 for n in problem.graph if not n.is_input)
        step = max(1, 2_000_000 // max(1, len(problem.graph)))
        best: tuple[tuple[int, float], int, str] | None = None
        for server in self.servers(problem):
            for start in range(0, n_compute + 1, step):
                stop = min(n_compute + 1, start + step)
                batch = evaluate_many(comp, self.splits(problem, server, start, stop))
                objective = np.where(batch.feasible, batch.objective, np.inf)
                i = int(np.argmin(objective))
                if np.isfinite(objective[i]):
                    key = (0, float(objective[i]))
                else:
                    i = int(np.argmin(batch.penalty))
                    key = (1, float(batch.penalty[i]))
                if best is None or key < best[0]:
                    best = (key, start + i, server)
        assert best is not None
        key, split, server = best
        row = self.splits(problem, server, split, split + 1)[0]
        note = f"split after {split} of {n_compute} layers, rest on {server}"
        if key[0] == 1:
            note += "; every split breaks a constraint"
        return PlacementResult(decode(comp, row), optimal=False, note=note)
