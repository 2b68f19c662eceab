"""Spatial partition: tile a fused conv/pool stack over several devices, jointly with the layer placement.

DeepThings (Zhao, Mirzazad Barijough and Gerstlauer, IEEE TCAD 37(11),
2018) splits the early convolutional layers into a grid of fused tiles
computed independently on several edge devices; CoEdge (Zeng, Chen, Zhou,
Yang and Zhang, IEEE/ACM Transactions on Networking 29(2):595-608, 2021)
sizes each device's part of the input in proportion to its computing speed
and link. This planner does both inside tiercut's cost model
(:mod:`tiercut.cost.tiled`):

1. the best layer-only plan, by the ``base`` planner (ILP by default);
2. for every sub-stack between two cut points of each fused stack of the
   problem (at most ``max_cuts`` cut points per stack, evenly chosen), every
   home device that can run it, and every number ``k <= max_tiles`` of tile
   devices (the ``k`` with the fewest seconds per output row, counting
   their compute and their scatter/gather link): strips proportional to
   ``1 / seconds per row`` (CoEdge's proportional split), the rest of the
   graph as in the layer-only plan;
3. the ``candidates`` best of those: the strip sizes refined by moving one
   row at a time between strips while the stage gets shorter, and the
   layers before and after the stack re-placed by the ``base`` planner with
   the stack fixed on its home (the stage's own time is added to the
   objective as a constant, so for latency, energy and cost this is the
   best placement of the rest for that stage);
4. the best plan of all by the cost model, the layer-only one included, so
   tiling is chosen only when it pays.

On a problem without spatial stacks it is the ``base`` planner.

What it guarantees (no optimality claim: the issue asks the planners to
choose the stack, the devices and the shares, not to prove the choice
optimal; tests/test_spatial_plan.py checks each point on hypothesis-drawn
device speeds and links):

- **never worse than layers only**: its plan is at least as good as the
  ``base`` planner's layer-only plan by Deb's rule (feasible first, then the
  objective), because that plan is one of the candidates compared last;
- **locally optimal shares**: in a tiled stage it returns, moving one output
  row (or column) from any strip to any other does not shorten the stage
  (the refinement of step 3 stops only there); for two devices the stage
  time is then the minimum over every integer split only in the cases the
  tests enumerate, not in general;
- **exhaustive within its limits**: every sub-stack between the (at most
  ``max_cuts``) cut points, every home that can run it and every ``k <=
  max_tiles`` is scored; the ``k`` devices are the ``k`` of fewest seconds
  per row (a heuristic: another set of ``k`` may be better).

Budget constraints are checked on the final plan (the re-placement of the
rest ignores them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from tiercut.cost.tiled import TiledEvaluation, evaluate_tiled, schedule_stage
from tiercut.errors import TiercutError
from tiercut.plan.base import PlacementResult, Planner, make_plan
from tiercut.problem import Plan, Problem
from tiercut.spatial.geometry import Interval, Region, split_sizes
from tiercut.spatial.problem import SpatialProblem, Tile, TiledPlan, TiledStage
from tiercut.spatial.stack import StackGeometry


def _strips(geometry: StackGeometry, sizes: list[int]) -> list[Region]:
    """Strips along the longer side of the output map, ``sizes`` rows (or columns) each."""
    height, width = geometry.output_hw
    out, at = [], 0
    for size in sizes:
        if height >= width:
            out.append(Region(Interval(at, at + size), Interval(0, width)))
        else:
            out.append(Region(Interval(0, height), Interval(at, at + size)))
        at += size
    return out


@dataclass(frozen=True)
class TiledPlacement(PlacementResult):
    """A placement and the tiled stages run on top of it (what :meth:`SpatialPlanner._solve` returns)."""

    stages: tuple[TiledStage, ...] = ()


class SpatialPlanner(Planner):
    """Fused-stack tiles over several devices (DeepThings FTP, CoEdge shares) jointly with the layer placement."""

    name = "spatial"
    summary = "tiles a fused conv/pool stack over several devices with speed- and link-proportional shares"
    reference = "Zhao et al., DeepThings, IEEE TCAD 2018; Zeng et al., CoEdge, IEEE/ACM ToN 2021"
    guarantee = "never worse than the base planner's layer-only plan; shares a local optimum of the row split"
    complexity = "O(stacks * cuts^2 * |D| * max_tiles) stage schedules + candidates * base planner"
    #: the layer-only plan it starts from already passed the base planner's cheap-candidate check, and the
    #: cheap candidates know nothing of tiles
    cheap_fallback = False

    def __init__(
        self,
        base: str = "ilp",
        max_tiles: int = 6,
        max_cuts: int = 10,
        candidates: int = 3,
        base_settings: dict[str, Any] | None = None,
    ) -> None:
        self.base = base
        self.base_settings = base_settings
        self.max_tiles = max_tiles
        self.max_cuts = max_cuts
        self.candidates = candidates

    def check(self, problem: Problem) -> str | None:
        if not isinstance(self.max_tiles, int) or self.max_tiles < 1:
            return f"max_tiles is {self.max_tiles!r}; give an integer >= 1"
        if self.base == self.name:
            return "the base planner must be a layer-only planner, not 'spatial' itself"
        if problem.compresses_cuts:
            return "tiled stages do not model cut compression (JALAD); plan without it (--cut-compression off)"
        if not isinstance(self.max_cuts, int) or self.max_cuts < 2:
            return f"max_cuts is {self.max_cuts!r}; give an integer >= 2"
        return None

    def applicable(self, problem: Problem) -> bool:
        """Worth running (``tiercut compare``): only on a problem with spatial stacks; :meth:`solve`
        still answers any single-user problem (then as its base planner)."""
        return isinstance(problem, SpatialProblem) and bool(problem.stacks) and super().applicable(problem)

    # ----------------------------------------------------------- search
    def _layer_only(self, problem: Problem) -> Plan:
        from tiercut.plan.registry import get_planner

        return get_planner(self.base, **dict(self.base_settings or {})).solve(problem)

    def _sub_stacks(self, problem: SpatialProblem) -> list[tuple[int, StackGeometry]]:
        out = []
        for index, stack in enumerate(problem.stacks):
            cuts = stack.cut_points()
            if len(cuts) > self.max_cuts:
                step = (len(cuts) - 1) / (self.max_cuts - 1)
                cuts = [cuts[round(i * step)] for i in range(self.max_cuts)]
            for i, after in enumerate(cuts):
                for last in cuts[i + 1 :]:
                    out.append((index, stack.segment(after, last)))
        return out

    def _row_seconds(self, problem: Problem, geometry: StackGeometry, home: str, device: str) -> float:
        """Seconds per output row (or column) on ``device``: compute plus its scatter and gather bytes."""
        height, width = geometry.output_hw
        lines = max(height, width)
        compute = 0.0
        for name in geometry.names:
            c = problem.compute_s[name].get(device)
            if c is None:
                return math.inf
            compute += c
        if device == home:
            return compute / lines
        graph = problem.graph
        in_bytes = graph[geometry.input_name].out_bytes / lines
        out_bytes = graph[geometry.output_name].out_bytes / lines
        per_byte_in = problem.routing.seconds(home, device, 1e6) / 1e6
        per_byte_out = problem.routing.seconds(device, home, 1e6) / 1e6
        return compute / lines + in_bytes * per_byte_in + out_bytes * per_byte_out

    def _stage(self, index: int, geometry: StackGeometry, home: str, devices: list[str], sizes: list[int]) -> TiledStage:
        tiles = tuple(Tile(d, r) for d, r in zip(devices, _strips(geometry, sizes), strict=True))
        return TiledStage(index, geometry.input_name, geometry.output_name, home, tiles)

    def _refine(self, problem: SpatialProblem, index: int, geometry: StackGeometry, stage: TiledStage) -> TiledStage:
        """Move one row at a time between strips while the stage gets shorter."""
        devices = [t.device for t in stage.tiles]
        along_rows = geometry.output_hw[0] >= geometry.output_hw[1]
        sizes = [t.region.rows.size if along_rows else t.region.cols.size for t in stage.tiles]
        best = schedule_stage(problem, stage, geometry).stage_s
        for _ in range(4 * sum(sizes)):
            improved = None
            for i in range(len(sizes)):
                for j in range(len(sizes)):
                    if i == j or sizes[i] <= 1:
                        continue
                    trial = list(sizes)
                    trial[i] -= 1
                    trial[j] += 1
                    candidate = self._stage(index, geometry, stage.home, devices, trial)
                    seconds = schedule_stage(problem, candidate, geometry).stage_s
                    if seconds < best * (1 - 1e-12) and (improved is None or seconds < improved[0]):
                        improved = (seconds, trial, candidate)
            if improved is None:
                break
            best, sizes, stage = improved
        return stage

    def split(self, problem: SpatialProblem, index: int, geometry: StackGeometry, home: str, devices: list[str]) -> TiledStage:
        """CoEdge's split of ``geometry``'s output over ``devices``: strips proportional to
        ``1 / seconds per row`` (compute plus scatter/gather link), refined row by row."""
        rates = [self._row_seconds(problem, geometry, home, d) for d in devices]
        if any(not math.isfinite(r) for r in rates):
            raise TiercutError(f"a device among {devices} cannot run the stack or is not reachable from {home!r}")
        sizes = split_sizes(max(geometry.output_hw), [1.0 / max(r, 1e-30) for r in rates])
        return self._refine(problem, index, geometry, self._stage(index, geometry, home, devices, sizes))

    def _options(self, problem: SpatialProblem, placement: dict[str, str]) -> list[tuple[float, TiledStage, StackGeometry, int]]:
        options = []
        for index, geometry in self._sub_stacks(problem):
            lines = max(geometry.output_hw)
            for home in problem.device_names:
                if any(home not in problem.compute_s[v] for v in geometry.names):
                    continue
                rates = {d: self._row_seconds(problem, geometry, home, d) for d in problem.device_names}
                ranked = sorted((d for d in rates if math.isfinite(rates[d])), key=lambda d: (rates[d], d))
                for k in range(2, min(self.max_tiles, len(ranked), lines) + 1):
                    devices = ranked[:k]
                    sizes = split_sizes(lines, [1.0 / max(rates[d], 1e-30) for d in devices])
                    stage = self._stage(index, geometry, home, devices, sizes)
                    ev = evaluate_tiled(problem, placement, [stage]).evaluation
                    if ev.valid:
                        options.append((ev.objective_value, stage, geometry, index))
        options.sort(key=lambda o: o[0])
        return options

    def _rest_with_stage(self, problem: SpatialProblem, stage: TiledStage, geometry: StackGeometry) -> dict[str, str] | None:
        """The base planner's placement of the rest with the sub-stack fixed on its home at no cost."""
        pinned = dict(problem.constraints.pinned)
        if any(pinned.get(v, stage.home) != stage.home for v in geometry.names):
            return None
        compute = {n: dict(row) for n, row in problem.compute_s.items()}
        for v in geometry.names:
            compute[v] = {stage.home: 0.0}
            pinned[v] = stage.home
        constraints = replace(
            problem.constraints,
            pinned=pinned,
            latency_budget_s=None,
            energy_source_budget_j=None,
            energy_total_budget_j=None,
            cost_budget=None,
        )
        derived = replace(problem, compute_s=compute, constraints=constraints)
        try:
            return dict(self._layer_only(derived).placement)
        except TiercutError:
            return None

    # ----------------------------------------------------------- solving
    def _solve(self, problem: Problem) -> TiledPlacement:
        layer_only = self._layer_only(problem)
        best_placement, best_stages = dict(layer_only.placement), ()
        best = evaluate_tiled(problem, best_placement, ())
        notes = [f"layer-only {self.base} plan: {layer_only.latency_s:.6g} s"]
        if not isinstance(problem, SpatialProblem) or not problem.stacks:
            notes.append("the problem has no spatial stacks (build it with --spatial auto): layers only")

        def better(a: TiledEvaluation, b: TiledEvaluation) -> bool:
            ka = (not a.evaluation.feasible, a.evaluation.objective_value)
            kb = (not b.evaluation.feasible, b.evaluation.objective_value)
            return ka < kb

        options = self._options(problem, best_placement) if isinstance(problem, SpatialProblem) else []
        for _, stage, geometry, index in options[: self.candidates]:
            stage = self._refine(problem, index, geometry, stage)
            for placement in (dict(layer_only.placement), self._rest_with_stage(problem, stage, geometry)):
                if placement is None:
                    continue
                ev = evaluate_tiled(problem, placement, [stage])
                if ev.evaluation.valid and better(ev, best):
                    best, best_placement, best_stages = ev, placement, (stage,)
        if best_stages:
            timing = best.stages[0]
            notes.append(
                f"tiled {len(best_stages[0].tiles)} ways on {', '.join(best_stages[0].devices)}: stage {timing.stage_s:.6g} s "
                f"vs {timing.sequential_s:.6g} s on {best_stages[0].home}, {100 * (timing.work_fraction - 1):.1f}% redundant work"
            )
        elif options:
            notes.append("no tiling beat it")
        return TiledPlacement(best_placement, note="; ".join(notes), stages=best_stages)

    def _plan(self, problem: Problem, result: PlacementResult, solve_s: float) -> TiledPlan:
        stages = result.stages if isinstance(result, TiledPlacement) else ()
        evaluation = evaluate_tiled(problem, result.placement, stages).evaluation
        plan = make_plan(problem, self.name, result, solve_s, self.get_params(), evaluation)
        return TiledPlan.of(plan, stages)


def recompute(problem: SpatialProblem | Problem, plan: Plan) -> TiledEvaluation:
    """The cost model's figures of ``plan`` (tiled or not), from the problem alone."""
    stages = plan.stages if isinstance(plan, TiledPlan) else ()
    return evaluate_tiled(problem, plan.placement, stages)


def plan_from_json(data: dict[str, Any]) -> tuple[Problem, Plan]:
    """``{"problem": ..., "plan": ...}`` of ``tiercut plan --json``, tiled or not."""
    problem_data, plan_data = data["problem"], data["plan"]
    problem = SpatialProblem.from_dict(problem_data) if problem_data.get("spatial_stacks") else Problem.from_dict(problem_data)
    plan = TiledPlan.from_dict(plan_data) if plan_data.get("tiled_stages") else Plan.from_dict(plan_data)
    return problem, plan


__all__ = ["SpatialPlanner", "TiledPlacement", "plan_from_json", "recompute"]
