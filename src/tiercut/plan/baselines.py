"""Baselines: everything on the source device, or everything on one device.

These are the two reference points every partition paper compares with:
Neurosurgeon (Kang et al., ASPLOS'17) reports its speed-up over "cloud-only"
and its energy saving over "mobile-only"; DADS (Hu et al., INFOCOM'19)
compares with edge-only and cloud-only.

Guarantee: none (they are baselines). Complexity: O(|V|).
"""

from __future__ import annotations

from tiercut.plan.base import PlacementResult, Planner
from tiercut.problem import Problem


class LocalPlanner(Planner):
    """Every node on the source device (the "mobile-only" / local baseline)."""

    name = "local"
    summary = "every layer on the source device (mobile-only baseline)"
    reference = "baseline of Neurosurgeon (Kang et al., ASPLOS'17) and DADS (Hu et al., INFOCOM'19)"
    guarantee = "none: a baseline"
    complexity = "O(|V|)"

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
    """Every non-input node on one device (``device``; default the fastest cloud, else edge, device).

    Graph inputs stay on the source; the input goes to ``device`` and the
    result comes back (the "cloud-only" / "edge-only" baseline).
    """

    name = "all-on"
    summary = "every layer on one device (cloud-only / edge-only baseline); setting: device"
    reference = "baseline of Neurosurgeon (Kang et al., ASPLOS'17) and DADS (Hu et al., INFOCOM'19)"
    guarantee = "none: a baseline"
    complexity = "O(|V|)"

    def __init__(self, device: str | None = None) -> None:
        self.device = device

    def target(self, problem: Problem) -> str:
        """The device everything goes to: ``device``, else the cloud device (then edge, then end)
        that runs the whole graph fastest."""
        if self.device is not None:
            return self.device
        for tier in ("cloud", "edge", "end"):
            candidates = [d.name for d in problem.devices if d.tier == tier and d.name != problem.source]
            totals = {
                name: sum(row[name] for row in problem.compute_s.values())
                for name in candidates
                if all(name in row for row in problem.compute_s.values())
            }
            if totals:
                return min(totals, key=lambda name: (totals[name], candidates.index(name)))
        return problem.source

    def check(self, problem: Problem) -> str | None:
        if self.device is not None and self.device not in problem.device_names:
            return f"device {self.device!r} is not in the problem; devices are {', '.join(problem.device_names)}"
        target = self.target(problem)
        missing = [n for n, row in problem.compute_s.items() if target not in row]
        if missing:
            return f"node {missing[0]!r} cannot run on {target!r}"
        return None

    def _solve(self, problem: Problem) -> PlacementResult:
        target = self.target(problem)
        placement = {n.name: (problem.source if n.is_input else target) for n in problem.graph}
        return PlacementResult(placement, note=f"everything on {target}")
