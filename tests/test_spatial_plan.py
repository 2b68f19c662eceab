"""Tiled stages in the cost model and the spatial planner: beats layer-only where one edge is a bottleneck."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spatial_fixtures import captured_small_cnn, edge_cluster_problem
from tiercut.cost import evaluate
from tiercut.cost.tiled import evaluate_tiled, schedule_stage
from tiercut.errors import TiercutError
from tiercut.plan import get_planner
from tiercut.plan.spatial import plan_from_json, recompute
from tiercut.problem import Constraints
from tiercut.spatial.geometry import Region
from tiercut.spatial.problem import SpatialProblem, Tile, TiledPlan, TiledStage
from tiercut.spatial.tiles import stacks_of_captured


def spatial_problem(n_edges: int = 3, objective: str = "latency") -> SpatialProblem:
    return SpatialProblem.of(edge_cluster_problem(n_edges, objective), tuple(stacks_of_captured(captured_small_cnn())))


def test_small_cnn_has_one_fused_stack_from_input_to_last_pool():
    (stack,) = stacks_of_captured(captured_small_cnn())
    assert (stack.input_name, stack.output_name) == ("x", "p2")
    assert stack.cut_points() == ["x", "c1", "r1", "c2", "r2", "p1", "c3", "r3", "c4", "r4", "p2"]
    assert stack.output_hw == (10, 10)


def test_stage_schedule_matches_a_hand_computed_two_tile_stage():
    problem = spatial_problem(2)
    stage = TiledStage(0, "x", "p2", "edge0", (Tile("edge0", Region.of(0, 4, 0, 10)), Tile("edge1", Region.of(4, 10, 0, 10))))
    geometry = stage.geometry(problem)
    graph, route = problem.graph, problem.routing

    def work(region: Region, device: str) -> float:
        regions = geometry.regions(region)
        return sum(problem.compute_s[s.name][device] * regions[s.name].area / (s.out_hw[0] * s.out_hw[1]) for s in geometry.steps)

    in1 = math.ceil(graph["x"].out_bytes * geometry.input_region(Region.of(4, 10, 0, 10)).area / (40 * 40))
    out1 = math.ceil(graph["p2"].out_bytes * 60 / 100)
    send = route.seconds("edge0", "edge1", in1)
    finish0 = send + work(Region.of(0, 4, 0, 10), "edge0")
    finish1 = send + work(Region.of(4, 10, 0, 10), "edge1")
    expected = max(finish0, finish1) + route.seconds("edge1", "edge0", out1)
    timing = schedule_stage(problem, stage)
    assert timing.stage_s == pytest.approx(expected, rel=1e-12)
    # the input region of the lower strip starts above row 16 (4 output rows = 16 input rows, plus the halo)
    assert geometry.input_region(Region.of(4, 10, 0, 10)).rows.start < 16
    assert timing.work_fraction > 1.0

    placement = {n.name: "edge0" for n in graph if not n.is_input}
    whole = evaluate(problem, placement)
    tiled = evaluate_tiled(problem, placement, [stage]).evaluation
    assert tiled.latency_s == pytest.approx(whole.latency_s - timing.sequential_s + expected, rel=1e-12)
    # edge1 now holds the stack's weights, edge0 still everything
    stack_bytes = sum(graph[v].param_bytes for v in geometry.names)
    assert tiled.memory_bytes["edge1"] == stack_bytes
    assert tiled.memory_bytes["edge0"] == whole.memory_bytes["edge0"]


def test_tiling_beats_the_best_layer_only_plan_when_one_edge_is_the_bottleneck():
    problem = spatial_problem(3)
    layer_only = get_planner("ilp").solve(problem)
    assert layer_only.optimal  # the exact best placement without tiles
    assert set(layer_only.placement.values()) - {"phone"} == {"edge0"}  # edge0, the only server the phone reaches
    plan = get_planner("spatial", candidates=2).solve(problem)
    assert isinstance(plan, TiledPlan) and plan.stages
    assert len(plan.stages[0].devices) >= 2
    assert plan.latency_s < 0.95 * layer_only.latency_s
    assert plan.feasible

    # the JSON contract: the figures recompute from the problem alone
    data = json.loads(json.dumps({"problem": problem.to_dict(), "plan": plan.to_dict()}))
    assert data["problem"]["spatial_stacks"] and data["plan"]["tiled_stages"]
    problem2, plan2 = plan_from_json(data)
    again = recompute(problem2, plan2).evaluation
    for metric in ("latency_s", "energy_source_j", "energy_total_j", "cost"):
        assert getattr(again, metric) == pytest.approx(data["plan"][metric], rel=1e-9)


def test_spatial_plan_is_never_worse_than_layer_only_and_keeps_no_stage_when_tiling_does_not_pay():
    problem = spatial_problem(1)  # one edge server: nothing to share the stack with
    plan = get_planner("spatial", candidates=1).solve(problem)
    layer_only = get_planner("ilp").solve(problem)
    assert plan.stages == () and plan.latency_s == pytest.approx(layer_only.latency_s)
    assert "no tiling beat it" in plan.note


def test_privacy_pin_forbids_tiling_a_pinned_layer_elsewhere():
    problem = spatial_problem(2)
    pinned = SpatialProblem.of(problem.with_constraints(Constraints(pinned={"c1": "edge0"})), problem.stacks)
    stage = TiledStage(0, "x", "p2", "edge0", (Tile("edge0", Region.of(0, 5, 0, 10)), Tile("edge1", Region.of(5, 10, 0, 10))))
    ev = evaluate_tiled(pinned, {n.name: "edge0" for n in problem.graph if not n.is_input}, [stage]).evaluation
    assert not ev.valid and any("pinned" in v for v in ev.violations)


@pytest.mark.parametrize(
    ("stage", "match"),
    [
        (TiledStage(0, "x", "p2", "edge0", (Tile("edge0", Region.of(0, 5, 0, 10)),)), "partition"),
        (TiledStage(0, "x", "p2", "mars", (Tile("edge0", Region.of(0, 10, 0, 10)),)), "unknown device"),
        (TiledStage(3, "x", "p2", "edge0", (Tile("edge0", Region.of(0, 10, 0, 10)),)), "spatial stacks"),
        (TiledStage(0, "c1", "x", "edge0", (Tile("edge0", Region.of(0, 10, 0, 10)),)), "cut points"),
    ],
)
def test_bad_tiled_stages_are_refused_by_name(stage, match):
    problem = spatial_problem(2)
    with pytest.raises(TiercutError, match=match):
        evaluate_tiled(problem, {n.name: "edge0" for n in problem.graph if not n.is_input}, [stage])


def test_tiled_plan_on_a_problem_without_stacks_is_refused():
    problem = edge_cluster_problem(2)
    stage = TiledStage(0, "x", "p2", "edge0", (Tile("edge0", Region.of(0, 10, 0, 10)),))
    with pytest.raises(TiercutError, match="spatial_stacks"):
        evaluate_tiled(problem, problem.local_placement(), [stage])
    assert not get_planner("spatial").applicable(problem)  # tiercut compare skips it here
    assert get_planner("spatial").applicable(spatial_problem(2))
    plan = get_planner("spatial").solve(problem)  # no stacks: the base planner's layer-only plan
    assert plan.stages == () and "no spatial stacks" in plan.note
    assert plan.latency_s == pytest.approx(get_planner("ilp").solve(problem).latency_s)
    with pytest.raises(TiercutError, match="max_tiles"):
        get_planner("spatial", max_tiles=0).solve(problem)


def test_shares_follow_device_speed_coedge():
    """A helper twice as slow gets about half the rows of an equally linked faster one."""
    from dataclasses import replace

    base = spatial_problem(3)
    compute = {n: {**row, "edge2": row["edge2"] * 2.0} for n, row in base.compute_s.items()}
    problem = SpatialProblem.of(replace(edge_cluster_problem(3), compute_s=compute), base.stacks)
    geometry = problem.stacks[0]
    planner = get_planner("spatial")
    stage = planner.split(problem, 0, geometry, "edge0", ["edge0", "edge1", "edge2"])
    rows = {t.device: t.region.rows.size for t in stage.tiles}
    assert sum(rows.values()) == 10 and rows["edge2"] < rows["edge1"]
    # the refined split is no slower than any other split of the 10 rows over the three devices
    best = schedule_stage(problem, stage).stage_s
    for a in range(1, 9):
        for b in range(1, 10 - a):
            other = planner._stage(0, geometry, "edge0", ["edge0", "edge1", "edge2"], [a, b, 10 - a - b])
            assert schedule_stage(problem, other).stage_s >= best * (1 - 1e-9)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.floats(0.3, 3.0), min_size=3, max_size=3),
    st.floats(1e6, 1e9),
    st.floats(1e7, 2e9),
    st.sampled_from(["latency", "energy_total"]),
)
def test_docstring_guarantees_hold_on_drawn_speeds_and_links(slowdowns, uplink_bytes_per_s, lan_bytes_per_s, objective):
    """The planner's stated guarantees: never worse than the layer-only base plan (Deb's rule), and the shares
    of a returned stage are a local optimum (no one-row move between strips shortens the stage)."""
    from dataclasses import replace

    base = spatial_problem(3, objective)
    compute = {n: {d: c * (slowdowns[int(d[-1])] if d.startswith("edge") else 1.0) for d, c in row.items()}
               for n, row in base.compute_s.items()}  # fmt: skip
    links = tuple(
        replace(k, bandwidth_bytes_per_s=uplink_bytes_per_s if "phone" in (k.a, k.b) else lan_bytes_per_s) for k in base.links
    )
    problem = replace(base, compute_s=compute, links=links)
    layer_only = get_planner("ilp").solve(problem)
    planner = get_planner("spatial", candidates=2, max_cuts=4)
    plan = planner.solve(problem)
    assert (not plan.feasible, plan.objective_value) <= (not layer_only.feasible, layer_only.objective_value * (1 + 1e-9))
    assert recompute(problem, plan).evaluation.objective_value == pytest.approx(plan.objective_value)
    for stage in plan.stages:
        geometry = stage.geometry(problem)
        sizes = [t.region.rows.size for t in stage.tiles]
        devices = [t.device for t in stage.tiles]
        best = schedule_stage(problem, stage).stage_s
        for i in range(len(sizes)):
            for j in range(len(sizes)):
                if i != j and sizes[i] > 1:
                    moved = list(sizes)
                    moved[i] -= 1
                    moved[j] += 1
                    other = planner._stage(stage.stack, geometry, stage.home, devices, moved)
                    assert schedule_stage(problem, other).stage_s >= best * (1 - 1e-9)
