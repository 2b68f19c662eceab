"""The simulator's tiled stages: one query alone is the cost model's stage time; more queries contend."""

from __future__ import annotations

import pytest

from test_spatial_plan import spatial_problem
from tiercut.cost.tiled import schedule_stage
from tiercut.errors import TiercutError
from tiercut.sim.tiled import simulate_tiled_stage
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


@pytest.mark.parametrize("stage", STAGES)
def test_one_query_alone_takes_the_cost_models_stage_time(stage):
    problem = spatial_problem(3)
    result = simulate_tiled_stage(problem, stage, [0.25])
    assert result.latencies_s[0] == pytest.approx(schedule_stage(problem, stage).stage_s, rel=1e-9)


@pytest.mark.parametrize("stage", STAGES[:2])
def test_queries_contend_for_devices_and_links(stage):
    problem = spatial_problem(3)
    alone = schedule_stage(problem, stage).stage_s
    spaced = simulate_tiled_stage(problem, stage, [i * 10 * alone for i in range(4)])
    assert spaced.latencies_s == pytest.approx([alone] * 4, rel=1e-9)  # far apart: nobody waits
    burst = simulate_tiled_stage(problem, stage, [0.0] * 4)
    assert all(t >= alone * (1 - 1e-9) for t in burst.latencies_s)  # nobody is faster than alone
    assert burst.max_latency_s > 2 * alone  # four at once queue at the home, the devices and the links
    assert burst.max_latency_s < 4 * alone  # pipelined: later queries overlap the earlier ones' other steps


def test_simulator_refuses_bad_input():
    problem = spatial_problem(2)
    with pytest.raises(TiercutError, match="at least one query"):
        simulate_tiled_stage(problem, _stage([Tile("edge0", Region.of(0, 10, 0, 10))]), [])
    with pytest.raises(TiercutError, match=">= 0"):
        simulate_tiled_stage(problem, _stage([Tile("edge0", Region.of(0, 10, 0, 10))]), [-1.0])
    with pytest.raises(TiercutError, match="partition"):
        simulate_tiled_stage(problem, _stage([Tile("edge0", Region.of(0, 5, 0, 10))]), [0.0])
