"""Exhaustive search: every placement of every node on every allowed device.

The ground truth the exact planners are tested against (no paper: the
definition of the problem, the survey's Eq. 3-5). Placements are scored in
chunks by the vectorised cost model, so a few million are fine.

Guarantee: optimal for every objective and every constraint (memory,
budgets, pinned nodes); if no placement is feasible, it returns the one with
the smallest constraint excess and says so.
Complexity: O(prod_v |allowed(v)| * |V| * |D|), i.e. |D|^|V|.
"""

from __future__ import annotations

import math

import numpy as np

from tiercut.cost import compile_problem, decode, evaluate_many
from tiercut.plan.base import PlacementResult, Planner
from tiercut.problem import Problem


def count_text(count: int) -> str:
    """A count of any size in short form: ``1.23e+45`` below float range, ``about 10^1234`` beyond it."""
    if count.bit_length() <= 1000:  # well inside float range
        return f"{float(count):.3g}"
    return f"about 10^{int((count.bit_length() - 1) * math.log10(2))}"


class BruteForcePlanner(Planner):
    """Try every placement (``max_placements`` caps the search)."""

    name = "brute-force"
    summary = "exhaustive search over every placement (tiny problems, tests)"
    reference = "the problem's definition (survey Eq. 3-5); ground truth for the exact planners"
    guarantee = "optimal for every objective and constraint"
    complexity = "O(|D|^|V| |V| |D|)"

    def __init__(self, max_placements: int = 2_000_000, chunk: int = 20_000) -> None:
        self.max_placements = max_placements
        self.chunk = chunk

    def count(self, problem: Problem) -> int:
        """The number of placements (an exact integer, however large)."""
        return math.prod(len(problem.allowed_devices(n.name)) for n in problem.graph)

    def check(self, problem: Problem) -> str | None:
        if isinstance(self.max_placements, bool) or not isinstance(self.max_placements, int) or self.max_placements < 1:
            return f"setting max_placements={self.max_placements!r} must be an integer >= 1"
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            return f"setting chunk={self.chunk!r} must be an integer >= 1"
        total = self.count(problem)
        if total > self.max_placements:
            return (
                f"{count_text(total)} placements exceed max_placements={self.max_placements:,}; "
                "use an exact planner (mincut, dp, ilp) or raise max_placements"
            )
        return None

    def _solve(self, problem: Problem) -> PlacementResult:
        comp = compile_problem(problem)
        choices = [np.array([problem.device_index(d) for d in problem.allowed_devices(n.name)]) for n in problem.graph]
        radix = np.array([len(c) for c in choices], dtype=np.int64)
        strides = np.ones(len(radix), dtype=np.int64)
        for i in range(len(radix) - 2, -1, -1):
            strides[i] = strides[i + 1] * radix[i + 1]
        total = int(np.prod(radix)) if len(radix) else 1
        best_obj, best_row = math.inf, None
        least_pen, least_row = math.inf, None
        for start in range(0, total, self.chunk):
            k = np.arange(start, min(total, start + self.chunk), dtype=np.int64)
            digits = (k[:, None] // strides[None, :]) % radix[None, :]
            X = np.empty_like(digits)
            for j, c in enumerate(choices):
                X[:, j] = c[digits[:, j]]
            batch = evaluate_many(comp, X)
            objective = np.where(batch.feasible, batch.objective, np.inf)
            i = int(np.argmin(objective))
            if objective[i] < best_obj:
                best_obj, best_row = float(objective[i]), X[i].copy()
            j = int(np.argmin(batch.penalty))
            if batch.penalty[j] < least_pen:
                least_pen, least_row = float(batch.penalty[j]), X[j].copy()
        if best_row is not None:
            return PlacementResult(decode(comp, best_row), optimal=True, note=f"{total:,} placements tried")
        fallback = least_row if least_row is not None else np.array([problem.device_index(problem.source)] * len(radix))
        return PlacementResult(
            decode(comp, fallback), note=f"no feasible placement among {total:,}; this one breaks the constraints least"
        )
