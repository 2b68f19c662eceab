"""MCDNN: choose the model variant and its placement under latency, energy and cost budgets and an accuracy floor.

Han, Shen, Philipose, Agarwal, Wolman and Krishnamurthy, "MCDNN: An
Approximation-Based Execution Framework for Deep Stream Processing Under
Resource Constraints", MobiSys 2016. MCDNN's scheduler holds, per model, a
catalogue of variants (smaller architectures and compressed versions,
"model catalogs") with their accuracy and resource cost, and for each request
picks the most accurate variant that fits the budgets (latency, energy on
the device, money in the cloud), deciding together where it runs (device or
cloud).

Here, for a :class:`~tiercut.problem.variants.VariantProblem`, every
variant at least ``accuracy_min`` accurate is planned by an exact planner of
this package (``ilp`` by default, or ``brute-force``) on its own problem
(its graph and compute times over the shared devices, objective and
budgets), over any DAG and any number of devices rather than MCDNN's
device-or-cloud choice; then

- ``goal: accuracy`` (MCDNN's): the most accurate variant with a feasible
  placement, ties broken by the smaller objective;
- ``goal: objective``: the smallest objective among the feasible variants.

Both are optimal over (variant, placement) pairs when the inner planner
proves each variant (tested against brute force over variants x placements).
A plain :class:`~tiercut.problem.Problem` is the single variant it holds, so
the planner also keeps the registry's contract there. The figures are the
cost model's on the chosen variant's problem.
"""

from __future__ import annotations

import math
import time

from tiercut.errors import TiercutError
from tiercut.plan.base import EXACT_INNER, PlacementResult, Planner
from tiercut.problem import Plan, Problem
from tiercut.problem.variants import VariantOutcome, VariantPlan, VariantProblem


class MCDNNPlanner(Planner):
    """Variant x placement: an exact planner per variant, then the best variant by the problem's goal (MCDNN)."""

    name = "mcdnn"
    summary = "model variant + placement: the most accurate variant within latency/energy/cost budgets (or best objective)"
    reference = "Han et al., MCDNN, MobiSys 2016 (variant catalogue, per-request choice under resource budgets)"
    guarantee = "optimal over (variant, placement) pairs when the inner exact planner (ilp, brute-force) proves each variant"
    complexity = "one inner exact solve per variant at least accuracy_min accurate"
    cheap_fallback = False  # the inner exact planner's answer is returned as it is

    def __init__(self, inner: str = "ilp") -> None:
        self.inner = inner

    def check(self, problem: Problem) -> str | None:
        if self.inner not in EXACT_INNER:
            return f"inner planner {self.inner!r} is not exact under budgets; use one of {', '.join(EXACT_INNER)}"
        return None

    def _solve(self, problem: Problem) -> PlacementResult:
        """A plain problem is its one variant: the inner exact planner's placement."""
        inner = self._inner_plan(problem)
        return PlacementResult(dict(inner.placement), optimal=inner.optimal, gap=inner.gap, note=inner.note,
                               bound=inner.bound, compression=dict(inner.cut_compression))

    def _inner_plan(self, problem: Problem) -> Plan:
        from tiercut.plan.registry import get_planner

        return get_planner(self.inner).solve(problem)

    def solve_variants(self, problem: VariantProblem) -> VariantPlan:
        """The variant and placement of ``problem`` (module docstring)."""
        if not isinstance(problem, VariantProblem):
            raise TiercutError(f"planner {self.name!r}: solve_variants takes a VariantProblem, not {type(problem).__name__}")
        reason = self.check(problem.variants[0].problem)
        if reason is not None:
            raise TiercutError(f"planner {self.name!r} cannot solve {problem.name or 'these variants'}: {reason}")
        start = time.perf_counter()
        outcomes = []
        for variant in problem.variants:
            planned = self._inner_plan(variant.problem) if variant.accuracy >= problem.accuracy_min - 1e-12 else None
            outcomes.append(VariantOutcome(variant.name, variant.accuracy, planned))
        eligible = [o for o in outcomes if o.eligible]
        optimal = all(o.plan.optimal for o in outcomes if o.plan is not None and o.plan.feasible)
        if eligible:
            if problem.goal == "accuracy":
                best = min(eligible, key=lambda o: (-o.accuracy, o.plan.objective_value))  # type: ignore[union-attr]
            else:
                best = min(eligible, key=lambda o: (o.plan.objective_value, -o.accuracy))  # type: ignore[union-attr]
            assert best.plan is not None
            plan = _named(best.plan, self.name, self.get_params())
            return VariantPlan(self.name, best.variant, best.accuracy, plan, tuple(outcomes), optimal,
                               time.perf_counter() - start)
        # nothing fits: the most accurate planned variant's plan shows what breaks (an infeasible plan)
        planned = [o for o in outcomes if o.plan is not None]
        if not planned:
            top = max(v.accuracy for v in problem.variants)
            raise TiercutError(
                f"no variant is at least {problem.accuracy_min:.3g} accurate (the best is {top:.3g}); lower --accuracy-min"
            )
        closest = max(planned, key=lambda o: o.accuracy)
        assert closest.plan is not None
        plan = _named(closest.plan, self.name, self.get_params())
        return VariantPlan(self.name, "", closest.accuracy, plan, tuple(outcomes), optimal, time.perf_counter() - start)


def _named(plan: Plan, algorithm: str, settings: dict) -> Plan:
    import dataclasses

    note = f"{plan.note}; " if plan.note else ""
    return dataclasses.replace(plan, algorithm=algorithm, settings=dict(settings), note=f"{note}inner {plan.algorithm}")


def brute_force_variants(problem: VariantProblem) -> tuple[str, float]:
    """The best (variant, objective) by enumerating every variant's every placement (brute force): the reference
    :class:`MCDNNPlanner` is tested against. ("", inf) when no variant fits."""
    from tiercut.plan.registry import get_planner

    best: tuple[float, float, str] | None = None
    for variant in problem.variants:
        if variant.accuracy < problem.accuracy_min - 1e-12:
            continue
        plan = get_planner("brute-force").solve(variant.problem)
        if not plan.feasible:
            continue
        value = plan.objective_value
        key = (-variant.accuracy, value) if problem.goal == "accuracy" else (value, -variant.accuracy)
        if best is None or key < best[:2]:
            best = (*key, variant.name)
    if best is None:
        return "", math.inf
    name = best[2]
    return name, get_planner("brute-force").solve(problem.variant(name).problem).objective_value


__all__ = ["MCDNNPlanner", "brute_force_variants"]
