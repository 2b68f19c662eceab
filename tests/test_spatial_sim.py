"""Tiled stages in the main simulator: one query alone is the tiled cost model's latency; more queries contend."""

from __future__ import annotations

import json

import pytest

from test_spatial_plan import spatial_problem
from tiercut.cost.tiled import evaluate_tiled
from tiercut.errors import TiercutError
from tiercut.plan import get_planner
from tiercut.sim import SimConfig, SimUser, simulate
from tiercut.sim.model import TraceArrivals
from tiercut.spatial.geometry import Region, grid_tiles, strip_tiles
from tiercut.spatial.problem import Tile, TiledStage


def _stage(tiles, home="edge0", first="x", last="p2"):
    return TiledStage(0, first, last, home, tuple(tiles))


STAGES = [
    _stage([Tile(d, r) for d, r in zip(["edge0", "edge1", "edge2"], strip_tiles(10, 10, [2.0, 1.0, 1.0]), strict=True)]),
    _stage([Tile(d, r) for d, r in zip(["edge1", "edge2", "edge1", "edge0"], grid_tiles(10, 10, 2, 2), strict=True)]),
    _stage([Tile("edge2", Region.of(0, 10, 0, 10))]),  # all remote: scatter everything, gather everything
    _stage([Tile(d, r) for d, r in zip(["edge0", "edge2"], strip_tiles(20, 20, [1.0, 1.0]), strict=True)], last="p1"),
    _stage([Tile(d, r) for d, r in zip(["phone", "edge1"], strip_tiles(10, 10, [1.0, 3.0]), strict=True)], home="phone"),
]
#: the rest of the graph: the stack's home holds it (a layer-only plan around the stage), or the phone does
PLACEMENTS = ["home", "phone"]


def _placement(problem, stage, where):
    device = stage.home if where == "home" else "phone"
    return {n.name: ("phone" if n.is_input else device) for n in problem.graph}


def _user(problem, placement, stages, times):
    return SimUser("u", problem, placement=placement, tiled_stages=tuple(stages), arrivals=TraceArrivals(tuple(times)))


@pytest.mark.parametrize("where", PLACEMENTS)
@pytest.mark.parametrize("stage", STAGES)
def test_one_query_alone_takes_the_tiled_cost_models_latency(stage, where):
    problem = spatial_problem(3)
    placement = _placement(problem, stage, where)
    expected = evaluate_tiled(problem, placement, [stage]).evaluation
    result = simulate([_user(problem, placement, [stage], [0.25])], SimConfig())
    (query,) = result.queries
    assert query.latency_s == pytest.approx(expected.latency_s, rel=1e-9)
    assert query.energy_total_j == pytest.approx(expected.energy_total_j, rel=1e-9)
    assert query.energy_source_j == pytest.approx(expected.energy_source_j, rel=1e-9)
    assert set(query.devices) >= set(stage.devices)


@pytest.mark.parametrize("stage", STAGES[:2])
def test_queries_contend_for_devices_and_links(stage):
    problem = spatial_problem(3)
    placement = _placement(problem, stage, "home")
    alone = evaluate_tiled(problem, placement, [stage]).latency_s
    spaced = simulate([_user(problem, placement, [stage], [i * 10 * alone for i in range(4)])], SimConfig())
    assert [q.latency_s for q in spaced.queries] == pytest.approx([alone] * 4, rel=1e-9)  # far apart: nobody waits
    burst = simulate([_user(problem, placement, [stage], [0.0] * 4)], SimConfig(default_discipline="fifo"))
    latencies = [q.latency_s for q in burst.queries]
    assert all(t >= alone * (1 - 1e-9) for t in latencies)  # nobody is faster than alone
    assert max(latencies) > 1.5 * alone  # four at once queue at the devices and the links
    assert max(latencies) < 4 * alone  # pipelined: later queries overlap the earlier ones' other steps


def test_tiled_stage_shares_a_device_with_another_user():
    """A second user computing on a tile device slows the tiled user's stage (processor sharing)."""
    problem = spatial_problem(3)
    stage = STAGES[0]
    placement = _placement(problem, stage, "home")
    alone = evaluate_tiled(problem, placement, [stage]).latency_s
    busy = SimUser("other", problem, placement={n.name: ("phone" if n.is_input else "edge1") for n in problem.graph},
                   arrivals=TraceArrivals(tuple(0.0 for _ in range(20))))  # fmt: skip
    result = simulate([_user(problem, placement, [stage], [0.0]), busy], SimConfig())
    (tiled,) = result.user_queries("u")
    assert tiled.latency_s > alone * 1.01


def test_scenario_with_a_tiled_plan_simulates_it(tmp_path):
    """A scenario user given a 'tiercut plan --spatial auto --json' file runs that plan, tiles included."""
    from tiercut.sim.scenario import build_scenario, load_scenario

    problem = spatial_problem(3)
    plan = get_planner("spatial").solve(problem)
    assert plan.stages
    (tmp_path / "plan.json").write_text(json.dumps({"problem": problem.to_dict(), "plan": plan.to_dict()}))
    (tmp_path / "s.yaml").write_text(
        "schema_version: 1\nupload: {algorithm: none}\n"
        "users:\n  - {name: cam, plan: plan.json, max_queries: 3, arrivals: {kind: periodic, interval_s: 1.0}}\n"
    )
    built = build_scenario(load_scenario(tmp_path / "s.yaml"))
    result = built.simulation.run()
    assert len(result.queries) == 3
    assert all(q.latency_s == pytest.approx(plan.latency_s, rel=1e-9) for q in result.queries)
    assert set(plan.stages[0].devices) <= set(result.queries[0].devices)


def test_scenario_tiled_plan_mistakes_are_named(tmp_path):
    from tiercut.sim.scenario import build_scenario, load_scenario

    problem = spatial_problem(3)
    plan = get_planner("spatial").solve(problem)
    (tmp_path / "plan.json").write_text(json.dumps({"problem": problem.to_dict(), "plan": plan.to_dict()}))
    (tmp_path / "s.yaml").write_text(
        "schema_version: 1\nupload: {algorithm: direct}\nusers:\n  - {name: cam, plan: plan.json, max_queries: 3}\n"
    )
    with pytest.raises(TiercutError, match="upload algorithm none"):
        build_scenario(load_scenario(tmp_path / "s.yaml"))
    (tmp_path / "s.yaml").write_text(
        "schema_version: 1\nusers:\n  - {name: cam, plan: plan.json, problem: plan.json, max_queries: 3}\n"
    )
    with pytest.raises(TiercutError, match="not both"):
        load_scenario(tmp_path / "s.yaml")


def test_simulator_refuses_a_stage_that_cannot_run():
    problem = spatial_problem(2)
    placement = _placement(problem, STAGES[0], "home")
    with pytest.raises(TiercutError, match="partition"):
        simulate([_user(problem, placement, [_stage([Tile("edge0", Region.of(0, 5, 0, 10))])], [0.0])], SimConfig())
    with pytest.raises(TiercutError, match="upload: none"):  # an upload plan of any kind is refused
        SimUser("u", problem, plan=object(), tiled_stages=(STAGES[0],))  # type: ignore[arg-type]
