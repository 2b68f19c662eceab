"""``tiercut plan --users FILE --allocation optimal|equal`` and the jmdp planner from the command line."""

from __future__ import annotations

import json

import pytest

from test_multiuser_cli import USER_CODE, lab  # noqa: F401  (the fixture)
from tiercut.cli import main
from tiercut.cost import evaluate_users
from tiercut.problem import MultiPlan, MultiUserProblem


def _plan(lab, capsys, *extra: str) -> tuple[MultiUserProblem, MultiPlan]:  # noqa: F811
    assert main(["plan", *USER_CODE, "--users", str(lab["users"]), "--env", str(lab["env"]), *extra, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    return MultiUserProblem.from_dict(data["problem"]), MultiPlan.from_dict(data["plan"])


def test_optimal_allocation_is_in_the_plan_json_and_recomputes(lab, capsys):  # noqa: F811
    problem, equal = _plan(lab, capsys, "--algorithm", "best-response", "--allocation", "equal")
    assert equal.shares is None
    _, optimal = _plan(lab, capsys, "--algorithm", "best-response", "--allocation", "optimal")
    assert optimal.shares is not None and optimal.placements == equal.placements
    assert optimal.objective_value <= equal.objective_value * (1 + 1e-12)
    again = evaluate_users(problem, optimal.placements, optimal.shares)
    assert again.latency_mean_s == pytest.approx(optimal.latency_mean_s, rel=1e-12)
    _, joint = _plan(lab, capsys, "--algorithm", "jmdp")
    assert joint.shares is not None and joint.convergence
    assert joint.objective_value <= equal.objective_value * (1 + 1e-9)


def test_allocation_errors_are_one_line(lab, capsys):  # noqa: F811
    base = ["plan", *USER_CODE, "--env", str(lab["env"])]
    assert main([*base, "--users", str(lab["users"]), "--allocation", "fair"]) == 2
    assert "--allocation 'fair' is not known" in capsys.readouterr().err
    assert main([*base, "--allocation", "optimal"]) == 2
    assert "give --users FILE" in capsys.readouterr().err
    assert main([*base, "--users", str(lab["users"]), "--algorithm", "jmdp", "--allocation", "equal"]) == 2
    err = capsys.readouterr().err
    assert "jmdp plans the optimal shares" in err and "Traceback" not in err


def test_human_output_names_the_shares(lab, capsys):  # noqa: F811
    assert main(["plan", *USER_CODE, "--users", str(lab["users"]), "--env", str(lab["env"]), "--algorithm", "jmdp"]) == 0
    assert "optimal resource shares" in capsys.readouterr().out
