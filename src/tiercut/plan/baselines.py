"""Baselines: everything on the source device, or everything on one device.

These are the two reference points every partition paper compares with:
Neurosurgeon (Kang et al., ASPLOS'17) reports its speed-up over "cloud-only"
and its energy saving over "mobile-only"; DADS (Hu et al., INFOCOM'19)
compares with edge-only and cloud-only.

Guarantee: none (they are baselines). Complexity: O(|V|) (``all-on`` without
a device: one cost-model evaluation per candidate device).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiercut.plan.base import PlacementResult, Planner
from tiercut.problem import Problem

if TYPE_CHECKING:
    from tiercut.cost import Evaluation


class LocalPlanner(Planner):
    """Every node on the source device (the "mobile-only" / local baseline)."""

    name = "local"
    plans_throughput = True
    summary = "every layer on the source device (mobile-only baseline)"
    reference = "baseline of Neurosurgeon (Kang et al., ASPLOS'17) and DADS (Hu et al., INFOCOM'19)"
    guarantee = "none: a baseline"
    complexity = "O(|V|)"
    cheap_fallback = False

    def __init__(self) -> None:
        pass

    def check(self, problem: Problem) -> str | None:
        missing = [n for n, row in problem.compute_s.items() if problem.source not in row]
        if missing:
            return f"node {missing[0]!r} cannot run on the source {problem.source!r}"
        return None

    def _solve(self, problem: Problem) -> PlacementResult:
        return PlacementResult(problem.local_placement(), optimal=len(problem.devices) == 1)


class AllOnPlanner(Planner):
    """Every non-input node on one device (``device``; default: the best server the source can reach).

    Graph inputs stay on the source; the input goes to the device and the
    result comes back (the "cloud-only" / "edge-only" baseline). Without a
    ``device`` setting, every other device that can run every layer is a
    candidate; the one whose all-on placement is best for the problem's
    objective wins, by Deb's rule (a feasible placement before an infeasible
    one, then the objective; a device the source cannot reach, or whose
    results cannot come back, is not evaluable and never chosen). Ties go to
    the cloud tier, then edge, then end, then device order.
    """

    name = "all-on"
    plans_throughput = True
    summary = "every layer on one device (cloud-only / edge-only baseline); default: the best reachable server"
    reference = "baseline of Neurosurgeon (Kang et al., ASPLOS'17) and DADS (Hu et al., INFOCOM'19)"
    guarantee = "none: a baseline (the best single server by the objective when no device is set)"
    complexity = "O(|D| (|V| + |E|))"
    cheap_fallback = False
    #: tie-break order of tiers
    TIER_ORDER = ("cloud", "edge", "end")

    def __init__(self, device: str | None = None) -> None:
        self.device = device

    @staticmethod
    def placement_on(problem: Problem, device: str) -> dict[str, str]:
        """Every non-input node on ``device``, inputs on the source."""
        return {n.name: (problem.source if n.is_input else device) for n in problem.graph}

    def ranked(self, problem: Problem) -> list[tuple[str, Evaluation]]:
        """Every other device that can run every layer, with its all-on evaluation, best first."""
        from tiercut.cost import evaluate

        runs_all = [
            d.name
            for d in problem.devices
            if d.name != problem.source and all(d.name in row for row in problem.compute_s.values())
        ]
        tier_rank = {t: i for i, t in enumerate(self.TIER_ORDER)}
        scored = []
        for index, name in enumerate(runs_all):
            ev = evaluate(problem, self.placement_on(problem, name))
            tier = tier_rank.get(problem.device(name).tier, len(tier_rank))
            key = (0 if ev.feasible else (1 if ev.valid else 2), ev.objective_value if ev.feasible else len(ev.violations), tier,
                   index)
            scored.append((key, name, ev))
        scored.sort(key=lambda item: item[0])
        return [(name, ev) for _, name, ev in scored]

    def target(self, problem: Problem) -> str | None:
        """The device everything goes to: ``device``, else the best evaluable candidate of :meth:`ranked`
        (None when there is none)."""
        if self.device is not None:
            return self.device
        for name, ev in self.ranked(problem):
            if ev.valid:
                return name
        return None

    def check(self, problem: Problem) -> str | None:
        if self.device is not None:
            if self.device not in problem.device_names:
                return f"device {self.device!r} is not in the problem; devices are {', '.join(problem.device_names)}"
            missing = [n for n, row in problem.compute_s.items() if self.device not in row]
            if missing:
                return f"node {missing[0]!r} cannot run on {self.device!r}"
            return None
        if self.target(problem) is None:
            return (
                "no device besides the source can run every layer and exchange tensors with the source; "
                "set device=NAME to force one"
            )
        return None

    def _solve(self, problem: Problem) -> PlacementResult:
        target = self.target(problem)
        assert target is not None
        note = f"everything on {target}"
        if self.device is None:
            note += f" (the best of {len(self.ranked(problem))} candidate devices for {problem.objective.describe()})"
        return PlacementResult(self.placement_on(problem, target), note=note)
