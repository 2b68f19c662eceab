"""Exhaustive search: every placement of every node on every allowed device.

The ground truth the exact planners are tested against (no paper: the
definition of the problem, the survey's Eq. 3-5). Placements are scored in
chunks by the vectorised cost model, so a few million are fine.

Guarantee: optimal for every objective and every constraint (memory,
budgets, pinned nodes); if no placement is feasible, it returns the one with
the smallest constraint excess and says so. When the problem offers cut
compression (JALAD), every placement is tried with every per-tensor choice
of codec (raw included) by the reference evaluator
(:func:`tiercut.cost.evaluate`): the ground truth of the ILP's decision.
Complexity: O(prod_v |allowed(v)| * |V| * |D|), i.e. |D|^|V|.
"""

from __future__ import annotations

import math

import numpy as np

from tiercut.cost import compile_problem, decode, evaluate, evaluate_many
from tiercut.errors import TiercutError
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
    plans_throughput = True
    summary = "exhaustive search over every placement (tiny problems, tests)"
    reference = "the problem's definition (survey Eq. 3-5); ground truth for the exact planners"
    guarantee = "optimal for every objective and constraint"
    complexity = "O(|D|^|V| |V| |D|) (times prod_v (1 + codecs of v) with cut compression)"
    decides_compression = True

    def __init__(self, max_placements: int = 2_000_000, chunk: int = 20_000) -> None:
        self.max_placements = max_placements
        self.chunk = chunk

    def count(self, problem: Problem) -> int:
        """The number of placements (an exact integer, however large), times the codec choices with cut compression."""
        placements = math.prod(len(problem.allowed_devices(n.name)) for n in problem.graph)
        return placements * math.prod(len(c) for c in self._codec_choices(problem).values())

    @staticmethod
    def _codec_choices(problem: Problem) -> dict[str, list[str | None]]:
        """node -> [None (raw), codec...] for the tensors the problem lets compress."""
        cc = problem.cut_compression
        if not problem.compresses_cuts or cc is None:
            return {}
        return {
            node: [None, *(c.name for c in cc.codecs if c.name in row)] for node, row in cc.tensors.items() if row
        }

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
        if problem.compresses_cuts:
            return self._solve_compressed(problem)
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

    def _solve_compressed(self, problem: Problem) -> PlacementResult:
        """Every placement with every choice of codec per tensor, by the reference evaluator."""
        import itertools

        choices = self._codec_choices(problem)
        nodes = list(choices)
        allowed = [problem.allowed_devices(n.name) for n in problem.graph]
        names = [n.name for n in problem.graph]
        best: tuple[float, dict[str, str], dict[str, str]] | None = None
        least: tuple[int, dict[str, str], dict[str, str]] | None = None
        tried = 0
        for devices in itertools.product(*allowed):
            placement = dict(zip(names, devices, strict=True))
            seen: set[tuple[tuple[str, str], ...]] = set()
            for codecs in itertools.product(*(choices[n] for n in nodes)):
                tried += 1
                compression = {n: k for n, k in zip(nodes, codecs, strict=True) if k is not None}
                try:
                    ev = evaluate(problem, placement, compression=compression)
                except TiercutError:
                    continue  # a codec this transfer's devices cannot run
                key = tuple(sorted(ev.compression.items()))
                if key in seen:
                    continue
                seen.add(key)
                if ev.feasible and (best is None or ev.objective_value < best[0]):
                    best = (ev.objective_value, placement, dict(ev.compression))
                if ev.valid and (least is None or len(ev.violations) < least[0]):
                    least = (len(ev.violations), placement, dict(ev.compression))
        if best is not None:
            return PlacementResult(best[1], optimal=True, note=f"{tried:,} placements x codec choices tried",
                                   compression=best[2])
        if least is not None:
            return PlacementResult(least[1], note=f"no feasible choice among {tried:,}; this one breaks the fewest rules",
                                   compression=least[2])
        return PlacementResult(problem.local_placement(), note=f"no evaluable choice among {tried:,}")
