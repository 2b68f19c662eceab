"""``tiercut exits add|show`` and ``tiercut plan --exits`` (issue 15, item 4)."""

from __future__ import annotations

import json

import pytest

from exits_cli_fixtures import CNN, add_exits, run
from tiercut.cli.exits_cmd import parse_duration
from tiercut.errors import TiercutError
from tiercut.exits.cost import ExitPlan, ExitProblem, check_exit_plan

# every test but the last trains an exits file once (imports sklearn, torch.optim: seconds)
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def exits_file(tmp_path_factory):
    return add_exits(tmp_path_factory.mktemp("exits"), epochs=1)


@slow
def test_exits_add_writes_the_file_and_weights(exits_file, capsys):
    assert exits_file.with_suffix(".safetensors").is_file()
    data = json.loads(exits_file.read_text())
    assert data["kind"] == "tiercut-exits" and [e["name"] for e in data["exits"]] == ["exit1", "exit2", "final"]
    code, out, _ = run(capsys, "exits", "show", str(exits_file))
    assert code == 0 and "exit1" in out and "overall accuracy with early exits" in out


@slow
def test_plan_with_exits_json_recomputes(exits_file, capsys):
    code, out, _ = run(capsys, "plan", CNN, "--exits", str(exits_file), "--env", "three-tier", "--latency-slo", "50ms",
                       "--json")
    assert code == 0
    data = json.loads(out)
    ep = ExitProblem.from_dict(data["problem"])
    plan = ExitPlan.from_dict(data["plan"])
    assert ep.latency_slo_s == pytest.approx(0.05)
    assert check_exit_plan(ep, plan) == []
    assert plan.algorithm == "edgent" and plan.feasible and plan.latency_s <= 0.05
    assert {"exit", "accuracy", "latency_s"} <= set(plan.candidates[0])  # the accuracy-latency curve


@slow
def test_plan_with_exits_ddnn_and_accuracy_floor(exits_file, capsys):
    code, out, _ = run(capsys, "plan", CNN, "--exits", str(exits_file), "--env", "three-tier", "--algorithm", "ddnn",
                       "--accuracy-min", "0.1")
    assert code == 0
    assert "ddnn with exits" in out and "accuracy-latency curve" in out and "exit rates" in out


@slow
def test_impossible_slo_exits_1_with_the_reason(exits_file, capsys):
    code, out, _ = run(capsys, "plan", CNN, "--exits", str(exits_file), "--env", "three-tier", "--latency-slo", "1us")
    assert code == 1
    assert "no exit point meets the latency SLO 0.001 ms" in out and "feasible NO" in out


@slow
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--latency-slo", "fast"], "is not a duration"),
        (["--accuracy-min", "1.5"], "within 0..1"),
        (["--algorithm", "greedy"], "plans with edgent or ddnn"),
    ],
)
def test_bad_plan_options_are_one_line_errors(exits_file, capsys, extra, message):
    code, _, err = run(capsys, "plan", CNN, "--exits", str(exits_file), "--env", "three-tier", *extra)
    assert code == 2 and message in err and "Traceback" not in err


@slow
def test_other_user_mistakes(exits_file, tmp_path, capsys):
    code, _, err = run(capsys, "plan", "resnet18", "--exits", str(exits_file), "--env", "three-tier")
    assert code == 2 and "was made for model" in err
    code, _, err = run(capsys, "plan", CNN, "--input-shape", "1,1,8,8", "--env", "three-tier", "--latency-slo", "5ms")
    assert code == 2 and "give the exits with --exits FILE" in err
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"kind": "graph"}')
    code, _, err = run(capsys, "exits", "show", str(bogus))
    assert code == 2 and "not an exits file" in err
    code, _, err = run(capsys, "exits", "add", CNN, "--after", "nope", "--out", str(tmp_path / "x.json"), "--epochs", "1")
    assert code == 2 and "'nope' is not a layer" in err
    assert not (tmp_path / "x.json").exists()
    code, _, err = run(capsys, "exits", "add", CNN, "--after", "_1", "--out", str(tmp_path / "no" / "x.json"))
    assert code == 2 and "does not exist" in err


def test_parse_duration():
    assert parse_duration("50ms") == pytest.approx(0.05)
    assert parse_duration("0.2s") == pytest.approx(0.2)
    assert parse_duration("200us") == pytest.approx(2e-4)
    assert parse_duration("1.5") == pytest.approx(1.5)
    for bad in ("", "-5ms", "0ms", "5 parsecs"):
        with pytest.raises(TiercutError):
            parse_duration(bad)


def test_report_reads_exit_plans_and_names_a_malformed_one():
    from tiercut.report.inputs import read_result, recognise

    assert recognise({"problem": {"exits": {}}, "plan": {}}) == "exit-plan"
    with pytest.raises(TiercutError, match="the result"):
        read_result({"problem": {"exits": {}}, "plan": {}})
