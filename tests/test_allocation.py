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
    """Min-max latency (bisection or the Perron eigenvector) against trust-constr from the equal shares."""
    problem, placements = _instance(seed, n_users, Objective("latency", {}, "max"), servers_only=seed % 2 == 0)
    alloc = allocate(problem, placements)
    assert alloc.method in ("bisection", "perron", "equal")
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


# ---------------------------------------------------------------- min-max latency over several shared resources
def _synthetic_terms(data, n_users: int, n_resources: int, one_each: bool = False, idle: float = 0.1):
    """Random affine terms: user i uses random resources (``one_each``: one resource each); a slope is 0 (no work
    on a resource the user touches) with probability ``idle``."""
    from tiercut.cost.allocation import ShareTerms
    from tiercut.problem import METRICS

    rng = np.random.default_rng(data.draw(st.integers(0, 2**31), label="seed"))
    if one_each:
        uses = np.zeros((n_users, n_resources), dtype=bool)
        uses[np.arange(n_users), rng.integers(0, n_resources, n_users)] = True
    else:
        uses = rng.random((n_users, n_resources)) < 0.6
        uses[np.arange(n_users), rng.integers(0, n_resources, n_users)] = True
    scale = 10.0 ** rng.uniform(-3, 1, (n_users, n_resources))
    slope = np.where(uses & (rng.random(uses.shape) >= idle), scale, 0.0)
    constant = 10.0 ** rng.uniform(-3, 0, n_users) * (rng.random(n_users) > 0.2)
    zeros = np.zeros(n_users)
    terms = ShareTerms(tuple(f"u{i}" for i in range(n_users)), tuple(("device", f"r{j}") for j in range(n_resources)),
                       uses, {m: (constant if m == "latency" else zeros) for m in METRICS},
                       {m: (slope if m == "latency" else np.zeros_like(slope)) for m in METRICS})
    return terms


class _MaxLatency:
    objective = Objective("latency", {}, "max")


@pytest.mark.slow
@FAST
@given(data=st.data(), n_users=st.integers(2, 6), n_resources=st.integers(1, 4), idle=st.sampled_from([0.0, 0.15]))
def test_perron_shares_are_min_max_optimal(data, n_users, n_resources, idle):
    """The eigenvector allocation: feasible, no worse than SLSQP's epigraph program or any random feasible
    shares, and every group of users linked by shared resources ends at one common latency. A user with no
    work on a resource keeps a floor share of 1e-6 of the largest there, which costs the others up to that."""
    from scipy.sparse.csgraph import connected_components

    from tiercut.cost.allocation import _perron_shares

    terms = _synthetic_terms(data, n_users, n_resources, idle=idle)
    rtol = 1e-9 if idle == 0.0 else 1e-5
    S = _perron_shares(terms)
    assert np.all(S[terms.uses] > 0) and np.all(S.sum(axis=0) <= 1 + 1e-12)
    lat = terms.metrics(S)["latency"]
    best = objective_of(_MaxLatency, terms, S)
    other = objective_of(_MaxLatency, terms, numerical_shares(_MaxLatency, terms, "SLSQP"))
    assert best <= other * (1 + max(rtol, 1e-8))
    rng = np.random.default_rng(0)
    for _ in range(20):
        R = np.where(terms.uses, rng.uniform(0.01, 1.0, terms.uses.shape), 0.0)
        R = np.where(terms.contended[None, :], R / np.maximum(R.sum(axis=0, keepdims=True), 1e-300), terms.uses)
        assert best <= objective_of(_MaxLatency, terms, R) * (1 + rtol)
    a = np.where(terms.uses & terms.contended[None, :], terms.slope["latency"], 0.0)
    working = np.nonzero(a.sum(axis=1) > 0)[0]
    if working.size:
        linked = (np.sqrt(a) @ np.sqrt(a).T)[np.ix_(working, working)] > 0
        _, label = connected_components(linked, directed=False)
        for g in set(label.tolist()):
            group = lat[working[label == g]]
            assert group.max() == pytest.approx(group.min(), rel=rtol)


@FAST
@given(data=st.data(), n_users=st.integers(2, 6), n_resources=st.integers(1, 3))
def test_perron_is_the_bisection_with_one_resource_each(data, n_users, n_resources):
    from tiercut.cost.allocation import _bisection_shares, _perron_shares

    terms = _synthetic_terms(data, n_users, n_resources, one_each=True, idle=0.0)
    lat_p = terms.metrics(_perron_shares(terms))["latency"]
    lat_b = terms.metrics(_bisection_shares(terms))["latency"]
    assert lat_p == pytest.approx(lat_b, rel=1e-9)


def test_max_latency_uses_the_eigenvector_when_users_share_two_resources():
    """Random placements where some user competes on two resources: method perron, matching trust-constr."""
    checked = 0
    for seed in range(30):
        problem, placements = _instance(seed, 3, Objective("latency", {}, "max"))
        terms = share_terms(problem, placements)
        if (terms.uses & terms.contended[None, :]).sum(axis=1).max(initial=0) < 2:
            continue
        checked += 1
        alloc = allocate(problem, placements)
        assert alloc.method in ("perron", "equal")
        assert check_allocation(problem, placements, alloc) < 1e-9
        other = objective_of(problem, alloc.terms, numerical_shares(problem, alloc.terms, "trust-constr"))
        assert alloc.objective_value <= other * (1 + 1e-6)
        if checked == 2:
            break
    assert checked == 2


def test_square_root_shares_as_gps_weights_favour_the_long_job():
    """Why the mean's optimal static shares can lose to plain processor sharing when executed work-conserving
    (benchmarks/allocation.py, docs/cost-model.md): jobs of 1 s and 4 s on one server, both present at 0."""
    from tiercut.cost.allocation import ShareTerms, closed_form_shares
    from tiercut.problem import METRICS
    from tiercut.sim.core import SharedResource, SimEnvironment

    def finish(weights):
        env = SimEnvironment()
        server = SharedResource(env, "server", 1.0)
        done = {}
        for name, work, weight in (("short", 1.0, weights[0]), ("long", 4.0, weights[1])):
            server.submit(work, lambda name=name: done.setdefault(name, env.now), weight)
        env.run()
        return done["short"], done["long"]

    uses = np.ones((2, 1), dtype=bool)
    slope = np.array([[1.0], [4.0]])
    terms = ShareTerms(("short", "long"), (("device", "server"),), uses, {m: np.zeros(2) for m in METRICS},
                       {m: slope for m in METRICS})
    shares = closed_form_shares(terms, slope)[:, 0]
    assert shares == pytest.approx([1 / 3, 2 / 3])
    assert terms.metrics(shares[:, None])["latency"] == pytest.approx([3.0, 6.0])  # the static model: mean 4.5 s
    assert finish(shares) == pytest.approx((3.0, 5.0))  # GPS with those weights: mean 4 s
    assert finish((1.0, 1.0)) == pytest.approx((2.0, 5.0))  # plain processor sharing: mean 3.5 s
