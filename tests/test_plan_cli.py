"""``tiercut plan`` / ``tiercut compare``: tables, the JSON contract, --list, user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from tiercut.cli import plan_cmd
from tiercut.cost import evaluate
from tiercut.errors import TiercutError
from tiercut.plan import PLANNERS
from tiercut.problem import METRICS, Plan, Problem

MODEL = "fixtures_models:tiny_net"
USER_CODE = (MODEL, "--allow-code")  # a factory of the tests' own code needs --allow-code
SHAPE = "1,3,8,8"
NODES = ("conv", "relu", "left", "right", "add", "flatten", "fc")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("plan")(plan_cmd.plan)
    app.command("compare")(plan_cmd.compare)
    return app


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    env = {
        "name": "lab",
        "devices": [
            {"name": "phone", "tier": "end", "power_compute_w": 3.0, "power_tx_w": 1.5, "power_rx_w": 1.0,
             "power_idle_w": 0.2, "memory_bytes": 10_000_000},
            {"name": "edge", "tier": "edge", "power_compute_w": 30.0, "price_per_s": 1e-4},
            {"name": "cloud", "tier": "cloud", "power_compute_w": 100.0, "price_per_s": 1e-3},
        ],
        "links": [{"tiers": ["end", "edge"], "bandwidth_bytes_per_s": 2.0e6, "latency_s": 0.002},
                  {"tiers": ["end", "cloud"], "bandwidth_bytes_per_s": 5.0e5, "latency_s": 0.03},
                  {"tiers": ["edge", "cloud"], "bandwidth_bytes_per_s": 1.0e7, "latency_s": 0.01}],
        "users": [{"name": "me", "device": "phone", "model": MODEL}],
    }
    env_path = tmp_path / "lab.yaml"
    env_path.write_text(yaml.safe_dump(env))
    table = {n: {"phone": 0.02, "edge": 0.004, "cloud": 0.001} for n in NODES}
    table["fc"] = {"phone": 0.2, "edge": 0.02, "cloud": 0.002}
    table_path = tmp_path / "times.json"
    table_path.write_text(json.dumps(table))
    return {"env": env_path, "table": table_path}


def run(*args: str):
    return CliRunner().invoke(_app(), list(args))


def test_plan_json_contract_recomputes(files):
    result = run("plan", *USER_CODE, "--input-shape", SHAPE, "--env", str(files["env"]), "--compute-table", str(files["table"]),
                 "--algorithm", "ilp", "--objective", "energy_source", "--latency-budget", "1.0", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    problem = Problem.from_dict(data["problem"])
    plan = Plan.from_dict(data["plan"])
    assert data["problem"]["source"] == "phone"
    assert data["problem"]["constraints"]["latency_budget_s"] == 1.0
    assert {d["name"] for d in data["problem"]["devices"]} == {"phone", "edge", "cloud"}
    assert plan.algorithm == "ilp" and plan.optimal
    ev = evaluate(problem, plan.placement)
    for metric in METRICS:
        assert ev.metric(metric) == pytest.approx(plan.metric(metric), rel=1e-9)


def test_plan_table_compares_with_baselines(files):
    result = run("plan", *USER_CODE, "--input-shape", SHAPE, "--env", str(files["env"]), "--compute-table", str(files["table"]),
                 "--algorithm", "dp")
    assert result.exit_code == 0, result.output
    for text in ("dp placement", "local", "all on cloud", "latency vs plan", "conv", "fc"):
        assert text in result.output
    assert "x slower" in result.output  # a baseline slower than the optimal plan is said to be slower
    assert "speed-up" not in result.output


def test_plan_settings_pins_and_privacy(files):
    result = run("plan", *USER_CODE, "--input-shape", SHAPE, "--env", str(files["env"]), "--compute-table", str(files["table"]),
                 "--algorithm", "mincut", "--set", "server=edge", "--private-layers", "2", "--pin", "fc=phone", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    placement = data["plan"]["placement"]
    assert placement["conv"] == placement["relu"] == placement["fc"] == "phone"
    assert set(placement.values()) <= {"phone", "edge"}
    assert data["plan"]["settings"] == {"server": "edge"}


def test_plan_list():
    result = run("plan", "--list")
    assert result.exit_code == 0
    for name in PLANNERS:
        assert name in result.output


def test_compare_runs_every_applicable_planner(files):
    result = run("compare", *USER_CODE, "--input-shape", SHAPE, "--env", str(files["env"]),
                 "--compute-table", str(files["table"]), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for name in ("local", "all-on", "neurosurgeon", "mincut", "shortest-path", "dp", "ilp"):
        assert name in data["plans"]
    best = min(p["objective_value"] for p in data["plans"].values() if p["feasible"])
    assert data["plans"]["ilp"]["objective_value"] == pytest.approx(best)
    table = run("compare", *USER_CODE, "--input-shape", SHAPE, "--env", str(files["env"]), "--compute-table", str(files["table"]),
                "--algorithms", "local,ilp")
    assert table.exit_code == 0 and "ilp" in table.output and "vs best" in table.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("plan",), "needs a MODEL"),
        (("plan", *USER_CODE, "--algorithm", "magic"), "not known"),
        (("plan", *USER_CODE, "--set", "oops"), "name=value"),
        (("plan", *USER_CODE, "--objective", "speed"), "objective 'speed'"),
        (("plan", *USER_CODE, "--pin", "conv"), "NODE=DEVICE"),
        (("plan", *USER_CODE, "--private-layers", "99"), "exceeds"),
        (("plan", *USER_CODE, "--source", "watch"), "source 'watch'"),
        (("plan", *USER_CODE, "--granularity", "atoms"), "granularity"),
        (("plan", *USER_CODE, "--latency-budget", "-1"), "latency_budget_s"),
        (("compare", *USER_CODE, "--algorithms", "local,magic"), "not known"),
    ],
)
def test_user_errors_are_tiercut_errors(files, args, message):
    base = ["--input-shape", SHAPE, "--env", str(files["env"]), "--compute-table", str(files["table"])]
    if args == ("plan",):
        base = []
    result = run(*args, *base)
    assert isinstance(result.exception, TiercutError), result.output
    assert message in str(result.exception)


def test_bad_compute_tables(files, tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    result = run("plan", *USER_CODE, "--input-shape", SHAPE, "--env", str(files["env"]), "--compute-table", str(bad))
    assert isinstance(result.exception, TiercutError) and "node -> device -> seconds" in str(result.exception)
    bad.write_text("{")
    result = run("plan", *USER_CODE, "--input-shape", SHAPE, "--env", str(files["env"]), "--compute-table", str(bad))
    assert isinstance(result.exception, TiercutError) and "not valid JSON" in str(result.exception)
    missing = tmp_path / "no.json"
    result = run("plan", *USER_CODE, "--input-shape", SHAPE, "--env", str(files["env"]), "--compute-table", str(missing))
    assert isinstance(result.exception, TiercutError) and "cannot read" in str(result.exception)
