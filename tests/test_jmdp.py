"""The joint partition + allocation planner (JMDP / JPDRA, tiercut.plan.jmdp)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocation_fixtures import random_multi_problem
from tiercut.cost import evaluate_users
from tiercut.errors import TiercutError
from tiercut.plan import get_planner, plan
from tiercut.problem import Objective


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_users=st.integers(2, 3), aggregate=st.sampled_from(["mean", "max"]))
def test_never_worse_than_equal_sharing(seed, n_users, aggregate):
    """JMDP's plan is never worse than best response under equal shares, and its convergence never rises."""
    problem = random_multi_problem(random.Random(seed), n_users, n_nodes=3, objective=Objective("latency", {}, aggregate))
    equal = plan(problem, "best-response")
    joint = plan(problem, "jmdp")
    assert joint.shares is not None
    if equal.feasible:
        assert joint.feasible
        assert joint.objective_value <= equal.objective_value * (1 + 1e-9)
    # equal shares of jmdp's own placements are no better than its chosen shares
    assert joint.objective_value <= evaluate_users(problem, joint.placements).objective_value * (1 + 1e-9)
    conv = joint.convergence
    assert len(conv) >= 2
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(conv))
    assert conv[-1] == pytest.approx(joint.objective_value, rel=1e-9)


def test_convergence_is_reported():
    problem = random_multi_problem(random.Random(3), 3, n_nodes=4)
    result = plan(problem, "jmdp")
    assert "rounds" in result.note and "objective per round" in result.note
    assert ("converged" in result.note) or ("max_rounds" in result.note)
    one = plan(problem, "jmdp", max_rounds=1)
    assert len(one.convergence) == 2


def test_bad_settings_are_one_line_errors():
    problem = random_multi_problem(random.Random(1), 2, n_nodes=3)
    with pytest.raises(TiercutError, match="start='sideways'"):
        get_planner("jmdp", start="sideways").solve_multi(problem)
    with pytest.raises(TiercutError, match="max_rounds=0"):
        get_planner("jmdp", max_rounds=0).solve_multi(problem)
    with pytest.raises(TiercutError, match="inner planner 'nope'"):
        get_planner("jmdp", inner="nope").solve_multi(problem)
    with pytest.raises(TiercutError, match="multi-user problems only"):
        get_planner("jmdp").solve(problem.users[0].problem)
