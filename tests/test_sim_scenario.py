"""Scenario files: validation errors (one line each), building, the simulate and upload commands."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from tiercut.errors import TiercutError
from tiercut.problem import Problem
from tiercut.sim import BackToBack, Poisson
from tiercut.sim.scenario import build_scenario, load_scenario, parse_scenario
from tiercut.upload import UploadPlan, check_upload_plan
from tiercut.upload.synthetic import random_upload_problem


@pytest.fixture()
def problem_file(tmp_path: Path) -> Path:
    problem = random_upload_problem(random.Random(1), n_nodes=6, shape="chain", upload_queries=8)
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"problem": problem.to_dict()}))
    return path


def _write(tmp_path: Path, data: dict, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


BASE = {"schema_version": 1, "name": "t", "duration_s": 20, "users": [{"name": "u", "problem": "p.json"}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 2}, "schema_version"),
        ({"duration_s": -3}, "duration_s"),
        ({"execution": "parallel"}, "execution"),
        ({"colour": "red"}, "colour"),
        ({"default_discipline": "lifo"}, "default_discipline"),
        ({"users": [{"name": "u", "problem": "p.json", "arrivals": {"kind": "poisson"}}]}, "rate_hz"),
        ({"users": [{"name": "u", "problem": "p.json", "arrivals": {"kind": "warp"}}]}, "users.0.arrivals.kind"),
        ({"users": [{"name": "u", "problem": "p.json", "join_s": 5, "leave_s": 2}]}, "leave_s"),
        ({"users": [{"name": "u", "problem": "p.json", "model": "alexnet"}]}, "either problem"),
        ({"users": [{"name": "u", "problem": "p.json", "max_queries": 0}]}, "max_queries"),
        ({"bandwidth_traces": [{"a": "d0", "b": "d1"}]}, "points or file"),
        ({"upload": {"mode": "alone"}}, "upload.mode"),
    ],
)
def test_validation_errors_are_one_line(tmp_path, problem_file, change, message):
    path = _write(tmp_path, {**BASE, **change})
    with pytest.raises(TiercutError, match=message) as info:
        build_scenario(load_scenario(path))
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value) or "schema_version" in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"users": [{"name": "u", "problem": "missing.json"}]}, "cannot read"),
        ({"users": [{"name": "u", "problem": "p.json"}, {"name": "u", "problem": "p.json"}]}, "share a name"),
        ({"users": [{"name": "u", "problem": "p.json", "device": "d1"}]}, "source"),
        ({"users": [{"name": "u", "model": "alexnet", "device": "c"}]}, "no environment"),
        ({"users": [{"name": "u", "problem": "p.json"}], "duration_s": None}, "forever"),
        ({"upload": {"algorithm": "teleport"}}, "not known"),
        ({"upload": {"offloading": "nope"}}, "not known"),
        ({"disciplines": {"mars": "ps"}}, "unknown device"),
        ({"bandwidth_traces": [{"a": "d0", "b": "zz", "points": [[0, 1]]}]}, "no user's problem"),
        ({"bandwidth_traces": [{"a": "d0", "b": "d1", "points": [[0, 1], [0, 2]]}]}, "increasing"),
        ({"bandwidth_traces": [{"a": "d0", "b": "d1", "file": "nope.csv"}]}, "cannot read"),
        ({"users": None, "environment": None}, "no users"),
        ({"environment": "no-such-preset"}, "no-such-preset"),
    ],
)
def test_build_errors_are_one_line(tmp_path, problem_file, change, message):
    data = {**BASE, **change}
    data = {k: v for k, v in data.items() if v is not None}
    path = _write(tmp_path, data)
    with pytest.raises(TiercutError, match=message) as info:
        built = build_scenario(load_scenario(path))
        built.simulation.run()
    assert "\n" not in str(info.value)


def test_file_errors(tmp_path):
    with pytest.raises(TiercutError, match="cannot read scenario"):
        load_scenario(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nusers: [unclosed\n")
    with pytest.raises(TiercutError, match="not valid YAML"):
        load_scenario(bad)
    with pytest.raises(TiercutError, match="not a mapping"):
        parse_scenario(["a", "b"])
    corrupt = tmp_path / "p.json"
    corrupt.write_text("{not json")
    with pytest.raises(TiercutError, match="not valid JSON"):
        build_scenario(load_scenario(_write(tmp_path, BASE)))


def test_scenario_runs_with_traces_and_several_users(tmp_path, problem_file):
    (tmp_path / "trace.csv").write_text("time_s,bytes_per_s\n0,20000\n5,4000\n12,80000\n")
    data = {
        **BASE,
        "upload_shares_link": True,
        "disciplines": {"d1": "fifo"},
        "upload": {"algorithm": "ionn"},
        "users": [
            {"name": "a", "problem": "p.json"},
            {"name": "b", "problem": "p.json", "arrivals": {"kind": "periodic", "interval_s": 1.0}, "join_s": 2, "leave_s": 15,
             "upload": {"algorithm": "direct"}},
            {"name": "c", "problem": "p.json", "arrivals": {"kind": "trace", "times_s": [1, 2, 3]},
             "upload": {"algorithm": "none"}},
        ],
        "bandwidth_traces": [{"a": "d0", "b": "d1", "file": "trace.csv"}],
    }
    built = build_scenario(load_scenario(_write(tmp_path, data)))
    assert built.plans["a"].algorithm == "ionn" and built.plans["b"].algorithm == "direct" and built.plans["c"] is None
    result = built.simulation.run()
    counts = {s.user: s.queries + s.in_flight for s in result.summaries()}
    assert counts["c"] == 3
    assert 12 <= counts["b"] <= 14  # one a second from 2 s until 15 s
    assert counts["a"] > 0
    assert {a.user for a in result.arrivals} <= {"a", "b"}


def test_environment_users_arrive_at_their_query_rate(tmp_path, problem_file):
    env = {
        "schema_version": 1,
        "name": "pair",
        "devices": [{"name": "d0", "tier": "end"}, {"name": "d1", "tier": "edge"}],
        "links": [{"a": "d0", "b": "d1", "bandwidth_bytes_per_s": 1.0e4}],
        "users": [{"name": "u", "device": "d0", "model": "alexnet", "query_rate_hz": 4.0}],
    }
    (tmp_path / "env.yaml").write_text(yaml.safe_dump(env))
    users = [{"name": "u", "problem": "p.json"}, {"name": "w", "problem": "p.json"}]
    built = build_scenario(load_scenario(_write(tmp_path, {**BASE, "environment": "env.yaml", "users": users})))
    arrivals = {u.name: u.arrivals for u in built.simulation.users}
    assert arrivals["u"] == Poisson(4.0)
    assert arrivals["w"] == BackToBack()


def test_joint_mode_plans_every_user_together(tmp_path, problem_file):
    from tiercut.plan import PLANNERS

    names = [n for n, cls in PLANNERS.items() if cls.multi_user]
    if not names:
        pytest.skip("no multi-user partition planner is registered yet")
    users = [{"name": "u", "problem": "p.json"}, {"name": "w", "problem": "p.json"}]
    data = {**BASE, "users": users, "upload": {"mode": "joint", "offloading": names[0], "algorithm": "ionn"}}
    built = build_scenario(load_scenario(_write(tmp_path, data)))
    assert set(built.plans) == {"u", "w"} and all(p.algorithm == "ionn" for p in built.plans.values())
    assert built.simulation.run().queries


def test_joint_mode_refuses_user_servers(tmp_path, problem_file):
    users = [{"name": "u", "problem": "p.json", "servers": ["d1"]}]
    with pytest.raises(TiercutError, match="joint mode"):
        build_scenario(load_scenario(_write(tmp_path, {**BASE, "users": users, "upload": {"mode": "joint"}})))


def test_simulate_command(tmp_path, problem_file, capsys):
    from tiercut.cli.simulate_cmd import simulate

    poisson = {"kind": "poisson", "rate_hz": 1}
    users = [{"name": "u", "problem": "p.json"}, {"name": "v", "problem": "p.json", "arrivals": poisson}]
    path = _write(tmp_path, {**BASE, "users": users})
    simulate(path, as_json=True, plot=tmp_path / "out.png", queries=True, progress=False)
    data = json.loads(capsys.readouterr().out)
    assert data["scenario"] == "t"
    assert data["result"]["queries"] == len(data["result"]["query_trace"]) > 0
    assert set(data["analytic"]) == {"u", "v"}
    assert (tmp_path / "out.png").stat().st_size > 1000
    simulate(path, as_json=False, plot=None, queries=False, progress=True)
    out = capsys.readouterr().out
    assert "events/s" in out and "mean delay" in out
    with pytest.raises(TiercutError, match="must end in"):
        simulate(path, as_json=False, plot=tmp_path / "out.txt", queries=False, progress=False)


def test_upload_command_prints_the_contract(tmp_path, capsys):
    from tiercut.cli.upload_cmd import upload
    from tiercut.graph import extract_graph

    graph = extract_graph("fixtures_models:tiny_net", (1, 3, 8, 8))
    table = {n.name: {"phone": 2e-3 + n.flops / 5e6, "box": 1e-4 + n.flops / 1e9} for n in graph if not n.is_input}
    (tmp_path / "table.json").write_text(json.dumps(table))
    env = {
        "schema_version": 1,
        "name": "pair",
        "devices": [{"name": "phone", "tier": "end"}, {"name": "box", "tier": "edge"}],
        "links": [{"a": "phone", "b": "box", "bandwidth_bytes_per_s": 2.0e4}],
    }
    (tmp_path / "env.yaml").write_text(yaml.safe_dump(env))
    args = dict(model="fixtures_models:tiny_net", env=str(tmp_path / "env.yaml"), input_shape="1,3,8,8",
                compute_table=tmp_path / "table.json", allow_code=True)
    upload(**args, algorithm="ionn", as_json=True, compare=True)
    data = json.loads(capsys.readouterr().out)
    problem = Problem.from_dict(data["problem"])
    plan = UploadPlan.from_dict(data["upload_plan"])
    check_upload_plan(problem, plan)  # anyone can recompute it from the problem alone
    assert plan.algorithm == "ionn" and plan.server == "box"
    assert set(data["compare"]) == {"direct", "efficiency", "recursive-efficiency"}
    upload(**args, algorithm="recursive-efficiency", plot=tmp_path / "u.png")
    out = capsys.readouterr().out
    assert "time for" in out and (tmp_path / "u.png").exists()
    upload(list_planners=True)
    assert "recursive-efficiency" in capsys.readouterr().out
    with pytest.raises(TiercutError, match="needs a MODEL"):
        upload()
    with pytest.raises(TiercutError, match="not known"):
        upload(**args, algorithm="nope")
    with pytest.raises(TiercutError, match="must end in"):
        upload(**args, plot=tmp_path / "u.txt")
    with pytest.raises(TiercutError, match="no setting"):
        upload(**args, setting=["speed=3"])
