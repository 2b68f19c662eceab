"""Resource allocation (tiercut.cost.allocation): the shares are optimal, checked against general solvers.

Every instance is a random multi-user problem with random placements; the affine model the allocation
solves is read off the cost model, and the shares' figures are recomputed by ``evaluate_users``.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocation_fixtures import random_multi_problem, random_placements
from tiercut.cost import evaluate_users
from tiercut.cost.allocation import allocate, check_allocation, numerical_shares, objective_of, share_terms
from tiercut.errors import TiercutError
from tiercut.problem import MultiPlan, Objective, Shares

FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _instance(seed: int, n_users: int, objective: Objective, servers_only: bool = False):
    rng = random.Random(seed)
    problem = random_multi_problem(rng, n_users, objective=objective)
    return problem, random_placements(rng, problem, servers_only=servers_only)


@FAST
@given(seed=st.integers(0, 10_000), n_users=st.integers(2, 4))
def test_affine_model_is_the_cost_model(seed, n_users):
    """The figures of random shares by the affine model equal evaluate_users with those shares."""
    problem, placements = _instance(seed, n_users, Objective("weighted", {"latency": 1.0, "energy_total": 0.3}))
    terms = share_terms(problem, placements)
    rng = np.random.default_rng(seed)
    S = np.where(terms.uses, rng.uniform(0.05, 1.0, terms.uses.shape), 0.0)
    S = S / np.maximum(S.sum(axis=0, keepdims=True), 1.0)
    from tiercut.cost.allocation import to_shares

    ev = evaluate_users(problem, placements, to_shares(terms, S))
    fig = terms.metrics(S)
    for i, user in enumerate(terms.users):
        assert ev.users[user].latency_s == pytest.approx(fig["latency"][i], rel=1e-9)
        assert ev.users[user].energy_source_j == pytest.approx(fig["energy_source"][i], rel=1e-9)
        assert ev.users[user].energy_total_j == pytest.approx(fig["energy_total"][i], rel=1e-9)
        assert ev.users[user].cost == pytest.approx(fig["cost"][i], rel=1e-9, abs=1e-15)
    assert ev.objective_value == pytest.approx(objective_of(problem, terms, S), rel=1e-9)


@pytest.mark.slow
@FAST
@given(seed=st.integers(0, 10_000), n_users=st.integers(2, 4),
       objective=st.sampled_from(["latency", "weighted:latency=1,energy_source=0.5", "energy_total"]))
def test_closed_form_is_optimal_for_the_mean(seed, n_users, objective):
    problem, placements = _instance(seed, n_users, Objective.parse(objective, "mean"), servers_only=seed % 2 == 0)
    alloc = allocate(problem, placements)
    assert alloc.method in ("closed-form", "equal")
    assert check_allocation(problem, placements, alloc) < 1e-9
    assert alloc.objective_value <= alloc.equal_objective_value * (1 + 1e-12)
    for method in ("SLSQP", "trust-constr"):
        other = objective_of(problem, alloc.terms, numerical_shares(problem, alloc.terms, method))
        assert alloc.objective_value <= other * (1 + 1e-7), method


@pytest.mark.slow
@FAST
@given(seed=st.integers(0, 10_000), n_users=st.integers(2, 4))
def test_max_latency_allocation_matches_trust_constr(seed, n_users):
    """Min-max latency (bisection or SLSQP) against trust-constr from the equal shares."""
    problem, placements = _instance(seed, n_users, Objective("latency", {}, "max"), servers_only=seed % 2 == 0)
    alloc = allocate(problem, placements)
    assert alloc.method in ("bisection", "slsqp", "equal")
    assert check_allocation(problem, placements, alloc) < 1e-9
    assert alloc.objective_value <= alloc.equal_objective_value * (1 + 1e-12)
    other = objective_of(problem, alloc.terms, numerical_shares(problem, alloc.terms, "trust-constr"))
    assert alloc.objective_value <= other * (1 + 1e-5)


def test_bisection_equalises_the_users_of_one_server():
    """Users each on their own link and one shared server: min-max gives them equal latency (water-filling)."""
    checked = 0
    for seed in range(40):
        problem, placements = _instance(seed, 3, Objective("latency", {}, "max"), servers_only=True)
        last = problem.device_names[-1]
        placements = {u: {n: (d if d == problem.user(u).problem.source else last) for n, d in p.items()}
                      for u, p in placements.items()}
        terms = share_terms(problem, placements)
        if (terms.uses & terms.contended[None, :]).sum(axis=1).max() > 1:
            continue  # some transfer is relayed over a link another user also uses
        checked += 1
        alloc = allocate(problem, placements)
        assert alloc.method == "bisection"
        lat = [f.latency_s for f in evaluate_users(problem, placements, alloc.shares).users.values()]
        assert max(lat) == pytest.approx(min(lat), rel=1e-9)
        assert sum(alloc.shares.devices[last].values()) == pytest.approx(1.0, rel=1e-9)
    assert checked >= 3


def test_sum_closed_form_is_the_square_root_rule():
    problem, placements = _instance(3, 3, Objective("latency", {}, "mean"), servers_only=True)
    alloc = allocate(problem, placements)
    terms = alloc.terms
    for j in np.nonzero(terms.contended)[0]:
        a = terms.slope["latency"][terms.uses[:, j], j]
        if a.min() > 0:
            s = alloc.matrix[terms.uses[:, j], j]
            assert s == pytest.approx(np.sqrt(a) / np.sqrt(a).sum(), rel=1e-12)


def test_equal_method_is_the_equal_share_model():
    problem, placements = _instance(4, 3, Objective("latency", {}, "mean"))
    alloc = allocate(problem, placements, method="equal")
    assert evaluate_users(problem, placements, alloc.shares).objective_value == pytest.approx(
        evaluate_users(problem, placements).objective_value, rel=1e-12)


def test_plan_with_shares_recomputes_from_json():
    problem, placements = _instance(5, 3, Objective("latency", {}, "mean"), servers_only=True)
    alloc = allocate(problem, placements)
    ev = evaluate_users(problem, placements, alloc.shares)
    from tiercut.problem import UserFigures

    mplan = MultiPlan("manual", placements, {u: UserFigures(e.latency_s, e.energy_source_j, e.energy_total_j, e.cost)
                                             for u, e in ev.users.items()},
                      ev.latency_mean_s, ev.latency_max_s, ev.energy_source_j, ev.energy_total_j, ev.cost,
                      ev.objective_value, 0.0, ev.feasible, False, shares=alloc.shares, convergence=(1.0, 0.5))
    data = json.loads(json.dumps({"problem": problem.to_dict(), "plan": mplan.to_dict()}))
    from tiercut.problem import MultiUserProblem

    again = MultiPlan.from_dict(data["plan"])
    assert again.shares == alloc.shares and again.convergence == (1.0, 0.5)
    ev2 = evaluate_users(MultiUserProblem.from_dict(data["problem"]), again.placements, again.shares)
    assert ev2.latency_mean_s == pytest.approx(mplan.latency_mean_s, rel=1e-12)


def test_bad_shares_are_one_line_errors():
    with pytest.raises(TiercutError, match="must be in \\(0, 1\\]"):
        Shares({"d2": {"u0": 0.0}})
    with pytest.raises(TiercutError, match=r"sum to 1\.2, over 1"):
        Shares({"d2": {"u0": 0.6, "u1": 0.6}})
    with pytest.raises(TiercutError, match="resource shares"):
        Shares.from_dict({"devices": [1, 2]})
    problem, placements = _instance(6, 2, Objective("latency", {}, "mean"), servers_only=True)
    server = problem.device_names[-1]
    placements = {u: {n: (d if d == problem.user(u).problem.source else server) for n, d in p.items()}
                  for u, p in placements.items()}
    with pytest.raises(TiercutError, match="no fraction of device 'd3', which it shares"):
        evaluate_users(problem, placements, Shares({server: {"u0": 0.5}}))
    with pytest.raises(TiercutError, match="not a device"):
        evaluate_users(problem, placements, Shares({"gpu9": {"u0": 0.5}}))
    with pytest.raises(TiercutError, match="no user 'bob'"):
        evaluate_users(problem, placements, Shares({server: {"bob": 0.5}}))
    with pytest.raises(TiercutError, match="allocation method 'magic'"):
        allocate(problem, placements, method="magic")
    objective = replace(problem.objective)
    assert objective.aggregate == "mean"


def test_warm_start_and_cache_reach_the_same_optimum():
    """A start from other shares (a neighbour's) and the per-user terms cache change nothing but the work."""
    for seed in range(4):
        problem, placements = _instance(seed, 3, Objective("weighted", {"latency": 1.0, "energy_source": 0.2}, "max"))
        cold = allocate(problem, placements)
        cache: dict = {}
        neighbour = allocate(problem, placements, method="equal").shares
        warm = allocate(problem, placements, start=neighbour, cache=cache)
        assert warm.objective_value == pytest.approx(cold.objective_value, rel=1e-5)
        assert len(cache) == 3
        again = allocate(problem, placements, cache=cache)
        assert again.objective_value == pytest.approx(cold.objective_value, rel=1e-9) and len(cache) == 3
