"""The multi-user equal-share model: hand example and scalar == vectorised."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cost import compile_users, decode, evaluate, evaluate_users, evaluate_users_many
from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan.synthetic import random_problem
from tiercut.problem import MultiPlan, MultiUserProblem, Objective, Problem, ProblemDevice, UserProblem


def two_users(objective: str = "latency", aggregate: str = "mean") -> MultiUserProblem:
    graph = LayerGraph(
        (Node("x", "input", out_bytes=100), Node("a", "conv2d", ("x",), param_bytes=60, out_bytes=10, is_output=True)),
        model="one-layer",
    )
    devices = (
        ProblemDevice("p1", "end"),
        ProblemDevice("p2", "end"),
        ProblemDevice("srv", "edge", memory_bytes=100),
    )
    links = (Link("p1", "srv", 100.0), Link("p2", "srv", 100.0))
    compute = {"a": {"p1": 2.0, "p2": 2.0, "srv": 0.5}}
    users = tuple(
        UserProblem(name, Problem(graph, devices, links, src, compute, Objective.parse(objective)), 1.0)
        for name, src in (("u1", "p1"), ("u2", "p2"))
    )
    return MultiUserProblem(users, Objective(objective, {}, aggregate), name="two")


def test_equal_share_hand_example():
    mp = two_users()
    alone = evaluate_users(mp, {"u1": {"a": "srv"}, "u2": {"a": "p2"}})
    # u1 alone on the server: 1 s up (100 B at 100 B/s) + 0.5 s + 0.1 s back
    assert alone.users["u1"].latency_s == pytest.approx(1.6)
    assert alone.users["u2"].latency_s == pytest.approx(2.0)
    assert alone.device_users == {"p1": 0, "p2": 1, "srv": 1}
    shared = evaluate_users(mp, {"u1": {"a": "srv"}, "u2": {"a": "srv"}})
    # the server is shared by 2: 1.0 s of compute each; each link has one user
    assert shared.users["u1"].latency_s == pytest.approx(1.0 + 1.0 + 0.1)
    assert shared.latency_mean_s == pytest.approx(2.1)
    assert shared.latency_max_s == pytest.approx(2.1)
    # memory is joint: 60 + 60 > 100
    assert not shared.feasible and "all users" in shared.violations[0]
    assert alone.feasible


def test_shared_link_halves_bandwidth():
    mp = two_users()
    graph = mp.users[0].problem.graph
    devices = mp.devices
    links = (Link("p1", "srv", 100.0), Link("p2", "srv", 100.0), Link("p1", "p2", 100.0))
    compute = {"a": {"p1": 2.0, "p2": 2.0, "srv": 0.5}}
    u1 = Problem(graph, devices, links, "p1", compute)
    u2 = Problem(graph, devices, links, "p2", compute)
    mp2 = MultiUserProblem((UserProblem("u1", u1), UserProblem("u2", u2)))
    ev = evaluate_users(mp2, {"u1": {"a": "p2"}, "u2": {"a": "p1"}})
    # both users use the p1-p2 link: 50 B/s each; p1 and p2 each computed on by one user
    assert ev.link_users == {"p1|p2": 2}
    assert ev.users["u1"].latency_s == pytest.approx(100 / 50 + 2.0 + 10 / 50)


def test_objective_aggregates():
    for aggregate in ("mean", "max"):
        mp = two_users(aggregate=aggregate)
        ev = evaluate_users(mp, {"u1": {"a": "srv"}, "u2": {"a": "p2"}})
        expected = ev.latency_mean_s if aggregate == "mean" else ev.latency_max_s
        assert ev.objective_value == pytest.approx(expected)
    mp = two_users("cost")
    ev = evaluate_users(mp, {"u1": {"a": "srv"}, "u2": {"a": "p2"}})
    assert ev.objective_value == pytest.approx(ev.cost)


def test_multi_user_errors():
    mp = two_users()
    with pytest.raises(TiercutError, match="no placement for user 'u2'"):
        evaluate_users(mp, {"u1": {"a": "srv"}})
    with pytest.raises(TiercutError, match="no user 'u9'"):
        evaluate_users(mp, {"u1": {"a": "srv"}, "u2": {"a": "srv"}, "u9": {}})
    other = replace(mp.users[1].problem, links=())
    with pytest.raises(TiercutError, match="other links"):
        MultiUserProblem((mp.users[0], UserProblem("u2", other)))
    with pytest.raises(TiercutError, match="two users named"):
        MultiUserProblem((mp.users[0], mp.users[0]))


def test_multi_problem_and_plan_json_round_trip():
    from tiercut.plan.base import MultiPlacementResult, make_multi_plan

    mp = two_users()
    assert MultiUserProblem.from_dict(mp.to_dict()).to_dict() == mp.to_dict()
    plan = make_multi_plan(mp, "hand", MultiPlacementResult({"u1": {"a": "srv"}, "u2": {"a": "p2"}}), 0.0, {})
    again = MultiPlan.from_dict(plan.to_dict())
    assert again.latency_mean_s == pytest.approx(plan.latency_mean_s)
    assert again.users["u1"].latency_s == pytest.approx(1.6)


def _users(rng: random.Random, n_users: int, n_devices: int) -> MultiUserProblem:
    base = random_problem(rng, n_nodes=rng.randint(1, 6), n_devices=n_devices, missing_compute=0.2, constraints=False)
    users = []
    for u in range(n_users):
        p = random_problem(rng, n_nodes=rng.randint(1, 6), n_devices=n_devices, missing_compute=0.2)
        src = f"d{u % n_devices}"
        compute = {n: {**row, src: row.get(src, 0.05)} for n, row in p.compute_s.items()}
        users.append(UserProblem(f"u{u}", Problem(p.graph, base.devices, base.links, src, compute, p.objective)))
    objective = rng.choice([Objective("latency", {}, "mean"), Objective("latency", {}, "max"), Objective("energy_total"),
                            Objective("weighted", {"latency": 1.0, "cost": 2.0}, "max")])
    return MultiUserProblem(tuple(users), objective)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), n_users=st.integers(1, 3), n_devices=st.integers(2, 4))
@pytest.mark.slow
def test_multi_user_vectorised_equals_scalar(rng, n_users, n_devices):
    mp = _users(rng, n_users, n_devices)
    cm = compile_users(mp)
    X = np.array([[rng.randrange(n_devices) for _ in range(cm.n_columns)] for _ in range(12)], dtype=np.int64)
    for j, user in enumerate(mp.users):
        cols = [cm.offsets[j] + i for i, n in enumerate(user.problem.graph) if n.is_input]
        X[:, cols] = user.problem.device_index(user.problem.source)
    batch = evaluate_users_many(cm, X)
    for i in range(len(X)):
        parts = cm.split(X[i : i + 1])
        placements = {u.name: decode(u.problem, part[0]) for u, part in zip(mp.users, parts, strict=True)}
        ev = evaluate_users(mp, placements)
        assert bool(batch.valid[i]) == ev.valid
        assert bool(batch.feasible[i]) == ev.feasible
        for j, user in enumerate(mp.users):
            a, b = float(batch.latency_s[i, j]), ev.users[user.name].latency_s
            assert (math.isinf(a) and math.isinf(b)) or a == pytest.approx(b, rel=1e-9)
        if ev.valid:
            assert float(batch.objective[i]) == pytest.approx(ev.objective_value, rel=1e-9)
            assert float(batch.latency_max_s[i]) == pytest.approx(ev.latency_max_s, rel=1e-9)


def test_single_user_multi_model_equals_single_model():
    rng = random.Random(3)
    p = random_problem(rng, n_nodes=6, n_devices=3)
    mp = MultiUserProblem((UserProblem("only", p),), p.objective)
    placement = {n.name: ("d2" if i % 2 else "d0") for i, n in enumerate(p.graph) if not n.is_input}
    single = evaluate(p, placement)
    multi = evaluate_users(mp, {"only": placement})
    assert multi.users["only"].latency_s == pytest.approx(single.latency_s)
    assert multi.energy_total_j == pytest.approx(single.energy_total_j)
