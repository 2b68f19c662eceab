"""A layer graph JSON or a problem JSON wherever a model is: planned as data, refused where the model must run."""

from __future__ import annotations

import json

import pytest

from tiercut.cli import main

TINY = ["fixtures_models:tiny_net", "--allow-code", "--input-shape", "1,3,8,8"]


def _json(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _fails(argv, capsys, message):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    return err


@pytest.fixture
def files(tmp_path, capsys):
    graph = _json(["graph", *TINY, "--json"], capsys)
    planned = _json(["plan", *TINY, "--env", "three-tier", "--algorithm", "mincut", "--json"], capsys)
    (tmp_path / "graph.json").write_text(json.dumps(graph))
    (tmp_path / "problem.json").write_text(json.dumps(planned))
    (tmp_path / "bare-problem.json").write_text(json.dumps(planned["problem"]))
    return tmp_path, graph, planned


def test_a_foreign_problem_is_planned_as_it_is(files, capsys):
    tmp_path, _, planned = files
    problem = planned["problem"]
    # make it foreign: the edge becomes 1000x slower in the problem's own compute table
    for row in problem["compute_s"].values():
        if "edge" in row:
            row["edge"] *= 1000
    (tmp_path / "foreign.json").write_text(json.dumps({"problem": problem}))
    again = _json(["plan", str(tmp_path / "foreign.json"), "--algorithm", "brute-force", "--json"], capsys)
    assert again["problem"]["compute_s"] == problem["compute_s"]
    assert again["problem"]["devices"] == problem["devices"] and again["problem"]["source"] == problem["source"]
    assert "edge" not in set(again["plan"]["placement"].values())


def test_a_bare_problem_object_and_an_objective_override(files, capsys):
    tmp_path, _, planned = files
    data = _json(["plan", str(tmp_path / "bare-problem.json"), "--objective", "energy_source", "--json"], capsys)
    assert data["problem"]["objective"]["kind"] == "energy_source"
    assert data["problem"]["compute_s"] == planned["problem"]["compute_s"]


def test_a_problem_json_with_env_replans_its_graph_there(files, capsys):
    tmp_path, _, planned = files
    data = _json(["plan", str(tmp_path / "problem.json"), "--env", "neurosurgeon-wifi", "--json"], capsys)
    assert {d["name"] for d in data["problem"]["devices"]} != {d["name"] for d in planned["problem"]["devices"]}
    assert [n["name"] for n in data["problem"]["nodes"]] == [n["name"] for n in planned["problem"]["nodes"]]


def test_a_graph_json_plans_without_the_model(files, capsys):
    tmp_path, graph, planned = files
    data = _json(["plan", str(tmp_path / "graph.json"), "--env", "three-tier", "--algorithm", "mincut", "--json"], capsys)
    assert data["problem"]["nodes"] == graph["nodes"]
    assert data["plan"]["latency_s"] == pytest.approx(planned["plan"]["latency_s"], rel=0.5)


def test_graph_and_compare_take_a_problem_json(files, capsys):
    tmp_path, graph, _ = files
    assert _json(["graph", str(tmp_path / "problem.json"), "--json"], capsys)["nodes"] == graph["nodes"]
    data = _json(["compare", str(tmp_path / "problem.json"), "--algorithm", "mincut,local", "--json"], capsys)
    assert set(data["plans"]) == {"mincut", "local"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "FILE/graph.json"], "run executes the model itself"),
        (["profile", "FILE/graph.json"], "needs the real model"),
        (["run", "FILE/problem.json"], "holds only its graph"),
        (["plan", "FILE/problem.json", "--source", "cloud"], "has source 'end'"),
        (["plan", "FILE/problem.json", "--compute-table", "x.json"], "holds its own compute times"),
        (["plan", "FILE/problem.json", "--private-layers", "2"], "--private-layers applies"),
        (["plan", "FILE/graph.json", "--input-shape", "1,3,8,8"], "drop the input shape"),
    ],
)
def test_commands_that_need_the_real_model_say_so(files, argv, message, capsys):
    tmp_path, _, _ = files
    _fails([a.replace("FILE", str(tmp_path)) for a in argv], capsys, message)


def test_a_json_that_is_neither_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    _fails(["plan", str(tmp_path / "x.json"), "--env", "three-tier"], capsys, "layer graph")
    (tmp_path / "broken.json").write_text("{")
    _fails(["plan", str(tmp_path / "broken.json")], capsys, "broken.json")
