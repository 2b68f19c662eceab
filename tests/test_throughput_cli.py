"""``tiercut plan --objective throughput [--latency-max-s X]`` and ``tiercut plan --models a,b --rates x,y``."""

from __future__ import annotations

import json

import pytest

from test_plan_cli import SHAPE, USER_CODE, files, run  # noqa: F401  (files is a fixture)
from tiercut.cost import evaluate
from tiercut.cost.joint import evaluate_joint
from tiercut.errors import TiercutError
from tiercut.problem import JointPlan, JointProblem, Plan, Problem

MODEL = USER_CODE[0]


def base(files) -> list[str]:  # noqa: F811
    return ["--input-shape", SHAPE, "--env", str(files["env"]), "--compute-table", str(files["table"])]


def test_plan_throughput_json_recomputes_and_keeps_the_latency_bound(files):  # noqa: F811
    unbounded = run("plan", *USER_CODE, *base(files), "--objective", "throughput", "--json")
    assert unbounded.exit_code == 0, unbounded.output
    free = json.loads(unbounded.output)["plan"]
    fastest = json.loads(run("plan", *USER_CODE, *base(files), "--objective", "latency", "--json").output)["plan"]
    assert fastest["latency_s"] < free["latency_s"]  # here the throughput optimum costs latency
    bound = fastest["latency_s"] * 1.05
    result = run("plan", *USER_CODE, *base(files), "--objective", "throughput", "--latency-max-s", str(bound), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    problem, plan = Problem.from_dict(data["problem"]), Plan.from_dict(data["plan"])
    assert data["problem"]["objective"]["kind"] == "throughput"
    assert data["problem"]["constraints"]["latency_budget_s"] == bound
    ev = evaluate(problem, plan.placement)
    assert plan.bottleneck_s == pytest.approx(ev.bottleneck_s) and plan.objective_value == pytest.approx(ev.bottleneck_s)
    assert plan.optimal and plan.latency_s <= bound * (1 + 1e-9)
    assert plan.bottleneck_s >= free["bottleneck_s"] * (1 - 1e-9)  # the bound can only cost throughput
    truth = run("plan", *USER_CODE, *base(files), "--objective", "throughput", "--latency-max-s", str(bound),
                "--algorithm", "brute-force", "--json")
    assert plan.bottleneck_s == pytest.approx(json.loads(truth.output)["plan"]["bottleneck_s"], rel=1e-9)


def test_plan_throughput_table_shows_the_throughput_column(files):  # noqa: F811
    result = run("plan", *USER_CODE, *base(files), "--objective", "throughput")
    assert result.exit_code == 0, result.output
    assert "throughput" in result.output and "/s" in result.output and "bottleneck stage" in result.output


def test_plan_models_jointly_json_recomputes(files):  # noqa: F811
    result = run("plan", "--models", f"{MODEL},{MODEL}", "--rates", "10,5", "--allow-code", *base(files), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    problem, plan = JointProblem.from_dict(data["problem"]), JointPlan.from_dict(data["plan"])
    assert [m.query_rate_hz for m in problem.models] == [10.0, 5.0]
    assert [m.name for m in problem.models] == [MODEL, f"{MODEL}#2"]
    assert plan.algorithm == "joint-ilp" and problem.objective.kind == "throughput"
    ev = evaluate_joint(problem, plan.placements)
    assert plan.max_utilisation == pytest.approx(ev.max_utilisation)
    table = run("plan", "--models", f"{MODEL},{MODEL}", "--rates", "10,5", "--allow-code", *base(files),
                "--objective", "latency", "--algorithm", "independent")
    assert table.exit_code == 0, table.output
    assert "independent (each alone)" in table.output and "max utilisation" in table.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--models", f"{MODEL},{MODEL}", "--rates", "10"), "one rate per model"),
        (("--models", f"{MODEL}", "--rates", "-1"), "rate > 0"),
        (("--models", f"{MODEL}", "--rates", "fast"), "not a number"),
        (("--models", f"{MODEL},"), "comma-separated"),
        (("--rates", "1"), "give --models too"),
        (("--models", MODEL, "--objective", "cost"), "throughput or latency"),
        (("--models", MODEL, "--algorithm", "magic"), "not known"),
        (("--models", MODEL, "--pin", "conv=phone"), "--pin"),
        ((MODEL, "--models", MODEL), "not also as MODEL"),
        ((MODEL, "--objective", "throughput", "--latency-max-s", "1", "--latency-budget", "1"), "give one of them"),
        ((MODEL, "--objective", "throughput", "--algorithm", "mincut"), "throughput objective"),
    ],
)
def test_throughput_and_joint_user_errors_are_one_line(files, args, message):  # noqa: F811
    result = run("plan", *args, "--allow-code", *base(files))
    assert isinstance(result.exception, TiercutError), result.output
    assert message in str(result.exception)
    assert "\n" not in str(result.exception)
