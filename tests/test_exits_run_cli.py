"""``tiercut run MODEL --exits FILE`` on real workers and ``tiercut simulate SCENARIO --exits FILE`` (issue 15)."""

from __future__ import annotations

import json

import pytest

from exits_cli_fixtures import CNN, add_exits, run

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def exits_file(tmp_path_factory):
    return add_exits(tmp_path_factory.mktemp("exits"), epochs=2)


@slow
def test_run_with_exits_measures_rates_accuracy_and_latency_on_workers(exits_file, capsys, tmp_path):
    out = tmp_path / "run.json"
    code, text, err = run(capsys, "run", CNN, "--exits", str(exits_file), "--env", "three-tier", "--algorithm", "ddnn",
                          "--queries", "30", "--no-emulate-links", "--out", str(out))
    assert code == 0, err
    assert "planned rate" in text and "accuracy planned" in text and "answers equal to the exit heads' outputs" in text
    data = json.loads(out.read_text())
    measured, plan = data["measured"], data["plan"]
    assert measured["active"] == plan["active_exits"] and measured["queries"] >= 25
    assert measured["answers_match"] == measured["queries"] and measured["fallbacks"] == 0
    assert measured["planned_exit_rates"] == pytest.approx(plan["exit_rates"])
    for p, m, se in zip(measured["planned_exit_rates"], measured["measured_exit_rates"], measured["standard_errors"],
                        strict=True):
        assert abs(p - m) <= 4 * se + 2 / measured["queries"]  # sampling error of the first digits against all 450
    assert abs(measured["measured_accuracy"] - measured["planned_accuracy"]) <= 0.15
    assert measured["measured_latency_s"] > 0
    queries = [q for q in data["run"]["queries"] if q["stage"] == 1]
    assert {q["exit"] for q in queries} <= set(plan["active_exits"])
    # a query answered on the end device sent no tensor anywhere
    local_exit = plan["active_exits"][0]
    placement = plan["placement"]
    if all(d == "end" for d in placement.values() if d):
        pytest.skip("the plan is all on the end device")
    for q in queries:
        if q["exit"] == local_exit and q["transfers"] == []:
            assert q["bytes_sent"] == 0


@slow
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--latency-slo", "fast"], "is not a duration"),
        (["--algorithm", "greedy"], "plans with edgent or ddnn"),
        (["--queries", "0"], "--queries 0 must be >= 1"),
        (["--latency-slo", "1us"], "nothing to run"),
    ],
)
def test_run_with_exits_bad_input(exits_file, capsys, extra, message):
    code, _, err = run(capsys, "run", CNN, "--exits", str(exits_file), "--env", "three-tier", "--no-emulate-links", *extra)
    assert code in (1, 2) and message in err and "Traceback" not in err


@slow
def test_run_with_exits_other_mistakes(exits_file, capsys, tmp_path):
    code, _, err = run(capsys, "run", CNN, "--exits", str(tmp_path / "missing.json"), "--env", "three-tier")
    assert code == 2 and "missing.json" in err and "Traceback" not in err
    code, _, err = run(capsys, "run", "resnet18", "--exits", str(exits_file), "--env", "three-tier")
    assert code == 2 and "was made for model" in err
    lone = tmp_path / "lone.exits.json"
    lone.write_text(exits_file.read_text())  # its weights are not beside it
    code, _, err = run(capsys, "run", CNN, "--exits", str(lone), "--env", "three-tier")
    assert code == 2 and "weights" in err and "missing" in err
    code, _, err = run(capsys, "run", CNN, "--env", "three-tier", "--accuracy-min", "0.9")
    assert code == 2 and "give the exits with --exits FILE" in err


def _scenario(tmp_path, body: str):
    path = tmp_path / "s.yaml"
    path.write_text("schema_version: 1\nname: exits\n" + body)
    return path


@slow
def test_simulate_with_exits(exits_file, capsys, tmp_path):
    scenario = _scenario(tmp_path, """environment: three-tier
upload: {offloading: ddnn}
users:
  - {name: u, device: end, max_queries: 3000, arrivals: {kind: back-to-back}}
""")
    code, out, err = run(capsys, "simulate", str(scenario), "--exits", str(exits_file), "--json")
    assert code == 0, err
    data = json.loads(out)
    sim = data["simulated"]
    assert data["plan"]["algorithm"] == "ddnn" and sim["queries"] == 3000
    for p, m in zip(sim["planned_exit_rates"], sim["exit_rates"], strict=True):
        assert abs(p - m) <= 4 * (p * (1 - p) / 3000) ** 0.5 + 1e-9
    assert sim["mean_latency_s"] == pytest.approx(sim["expected_latency_s"], rel=0.1)
    code, out, _ = run(capsys, "simulate", str(scenario), "--exits", str(exits_file))
    assert code == 0 and "planned rate" in out and "simulated mean" in out


@slow
def test_simulate_with_exits_bad_input(exits_file, capsys, tmp_path):
    two = _scenario(tmp_path, """environment: three-tier
users:
  - {name: a, device: end}
  - {name: b, device: end}
""")
    code, _, err = run(capsys, "simulate", str(two), "--exits", str(exits_file))
    assert code == 2 and "list exactly one" in err
    other = _scenario(tmp_path, """environment: three-tier
users:
  - {name: a, device: end, model: alexnet}
""")
    code, _, err = run(capsys, "simulate", str(other), "--exits", str(exits_file))
    assert code == 2 and "use the same model" in err
    periodic = _scenario(tmp_path, """environment: three-tier
users:
  - {name: a, device: end, arrivals: {kind: periodic, interval_s: 1}}
""")
    code, _, err = run(capsys, "simulate", str(periodic), "--exits", str(exits_file))
    assert code == 2 and "back-to-back or poisson" in err
    code, _, err = run(capsys, "simulate", str(periodic), "--exits", str(tmp_path / "none.json"))
    assert code == 2 and "none.json" in err and "Traceback" not in err
    code, _, err = run(capsys, "simulate", str(periodic), "--exits", str(exits_file), "--plot", str(tmp_path / "p.png"))
    assert code == 2 and "drop them" in err and not (tmp_path / "p.png").exists()
