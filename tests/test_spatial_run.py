"""``tiercut run --tiled-plan``: a plan with tiled stages runs on real gRPC worker processes.

The partitions and tile programs go up through the migration client's
verified uploads; a query's tiles run in parallel on their workers (a
parallel group of the route), the home stitches them, and the output equals
the whole model's. A tile worker killed during the run has its tile
recomputed by the home: the answer stays correct without falling back.
"""

from __future__ import annotations

import json

import pytest

from spatial_fixtures import captured_small_cnn, edge_cluster_problem
from test_runtime_cli import invoke
from tiercut.cli.run_cmd import run
from tiercut.cost.tiled import evaluate_tiled
from tiercut.plan import get_planner
from tiercut.plan.base import PlacementResult, make_plan
from tiercut.spatial.geometry import Region
from tiercut.spatial.problem import SpatialProblem, Tile, TiledPlan, TiledStage
from tiercut.spatial.tiles import stacks_of_captured

ENV = """schema_version: 1
name: small-cluster
description: a phone reaching edge0; edge0..edge2 on a LAN (the spatial tests' cluster)
sources: ["figures assumed for the tests"]
devices:
  - {name: phone, tier: end, spec: raspberry_pi_4, memory: 4 GB}
  - {name: edge0, tier: edge, spec: jetson_nano, memory: 4 GB}
  - {name: edge1, tier: edge, spec: jetson_nano, memory: 4 GB}
  - {name: edge2, tier: edge, spec: jetson_nano, memory: 4 GB}
links:
  - {a: phone, b: edge0, bandwidth: 800 Mbit/s, latency: 1 ms}
  - {a: edge0, b: edge1, bandwidth: 10 Gbit/s, latency: 0.1 ms}
  - {a: edge0, b: edge2, bandwidth: 10 Gbit/s, latency: 0.1 ms}
  - {a: edge1, b: edge2, bandwidth: 10 Gbit/s, latency: 0.1 ms}
"""


def _problem() -> SpatialProblem:
    return SpatialProblem.of(edge_cluster_problem(3), tuple(stacks_of_captured(captured_small_cnn())))


def _plan_with(problem: SpatialProblem, placement: dict[str, str], stage: TiledStage) -> TiledPlan:
    """A tiled plan of ``placement`` and ``stage`` with the cost model's figures (as a planner makes it)."""
    evaluation = evaluate_tiled(problem, placement, [stage]).evaluation
    plan = make_plan(problem, "hand", PlacementResult(placement), 0.0, {}, evaluation)
    return TiledPlan.of(plan, (stage,))


def _files(tmp_path, problem, plan) -> tuple[str, str]:
    (tmp_path / "env.yaml").write_text(ENV)
    (tmp_path / "plan.json").write_text(json.dumps({"problem": problem.to_dict(), "plan": plan.to_dict()}))
    return str(tmp_path / "env.yaml"), str(tmp_path / "plan.json")


def _run_api(tmp_path, problem, plan, *, kill: str | None = None):
    """Prepare the migration from the plan file and run it on local worker processes (queries after the uploads);
    with ``kill``, that worker process is killed once a query has run after every upload was confirmed."""
    import torch

    from tiercut.env import load_environment
    from tiercut.runtime.client import RunSettings, default_query_inputs
    from tiercut.runtime.migration import prepare_migration
    from tiercut.runtime.session import LocalCluster, run_migration
    from tiercut.runtime.tiled import load_tiled_plan

    env_path, plan_path = _files(tmp_path, problem, plan)
    environment = load_environment(env_path)
    loaded, tiled, upload = load_tiled_plan(plan_path, [d.name for d in environment.devices])
    captured = captured_small_cnn()
    migration = prepare_migration(captured, upload, source="phone", problem=loaded, tiled=tiled.stages)
    inputs = default_query_inputs(captured)
    cluster = LocalCluster([*migration.servers, *migration.relays], env=env_path, torch_threads=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cluster.start()

        confirmed: list[str] = []
        calls_after: list[int] = []

        def query_inputs(index: int):
            if len(confirmed) == len(migration.servers):
                calls_after.append(index)
                if kill is not None and len(calls_after) == 2:  # one query ran on the tiles: kill before the next
                    cluster.processes[kill].kill()
                    killed_at.append(index)
            return inputs(index)

        def log(line: str) -> None:
            if "CR ok" in line:
                confirmed.append(line)

        killed_at: list[int] = []
        settings = RunSettings(queries=1, queries_after_upload=5, verify_outputs=True, max_run_s=240)
        result = run_migration(migration, cluster.addresses, credentials=cluster.credentials(), settings=settings,
                               environment=environment, query_inputs=query_inputs, log=log)  # fmt: skip
        return migration, result, killed_at
    finally:
        cluster.stop()
        torch.set_num_threads(threads)


def _tiled_queries(result, stage_index: int = 1):
    return [q for q in result.queries if q.stage == stage_index]


@pytest.mark.slow
def test_planned_tiled_stage_homed_on_a_worker_runs_in_parallel_and_equals_the_whole_model(tmp_path):
    problem = _problem()
    plan = get_planner("spatial").solve(problem)
    (stage,) = plan.stages
    assert stage.home == "edge0" and len(stage.tiles) >= 2  # the fixture's bottleneck: tiles pay
    migration, result, _ = _run_api(tmp_path, problem, plan)
    # every tile device got an upload through the migration client, confirmed
    assert set(migration.servers) == {"edge0", *stage.devices}
    assert all(t >= 0 for times in result.confirmed_s.values() for t in times)
    tiled = _tiled_queries(result)
    assert len(tiled) >= 4 and all(q.output_matches for q in result.queries) and not any(q.fallback for q in result.queries)
    route = migration.stages[1].route
    (group,) = route.parallel
    for query in tiled:  # each tile ran on its planned worker
        ran = {(s.device, s.kind) for s in query.spans}
        assert all((t.device, "compute") in ran for t in stage.tiles)
    assert [route.steps[p].device for p in range(*group)] == [t.device for t in stage.tiles]


@pytest.mark.slow
def test_a_killed_tile_worker_has_its_tile_recomputed_by_the_home(tmp_path):
    problem = _problem()
    placement = {**{n.name: "edge0" for n in problem.graph}, "x": "phone"}
    rows = [Region.of(0, 4, 0, 10), Region.of(4, 7, 0, 10), Region.of(7, 10, 0, 10)]
    stage = TiledStage(0, "x", "p2", "edge0", tuple(Tile(d, r) for d, r in zip(["edge0", "edge1", "edge2"], rows)))
    _, result, killed_at = _run_api(tmp_path, problem, _plan_with(problem, placement, stage), kill="edge1")
    assert killed_at, "the run ended before the kill"
    tiled = _tiled_queries(result)
    assert all(q.output_matches for q in result.queries) and not any(q.fallback for q in result.queries)
    assert any(q.index < killed_at[0] and "edge1" in {s.device for s in q.spans} for q in tiled)  # edge1 worked before
    after = [q for q in tiled if q.index >= killed_at[0]]
    assert len(after) >= 3, "too few tiled queries ran after the kill"
    for query in after:  # edge1 is gone: its tile was computed on the home, edge0
        devices = [s.device for s in query.spans if s.kind == "compute"]
        assert "edge1" not in devices and devices.count("edge0") >= 4  # crop, own tile, edge1's tile, stitch


@pytest.mark.slow
def test_tiled_plan_homed_on_the_client_runs_through_the_cli(tmp_path, capsys):
    """The client is the home: it crops and stitches; the tiles go to the phone itself and edge0."""
    problem = _problem()
    placement = {n.name: "phone" for n in problem.graph}
    stage = TiledStage(0, "x", "p2", "phone", (Tile("phone", Region.of(0, 3, 0, 10)), Tile("edge0", Region.of(3, 10, 0, 10))))
    env_path, plan_path = _files(tmp_path, problem, _plan_with(problem, placement, stage))
    args = ["spatial_fixtures:SmallCNN", "--allow-code", "--input-shape", "1,3,40,40", "--env", env_path,
            "--tiled-plan", plan_path, "--queries", "10", "--rate", "2", "--verify", "--json"]  # fmt: skip
    code, stdout, err = invoke(run, args, capsys)
    assert code == 0, err
    trace = json.loads(stdout)["run"]
    assert all(q["output_matches"] for q in trace["queries"]) and trace["uploads"][0]["server"] == "edge0"
    for query in (q for q in trace["queries"] if q["stage"] == 1):
        assert {s["device"] for s in query["spans"] if s["kind"] == "compute"} == {"phone", "edge0"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"problem": {}}, "'problem' and 'plan'"),
        ("layer-only", "no tiled stages"),
        ("other-env", "which the environment lacks"),
    ],
)
def test_tiled_plan_mistakes_are_one_line_errors(tmp_path, capsys, content, message):
    problem = _problem()
    if content == "layer-only":
        content = {"problem": problem.to_dict(), "plan": get_planner("ilp").solve(problem).to_dict()}
    elif content == "other-env":
        plan = get_planner("spatial").solve(problem)
        content = {"problem": problem.to_dict(), "plan": plan.to_dict()}
    (tmp_path / "plan.json").write_text(json.dumps(content))
    env = "three-tier" if message.startswith("which") else "edge-cluster"
    args = ["spatial_fixtures:SmallCNN", "--allow-code", "--input-shape", "1,3,40,40", "--env", env,
            "--tiled-plan", str(tmp_path / "plan.json")]  # fmt: skip
    code, _, err = invoke(run, args, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_tiled_and_upload_plans_together_are_refused(tmp_path, capsys):
    (tmp_path / "p.json").write_text("{}")
    args = ["spatial_fixtures:SmallCNN", "--allow-code", "--input-shape", "1,3,40,40", "--tiled-plan", str(tmp_path / "p.json"),
            "--upload-plan", str(tmp_path / "p.json")]  # fmt: skip
    code, _, err = invoke(run, args, capsys)
    assert code == 2 and "not both" in err


@pytest.mark.parametrize(
    ("parallel", "message"),
    [
        ([[1, 1]], "increasing, disjoint"),
        ([[1, 3], [2, 3]], "increasing, disjoint"),
        ([[2, 9]], "increasing, disjoint"),
        ([[0, 2]], "reads a value another step"),
        ("0-2", "list of \\[start, end\\] pairs"),
    ],
)
def test_route_parallel_groups_from_the_network_are_checked(parallel, message):
    from tiercut.runtime.route import Route, RouteError, Step

    steps = [Step(0, "a", "p", ("x",), ("y",)), Step(1, "b", "q", ("y",), ("z",)), Step(2, "c", "r", ("x",), ("w",))]
    data = {**Route(tuple(steps), ("z", "w"), "src").to_dict(), "parallel": parallel}
    with pytest.raises(RouteError, match=message):
        Route.from_dict(data)
    assert Route.from_dict({**data, "parallel": [[1, 3]]}).group_of(2) == (1, 3)
