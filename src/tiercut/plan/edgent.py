"""Edgent: the exit point and the partition together (DNN right-sizing + DNN partitioning).

Li, Zeng, Zhou, Chen, "Edge AI: On-Demand Accelerating Deep Neural Network
Inference via Edge Computing", IEEE Trans. Wireless Communications 19(1),
2020 (early access 2019; first as "Edge Intelligence: On-Demand Deep
Learning Model Co-Inference with Device-Edge Synergy", ACM SIGCOMM MECOMM
2018). Edgent trains a branchy DNN (BranchyNet), then for a latency
requirement picks the exit point (the model is "right-sized": every query
leaves there) and the partition point that maximise accuracy while meeting
the requirement, by enumerating exit points and, for each, partition points
(its Algorithm 1).

Here the same enumeration runs over the exits of an
:class:`~tiercut.exits.cost.ExitProblem`, and for each exit an exact
planner of this package (``ilp`` by default, or ``brute-force``) solves the
right-sized problem (:func:`~tiercut.exits.cost.right_sized_problem`) over
any DAG and any number of devices, with the problem's objective, memory,
pins and budgets, and the latency SLO as a latency budget. Two modes:

- latency SLO (``--latency-slo``): the most accurate exit whose right-sized
  problem has a feasible placement; ties go to the smaller objective;
- accuracy floor (``--accuracy-min``): the exit with the smallest objective
  among those at least that accurate (the reverse question).

Both exact when the inner planner proves its answers: the best over (exit,
placement) pairs. When no exit meets the requirement the plan says
``feasible: false`` and names the closest miss.
"""

from __future__ import annotations

import time
from typing import Any

from tiercut.errors import TiercutError
from tiercut.plan.base import EXACT_INNER, PlacementResult, Planner
from tiercut.problem import Constraints, Objective, Plan, Problem


class EdgentPlanner(Planner):
    """Exit point x placement by enumeration over exits and an exact planner per exit (Edgent)."""

    name = "edgent"
    summary = "exit point + partition: max accuracy under a latency SLO, or min latency under an accuracy floor"
    reference = "Li, Zeng, Zhou, Chen, Edgent, IEEE TWC 2019 (ACM MECOMM 2018), Algorithm 1"
    guarantee = "optimal over (exit point, placement) pairs when the inner exact planner (ilp, brute-force) proves each exit"
    complexity = "one inner exact solve per exit point"

    def __init__(self, inner: str = "ilp") -> None:
        self.inner = inner

    def check(self, problem: Problem) -> str | None:

        if self.inner not in EXACT_INNER:
            return f"inner planner {self.inner!r} is not exact under budgets; use one of {', '.join(EXACT_INNER)}"
        return None

    def _solve(self, problem: Problem) -> PlacementResult:
        """A model without branches has one exit point, the final one: Edgent is then its partitioning step."""
        from tiercut.plan.registry import get_planner

        plan = get_planner(self.inner).solve(problem)
        return PlacementResult(plan.placement, optimal=plan.optimal, gap=plan.gap,
                               note="no exit branches: the final exit, partitioned by " + self.inner, bound=plan.bound)

    def solve(self, problem: Any) -> Any:
        """An :class:`~tiercut.exits.cost.ExitPlan` for an ExitProblem; a plain problem (no branches) gets a
        :class:`~tiercut.problem.Plan` of its final exit."""
        from tiercut.exits.cost import ExitProblem

        if not isinstance(problem, ExitProblem):
            return super().solve(problem)
        reason = self.check(problem)
        if reason is not None:
            raise TiercutError(f"planner {self.name!r} cannot solve this problem: {reason}")
        return self._solve_exits(problem)

    def _solve_exits(self, ep: Any) -> Any:
        from tiercut.exits.cost import evaluate_expected, make_exit_plan, right_sized_problem
        from tiercut.plan.registry import get_planner

        start = time.perf_counter()
        inner = get_planner(self.inner)
        build = right_sized_problem(ep)
        rows: list[dict[str, Any]] = []
        best: tuple[Any, ...] | None = None
        proven = True
        for e in ep.exits:
            sub = build(e.name)
            reason = inner.check(sub)
            if reason is not None:
                raise TiercutError(f"planner {self.name!r}: inner planner {self.inner!r} cannot solve exit {e.name!r}: {reason}")
            plan: Plan = inner.solve(sub)
            ev = evaluate_expected(ep, plan.placement, [e.name])
            rows.append({"exit": e.name, "accuracy": ev.accuracy, "latency_s": ev.latency_s,
                         "objective_value": ev.objective_value, "feasible": ev.feasible, "inner_optimal": plan.optimal})
            if ev.feasible:
                proven &= plan.optimal
            elif ev.valid:
                # infeasible: proven only if the exact planner says so (no feasible placement exists)
                proven &= plan.algorithm in EXACT_INNER
            if ev.feasible:
                key = ((ev.objective_value, -ev.accuracy) if ep.accuracy_min is not None
                       else (-ev.accuracy, ev.objective_value))
                if best is None or key < best[0]:
                    best = (key, e.name, plan.placement)
        if best is not None:
            _, chosen, placement = best
            note = f"exit {chosen} chosen among {len(rows)} exit points"
            optimal = proven
        else:
            chosen, placement, note = self._closest_miss(ep, rows, build, inner)
            optimal = False
        return make_exit_plan(ep, self.name, placement, [chosen], optimal=optimal, solve_s=time.perf_counter() - start,
                              settings=self.get_params(), note=note, candidates=rows)

    def _closest_miss(self, ep: Any, rows: list[dict[str, Any]], build: Any, inner: Any) -> tuple[str, Any, str]:
        """No exit meets the requirement: the fastest exit (SLO missed) or the most accurate (floor missed)."""
        if ep.accuracy_min is not None and all(r["accuracy"] < ep.accuracy_min for r in rows):
            row = max(rows, key=lambda r: (r["accuracy"], -r["latency_s"]))
            why = (f"no exit reaches accuracy {ep.accuracy_min:.4f}; the most accurate, {row['exit']}, has "
                   f"{row['accuracy']:.4f}")
        else:
            row = min(rows, key=lambda r: (r["latency_s"], -r["accuracy"]))
            slo = "" if ep.latency_slo_s is None else f" the latency SLO {ep.latency_slo_s * 1e3:.4g} ms and"
            why = (f"no exit point meets{slo} every constraint; the fastest, {row['exit']}, takes "
                   f"{row['latency_s'] * 1e3:.4g} ms")
        sub = build(row["exit"])
        relaxed = sub.with_constraints(Constraints(memory=sub.constraints.memory, pinned=sub.constraints.pinned))
        plan = inner.solve(relaxed.with_objective(Objective("latency")))
        return row["exit"], plan.placement, why


__all__ = ["EdgentPlanner"]
