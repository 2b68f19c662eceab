"""DADS heavy-load partition (DSH): minimum cuts inside a search on the bottleneck.

Hu et al., "Dynamic Adaptive DNN Surgery for Inference Acceleration on the
Edge", INFOCOM'19: under heavy load DADS maximises throughput, i.e. minimises
the slowest of the pipeline's stages (edge compute, transmission, cloud
compute); the paper shows this NP-hard and gives an approximation of ratio 3
(its DSH). The public DADS code leaves this case unimplemented. Here it is over
docs/cost-model.md's stage model (:mod:`tiercut.cost.throughput`: every device
and every link direction is a stage):

- the *stage sum* ``S(x) = sum_s stage_s(x)`` is separable (the sum of the
  stages' linear forms, :func:`tiercut.cost.throughput.stage_forms`), so a
  minimum s-t cut (the exact two-device construction of
  :mod:`tiercut.plan.mincut`) minimises it;
- for a threshold ``e``, the *restricted* cut forbids every element (a node
  on a device, a tensor over a path) that alone would load some stage by more
  than ``e``; every placement whose bottleneck is ``<= e`` is still allowed;
- a binary search finds the least threshold at which a restricted cut exists
  (no placement has a smaller bottleneck), then the cuts at thresholds spaced
  geometrically from it up to no restriction are evaluated; the one with the
  least bottleneck wins (Deb's rule with the budgets, e.g. a latency bound),
  beside the latency-optimal cut (DADS' light-load DSL) and, since a
  per-element restriction cannot move layers off a device whose layers are
  each small but add up to the bottleneck, ``rounds`` cuts of weighted stage
  sums ``sum_s w_s stage_s`` with the weights raised multiplicatively on the
  bottleneck stages (the multiplicative-weights method for a min-max of
  linear terms).

Guarantee: never worse than the latency-optimal cut; the unrestricted cut ``x`` is among them, and ``B(x) <= S(x) <=
S(x*) <= k B(x*)`` for the optimum ``x*``, with ``k`` the number of stages two
devices load (their two compute stages and the link directions of the paths
between them; 3 in DADS' model, 4 with the downlink here): a ``k``-approximation,
as DADS'; never marked optimal (use ``ilp``, or ``throughput-dp`` on chains).
With more than two devices, each other device is tried as the server.
Complexity: O(log(|V| |D|) + probes + rounds) max-flows per server.
"""

from __future__ import annotations

import math
from functools import reduce

import numpy as np

from tiercut.cost import LinearForm, compile_problem, decode, evaluate_many, linear_form, linear_value
from tiercut.cost.throughput import stage_forms
from tiercut.plan.base import PlacementResult, Planner, check_server
from tiercut.plan.mincut import mincut_two_devices
from tiercut.problem import Problem


def restricted(form: LinearForm, worst_node: np.ndarray, worst_transfer: np.ndarray, threshold: float) -> LinearForm:
    """``form`` with every element whose own stage load exceeds ``threshold`` forbidden (inf)."""
    return LinearForm(
        np.where(worst_node > threshold, np.inf, form.node),
        np.where(worst_transfer > threshold, np.inf, form.transfer),
    )


class ThroughputMinCutPlanner(Planner):
    """DADS' heavy-load partition: restricted minimum cuts searched on the bottleneck (a k-approximation)."""

    name = "throughput-mincut"
    summary = "DADS heavy-load (DSH): min cuts of the stage sum inside a search on the bottleneck, two devices"
    reference = "Hu et al., DADS, INFOCOM'19 (DSH, heavy load); stage model in docs/cost-model.md"
    guarantee = (
        "bottleneck within a factor k (stages two devices load, 4 with the downlink) of the optimum over two-device "
        "placements, never worse than the latency-optimal cut; budgets checked, not optimised"
    )
    complexity = "O(log(|V| |D|) + probes + rounds) max-flows on O(|V|) vertices per server"
    plans_throughput = True

    def __init__(self, server: str | None = None, probes: int = 8, rounds: int = 12) -> None:
        self.server = server
        self.probes = probes
        self.rounds = rounds

    def _weighted_cuts(self, comp, forms: list[LinearForm], src: int, srv: int) -> list[np.ndarray]:
        """Cuts of weighted stage sums ``sum_s w_s stage_s`` (separable, so one min cut each), the weights raised
        multiplicatively on the stages that are the bottleneck (the multiplicative-weights method for a min-max
        of linear terms): what moves layers off a stage the threshold restriction cannot, e.g. a device whose
        layers are each small but sum to the bottleneck."""
        weights = np.ones(len(forms))
        out: list[np.ndarray] = []
        for _ in range(self.rounds):
            weighted = reduce(lambda a, b: a + b, [f.scaled(float(w)) for f, w in zip(forms, weights, strict=True)])
            found = mincut_two_devices(comp, weighted, src, srv)
            if found is None:
                break
            row = found[0]
            out.append(row)
            loads = np.array([float(linear_value(comp, f, row)[0]) for f in forms])
            peak = float(loads.max())
            if peak <= 0:
                break
            weights = weights * np.exp(loads / peak)
            weights = weights / weights.sum() * len(forms)
        return out

    def servers(self, problem: Problem) -> list[str]:
        if self.server is not None:
            return [self.server]
        return [d for d in problem.device_names if d != problem.source]

    def scope(self, problem: Problem) -> list[str] | None:
        return None if self.server is None else [problem.source, self.server]

    def check(self, problem: Problem) -> str | None:
        if not problem.objective.is_throughput:
            return "it minimises the bottleneck stage: give the problem the throughput objective (or use mincut)"
        if (reason := check_server(problem, self.server)) is not None:
            return reason
        if len(problem.devices) < 2:
            return "it needs a second device besides the source"
        if not (isinstance(self.probes, int) and self.probes >= 1):
            return f"setting probes={self.probes!r} must be an integer >= 1"
        if not (isinstance(self.rounds, int) and self.rounds >= 0):
            return f"setting rounds={self.rounds!r} must be an integer >= 0"
        return None

    def _solve(self, problem: Problem) -> PlacementResult:
        comp = compile_problem(problem)
        forms = [f for _, f in stage_forms(comp)]
        total = reduce(lambda a, b: a + b, forms)
        latency = linear_form(comp, "latency")
        with np.errstate(invalid="ignore"):
            worst_node = np.max(np.stack([np.where(np.isfinite(f.node), f.node, 0.0) for f in forms]), axis=0)
            worst_transfer = np.max(np.stack([np.where(np.isfinite(f.transfer), f.transfer, 0.0) for f in forms]), axis=0)
        src = comp.source
        rows: list[np.ndarray] = []
        probed = 0
        for server in self.servers(problem):
            srv = problem.device_index(server)
            pair = [src, srv]
            levels = np.unique(np.concatenate([
                worst_node[:, pair][comp.allowed[:, pair]].ravel(),
                worst_transfer[:, src, srv].ravel(), worst_transfer[:, srv, src].ravel(),
            ]))

            def cut(threshold: float, srv: int = srv) -> np.ndarray | None:
                found = mincut_two_devices(comp, restricted(total, worst_node, worst_transfer, threshold), src, srv)
                return None if found is None else found[0]

            unrestricted = cut(math.inf)
            probed += 1
            if unrestricted is None:
                continue
            rows.append(unrestricted)
            light = mincut_two_devices(comp, latency, src, srv)  # DADS' light-load answer (DSL) is a candidate too
            probed += 1
            if light is not None:
                rows.append(light[0])
            lo, hi = 0, len(levels) - 1  # least level with a restricted cut: binary search (existence is monotone)
            while lo < hi:
                mid = (lo + hi) // 2
                found = cut(float(levels[mid]))
                probed += 1
                if found is None:
                    lo = mid + 1
                else:
                    hi = mid
                    rows.append(found)
            start = max(float(levels[lo]), 1e-300)
            top = max(float(levels[-1]), start)
            for threshold in np.geomspace(start, top, self.probes):
                found = cut(float(threshold))
                probed += 1
                if found is not None:
                    rows.append(found)
            rows += self._weighted_cuts(comp, forms, src, srv)
            probed += self.rounds
        if not rows:
            return PlacementResult(problem.local_placement(), note="no two-device placement exists")
        rows = [r for r in rows if r is not None]
        X = np.stack(rows)
        batch = evaluate_many(comp, X)
        keys = [(0 if batch.feasible[i] else 1, batch.objective[i] if batch.feasible[i] else batch.penalty[i])
                for i in range(len(X))]
        best = min(range(len(X)), key=lambda i: keys[i])
        note = f"{probed} min cuts (restricted and weighted); best bottleneck {float(batch.objective[best]):.6g} s"
        if not problem.constraints.is_unconstrained:
            note += "; budgets are checked, not optimised (ilp optimises them)"
        return PlacementResult(decode(comp, X[best]), optimal=False, note=note)


__all__ = ["ThroughputMinCutPlanner", "restricted"]
