"""DDNN: a distributed DNN over end device, edge and cloud, each tier with its own exit.

Teerapittayanon, McDanel, Kung, "Distributed Deep Neural Networks over the
Cloud, the Edge and End Devices", IEEE ICDCS 2017. A DDNN maps sections of
one jointly trained network onto the hierarchy: the first layers and a
*local exit* on the end device, the next layers and an *edge exit* on an
edge server, the rest and the final exit in the cloud. Each tier classifies
and answers at once when it is confident (normalised entropy below a
threshold, its Sec. III-D); otherwise it sends its features up one tier.

Over an :class:`~tiercut.exits.cost.ExitProblem` this planner enumerates
DDNN's mappings: the local exit (any side exit), the edge exit (any later
side exit, or none), the edge server (any ``edge``-tier device) and the
cloud server (any ``cloud``-tier device, required). Each mapping is the
placement "layers the local exit needs and its branch on the source, then
up to the edge exit and its branch on the edge, the rest in the cloud", and
it is scored by the expected-cost layer (:mod:`tiercut.exits.cost`: exit
rates from the confidence rule, an exited query sends nothing further). The
best feasible mapping by the problem's objective wins (latency SLO on the
expected latency, accuracy floor on the routed accuracy); ties go to higher
accuracy. Exact over DDNN's mappings, not over every placement.
"""

from __future__ import annotations

import time
from typing import Any

from tiercut.errors import TiercutError
from tiercut.plan.base import PlacementResult, Planner
from tiercut.problem import Problem


class DDNNPlanner(Planner):
    """Local exit on the end device, edge exit on an edge server, the final exit in the cloud (DDNN)."""

    name = "ddnn"
    summary = "three tiers, each with its exit: local exit on the end device, edge exit, cloud final"
    reference = "Teerapittayanon, McDanel, Kung, Distributed Deep Neural Networks, IEEE ICDCS 2017"
    guarantee = "optimal (expected objective) among DDNN's tier-aligned mappings of exits to end, edge and cloud"
    complexity = "O(K^2 |edge| |cloud|) expected-cost evaluations for K side exits"

    def __init__(self, local_exit: str | None = None, edge_exit: str | None = None) -> None:
        self.local_exit = local_exit
        self.edge_exit = edge_exit

    def check(self, problem: Problem) -> str | None:
        from tiercut.exits.cost import ExitProblem

        plain = problem.problem if isinstance(problem, ExitProblem) else problem
        if not any(d.tier == "cloud" for d in plain.devices):
            return "it needs a cloud-tier device for the final exit"
        if not isinstance(problem, ExitProblem):
            if not self._clouds_for_all(problem):
                return "no cloud device can run every layer (DDNN's mapping of a model without exits)"
            return None
        if len(problem.exits) < 2:
            return "it needs at least one side exit (the local exit)"
        for which, name in (("local", self.local_exit), ("edge", self.edge_exit)):
            if name is not None and name not in [e.name for e in problem.exits[:-1]]:
                return f"{which} exit {name!r} is not a side exit; side exits are {', '.join(e.name for e in problem.exits[:-1])}"
        return None

    def _solve(self, problem: Problem) -> PlacementResult:
        """A model without branches has only the cloud's final exit: the input goes up, the cloud runs it all
        (DDNN's cloud-only baseline; the first cloud device that can run every layer)."""
        cloud = self._clouds_for_all(problem)[0]
        return PlacementResult({n.name: problem.source if n.is_input else cloud for n in problem.graph},
                               note=f"no exit branches: DDNN's cloud-only mapping on {cloud}")

    @staticmethod
    def _clouds_for_all(problem: Problem) -> list[str]:
        return [d.name for d in problem.devices if d.tier == "cloud"
                and all(d.name in problem.allowed_devices(n.name) for n in problem.graph if not n.is_input)]

    def solve(self, problem: Any) -> Any:
        """An :class:`~tiercut.exits.cost.ExitPlan` for an ExitProblem; a plain problem (no branches) gets a
        :class:`~tiercut.problem.Plan` of its cloud-only mapping."""
        from tiercut.exits.cost import ExitProblem

        if not isinstance(problem, ExitProblem):
            return super().solve(problem)
        reason = self.check(problem)
        if reason is not None:
            raise TiercutError(f"planner {self.name!r} cannot solve this problem: {reason}")
        return self._solve_exits(problem)

    def _mappings(self, ep: Any) -> list[tuple[list[str], dict[str, str]]]:
        from tiercut.exits.cost import deployed_nodes

        p = ep.problem
        side = [e.name for e in ep.exits[:-1]]
        edges = [d.name for d in p.devices if d.tier == "edge"]
        clouds = [d.name for d in p.devices if d.tier == "cloud"]
        locals_ = [self.local_exit] if self.local_exit else side
        out = []
        for i, local in enumerate(side):
            if local not in locals_:
                continue
            later = side[i + 1:]
            edge_choices: list[str | None] = [self.edge_exit] if self.edge_exit else [*later, None]
            for edge_exit in edge_choices:
                if edge_exit is not None and (edge_exit not in later or not edges):
                    continue
                active = [local, *([edge_exit] if edge_exit else []), ep.exits[-1].name]
                tier1 = deployed_nodes(ep, [local])
                tier2 = deployed_nodes(ep, [edge_exit]) - tier1 if edge_exit else set()
                for edge in edges if edge_exit else [None]:
                    for cloud in clouds:
                        placement = {}
                        for n in p.graph:
                            placement[n.name] = p.source if n.name in tier1 or n.is_input else (
                                edge if n.name in tier2 else cloud)
                        out.append((active, placement))
        return out

    def _solve_exits(self, ep: Any) -> Any:
        from tiercut.exits.cost import evaluate_expected, make_exit_plan

        start = time.perf_counter()
        rows = []
        best = None
        fallback = None
        for active, placement in self._mappings(ep):
            ev = evaluate_expected(ep, placement, active)
            where = "/".join(dict.fromkeys(placement[ep.exit(a).output] for a in active))
            rows.append({"active": "+".join(active), "devices": where, "accuracy": ev.accuracy,
                         "latency_s": ev.latency_s, "objective_value": ev.objective_value, "feasible": ev.feasible})
            if not ev.valid:
                continue
            key = (ev.objective_value, -ev.accuracy)
            if ev.feasible and (best is None or key < best[0]):
                best = (key, active, placement)
            miss = (len(ev.violations), ev.latency_s, -ev.accuracy)
            if fallback is None or miss < fallback[0]:
                fallback = (miss, active, placement)
        if best is None and fallback is None:
            raise TiercutError(f"planner {self.name!r}: no DDNN mapping can run (a layer cannot run on its tier's device)")
        chosen = best or fallback
        note = (f"{'+'.join(chosen[1])} among {len(rows)} DDNN mappings" if best is not None
                else f"no DDNN mapping meets every constraint among {len(rows)}; the closest miss is returned")
        return make_exit_plan(ep, self.name, chosen[2], chosen[1], optimal=False, solve_s=time.perf_counter() - start,
                              settings=self.get_params(), note=note, candidates=rows)


__all__ = ["DDNNPlanner"]
