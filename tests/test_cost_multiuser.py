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


# ---------------------------------------------------------------- energy and price of each user's own work
def _identical_users(n: int, price_per_byte: float = 0.0) -> MultiUserProblem:
    """``n`` identical users, each on its own client with its own link, offloading to one server."""
    graph = LayerGraph(
        (Node("x", "input", out_bytes=200), Node("a", "conv2d", ("x",), out_bytes=50, is_output=True)), model="one-layer"
    )
    clients = tuple(ProblemDevice(f"p{i}", "end", power_compute_w=2.0, power_tx_w=1.5, power_rx_w=1.0, power_idle_w=0.25)
                    for i in range(n))
    server = ProblemDevice("srv", "edge", power_compute_w=5.0, power_tx_w=3.0, power_rx_w=2.0, power_idle_w=1.0,
                           price_per_s=0.01)
    links = tuple(Link(f"p{i}", "srv", 100.0, 0.02, price_per_byte=price_per_byte) for i in range(n))
    users = []
    for i in range(n):
        compute = {"a": {f"p{i}": 2.0, "srv": 0.5}}
        users.append(UserProblem(f"u{i}", Problem(graph, (*clients, server), links, f"p{i}", compute)))
    return MultiUserProblem(tuple(users), Objective("energy_total"))


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_identical_users_on_one_server_are_charged_their_own_work(n):
    mp = _identical_users(n, price_per_byte=1e-4)
    ev = evaluate_users(mp, {u.name: {"a": "srv"} for u in mp.users})
    up, down = 0.02 + 200 / 100, 0.02 + 50 / 100
    c = 0.5
    assert ev.device_users["srv"] == n
    for user in mp.users:
        figures = ev.users[user.name]
        # the latency: the server's 1/n of its speed; the energy and price: the user's own c seconds
        assert figures.latency_s == pytest.approx(up + n * c + down, rel=1e-12)
        assert figures.energy_total_j == pytest.approx(5.0 * c + (1.5 + 2.0) * up + (3.0 + 1.0) * down, rel=1e-12)
        assert figures.cost == pytest.approx(0.01 * c + 1e-4 * (200 + 50), rel=1e-12)
        # the source: idle over the whole (stretched) latency, tx/rx on top for its own transfers
        T = figures.latency_s
        assert figures.energy_source_j == pytest.approx(0.25 * T + (1.5 - 0.25) * up + (1.0 - 0.25) * down, rel=1e-12)
        assert figures.busy_compute_s == 0.0
        assert (figures.busy_tx_s, figures.busy_rx_s) == (pytest.approx(up), pytest.approx(down))
    # summed over users: n times one user's server energy and price (the n^2 over-count is gone)
    compute_energy = ev.energy_total_j - n * ((1.5 + 2.0) * up + (3.0 + 1.0) * down)
    assert compute_energy == pytest.approx(n * 5.0 * c, rel=1e-9)
    assert ev.cost - n * 1e-4 * 250 == pytest.approx(n * 0.01 * c, rel=1e-9)
    # the vectorised model agrees
    cm = compile_users(mp)
    row = np.concatenate([[mp.users[j].problem.device_index(f"p{j}"), mp.users[j].problem.device_index("srv")]
                          for j in range(n)])
    batch = evaluate_users_many(cm, row[None, :])
    for j, user in enumerate(mp.users):
        for got, want in ((batch.latency_s, ev.users[user.name].latency_s),
                          (batch.energy_source_j, ev.users[user.name].energy_source_j),
                          (batch.energy_total_j, ev.users[user.name].energy_total_j),
                          (batch.cost, ev.users[user.name].cost)):
            assert float(got[0, j]) == pytest.approx(want, rel=1e-12)
    assert float(batch.objective[0]) == pytest.approx(ev.energy_total_j, rel=1e-12)


def test_a_shared_link_charges_the_radio_for_the_users_own_transfer():
    mp = _identical_users(2)
    graph = mp.users[0].problem.graph
    devices = mp.devices
    links = (Link("p0", "p1", 100.0, 0.0),)
    users = tuple(UserProblem(f"u{i}", Problem(graph, devices, links, f"p{i}", {"a": {"p0": 1.0, "p1": 1.0}}))
                  for i in range(2))
    mp2 = MultiUserProblem(users, Objective("energy_total"))
    ev = evaluate_users(mp2, {"u0": {"a": "p1"}, "u1": {"a": "p0"}})
    assert ev.link_users == {"p0|p1": 2}
    u0 = ev.users["u0"]
    assert u0.latency_s == pytest.approx(2 * 200 / 100 + 1.0 + 2 * 50 / 100)  # half the bandwidth each
    # p0 sends 2 s of its own bytes (at full rate) and p1 computes u0's 1 s
    assert u0.energy_total_j == pytest.approx((1.5 + 1.0) * 2.0 + 2.0 * 1.0 + (1.5 + 1.0) * 0.5)
    assert u0.energy_source_j == pytest.approx(0.25 * u0.latency_s + (1.5 - 0.25) * 2.0 + (1.0 - 0.25) * 0.5)


def test_a_users_source_serving_another_user():
    """u1 computes on u0's client: u0's compute there is stretched (latency) but u0's source energy holds only
    u0's own work; the client's work for u1 is in u1's total energy."""
    mp = _identical_users(2)
    graph = mp.users[0].problem.graph
    users = tuple(UserProblem(f"u{i}", Problem(graph, mp.devices, (Link("p0", "p1", 100.0, 0.0),), f"p{i}",
                                               {"a": {"p0": 1.0, "p1": 1.0}})) for i in range(2))
    mp2 = MultiUserProblem(users, Objective("energy_source"))
    ev = evaluate_users(mp2, {"u0": {"a": "p0"}, "u1": {"a": "p0"}})
    assert ev.device_users["p0"] == 2
    u0, u1 = ev.users["u0"], ev.users["u1"]
    assert u0.latency_s == pytest.approx(2.0)
    assert u0.busy_compute_s == pytest.approx(1.0)
    assert u0.energy_source_j == pytest.approx(0.25 * 2.0 + (2.0 - 0.25) * 1.0)
    assert u0.energy_total_j == pytest.approx(2.0 * 1.0)
    assert u1.energy_total_j == pytest.approx(2.0 * 1.0 + (1.5 + 1.0) * 2.0 + (1.5 + 1.0) * 0.5)


def test_shares_of_one_leave_a_user_alone_unchanged():
    rng = random.Random(11)
    for _ in range(20):
        p = random_problem(rng, n_nodes=rng.randint(1, 6), n_devices=3, missing_compute=0.2, missing_source_link=0.3)
        placement = {n.name: rng.choice([*p.compute_s[n.name], p.source]) for n in p.graph if not n.is_input}
        placement = {n: d if d in p.compute_s[n] else p.source for n, d in placement.items()}
        alone = evaluate(p, placement)
        ones = evaluate(p, placement, device_share=dict.fromkeys(p.device_names, 1.0),
                        link_share={link.key: 1.0 for link in p.links})
        for m in ("latency_s", "energy_source_j", "energy_total_j", "cost", "busy_compute_s", "busy_tx_s", "busy_rx_s"):
            assert getattr(ones, m) == pytest.approx(getattr(alone, m), rel=1e-12, abs=1e-15)
        multi = evaluate_users(MultiUserProblem((UserProblem("only", p),), p.objective), {"only": placement})
        for m in ("latency_s", "energy_source_j", "energy_total_j", "cost"):
            assert getattr(multi.users["only"], m) == pytest.approx(getattr(alone, m), rel=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), n_devices=st.integers(2, 4), charge_stretched=st.booleans(),
       source_users=st.sampled_from([1.0, 2.0, 3.0]))
def test_scalar_and_vectorised_shares_agree_on_every_figure(rng, n_devices, charge_stretched, source_users):
    from tiercut.cost import compile_problem, encode, evaluate_many

    p = random_problem(rng, n_nodes=rng.randint(1, 6), n_devices=n_devices, missing_compute=0.2,
                       missing_source_link=0.3, directional=0.3)
    comp = compile_problem(p)
    names = p.device_names
    rows, dshares, lshares, scalar = [], [], [], []
    for _ in range(6):
        placement = {n.name: rng.choice(names) for n in p.graph if not n.is_input}
        dmult = {d: rng.choice([1.0, 2.0, rng.uniform(1.0, 5.0)]) for d in names}
        lmult = {link.key: rng.choice([1.0, 3.0, rng.uniform(1.0, 5.0)]) for link in p.links}
        D = np.array([dmult[d] for d in names])
        L = np.ones((len(names), len(names)))
        for key, m in lmult.items():
            a, b = sorted(key)
            L[names.index(a), names.index(b)] = L[names.index(b), names.index(a)] = m
        rows.append(encode(comp, placement))
        dshares.append(D)
        lshares.append(L)
        scalar.append(evaluate(p, placement, device_share=dmult, link_share=lmult, charge_stretched=charge_stretched,
                               source_users=source_users))
    batch = evaluate_many(comp, np.stack(rows), device_share=np.stack(dshares), link_share=np.stack(lshares),
                          charge_stretched=charge_stretched, source_users=source_users)
    for i, ev in enumerate(scalar):
        assert bool(batch.valid[i]) == ev.valid
        for got, want in ((batch.latency_s, ev.latency_s), (batch.energy_source_j, ev.energy_source_j),
                          (batch.energy_total_j, ev.energy_total_j), (batch.cost, ev.cost)):
            a = float(got[i])
            assert (math.isinf(a) and math.isinf(want)) or a == pytest.approx(want, rel=1e-9, abs=1e-12)
        if ev.valid and not charge_stretched:
            # energy and price do not depend on the shares; the latency does
            plain = evaluate(p, ev.placement)
            assert ev.energy_total_j == pytest.approx(plain.energy_total_j, rel=1e-9, abs=1e-12)
            assert ev.cost == pytest.approx(plain.cost, rel=1e-9, abs=1e-12)
            assert ev.latency_s >= plain.latency_s * (1 - 1e-12)
            src = p.device(p.source)
            # the source: its idle power over the latency, split among the users whose source it is
            assert ev.energy_source_j == pytest.approx(
                plain.energy_source_j + src.power_idle_w * (ev.latency_s / source_users - plain.latency_s),
                rel=1e-9, abs=1e-12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), n_users=st.integers(1, 3), n_devices=st.integers(2, 4))
def test_multi_user_vectorised_equals_scalar_on_every_figure(rng, n_users, n_devices):
    mp = _users(rng, n_users, n_devices)
    cm = compile_users(mp)
    X = np.array([[rng.randrange(n_devices) for _ in range(cm.n_columns)] for _ in range(6)], dtype=np.int64)
    for j, user in enumerate(mp.users):
        cols = [cm.offsets[j] + i for i, n in enumerate(user.problem.graph) if n.is_input]
        X[:, cols] = user.problem.device_index(user.problem.source)
    batch = evaluate_users_many(cm, X)
    for i in range(len(X)):
        parts = cm.split(X[i : i + 1])
        placements = {u.name: decode(u.problem, part[0]) for u, part in zip(mp.users, parts, strict=True)}
        ev = evaluate_users(mp, placements)
        for j, user in enumerate(mp.users):
            mine = ev.users[user.name]
            for got, want in ((batch.latency_s, mine.latency_s), (batch.energy_source_j, mine.energy_source_j),
                              (batch.energy_total_j, mine.energy_total_j), (batch.cost, mine.cost)):
                a = float(got[i, j])
                assert (math.isinf(a) and math.isinf(want)) or a == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_allocation_slopes_of_energy_and_price_do_not_depend_on_the_shares():
    """share_terms reads the affine model off evaluate: energy_total and cost have no 1/s term any more, and the
    source energy's slope is its idle power times the latency's (the source idles while it waits)."""
    from allocation_fixtures import random_multi_problem, random_placements
    from tiercut.cost.allocation import allocate, share_terms

    for seed in range(4):
        rng = random.Random(seed)
        mp = random_multi_problem(rng, 3, objective=Objective("weighted", {"latency": 1.0, "energy_total": 0.5,
                                                                           "cost": 2.0, "energy_source": 0.1}))
        placements = random_placements(rng, mp, servers_only=True)
        terms = share_terms(mp, placements)
        assert np.all(terms.slope["energy_total"] == 0.0)
        assert np.all(terms.slope["cost"] == 0.0)
        idle = np.array([u.problem.device(u.problem.source).power_idle_w for u in mp.users])  # one user per source
        np.testing.assert_allclose(terms.slope["energy_source"], idle[:, None] * terms.slope["latency"],
                                   rtol=1e-9, atol=1e-12)
        # the allocation's objective is the model's figure under its shares
        result = allocate(mp, placements)
        again = evaluate_users(mp, placements, result.shares)
        assert result.objective_value == pytest.approx(again.objective_value, rel=1e-9)
        plain = evaluate_users(mp, placements)
        assert again.energy_total_j == pytest.approx(plain.energy_total_j, rel=1e-9)
        assert again.cost == pytest.approx(plain.cost, rel=1e-9)


def test_users_on_one_source_split_its_idle_power():
    from tiercut.cost.allocation import allocate, share_terms

    graph = LayerGraph((Node("x", "input", out_bytes=200), Node("a", "conv2d", ("x",), out_bytes=50, is_output=True)),
                       model="one-layer")
    phone = ProblemDevice("phone", "end", power_compute_w=2.0, power_tx_w=1.5, power_rx_w=1.0, power_idle_w=0.25)
    server = ProblemDevice("srv", "edge", power_compute_w=5.0, power_idle_w=1.0)
    links = (Link("phone", "srv", 100.0, 0.01),)
    apps = tuple(UserProblem(f"app{i}", Problem(graph, (phone, server), links, "phone", {"a": {"phone": 2.0, "srv": 0.5}}))
                 for i in range(3))
    mp = MultiUserProblem(apps, Objective("weighted", {"latency": 1.0, "energy_source": 1.0}))
    placements = {"app0": {"a": "srv"}, "app1": {"a": "srv"}, "app2": {"a": "phone"}}
    ev = evaluate_users(mp, placements)
    for name, mine in ev.users.items():
        alone = evaluate(apps[0].problem, placements[name])
        own = (2.0 - 0.25) * alone.busy_compute_s + (1.5 - 0.25) * alone.busy_tx_s + (1.0 - 0.25) * alone.busy_rx_s
        assert mine.energy_source_j == pytest.approx(0.25 * mine.latency_s / 3 + own, rel=1e-12)
    # only app2 computes on the phone: its compute there is not stretched
    assert ev.device_users["phone"] == 1 and ev.users["app2"].latency_s == pytest.approx(2.0)
    cm = compile_users(mp)
    row = np.concatenate([encode_row(cm, j, placements[u.name]) for j, u in enumerate(mp.users)])
    batch = evaluate_users_many(cm, row[None, :])
    for j, user in enumerate(mp.users):
        assert float(batch.energy_source_j[0, j]) == pytest.approx(ev.users[user.name].energy_source_j, rel=1e-12)
    terms = share_terms(mp, placements)
    np.testing.assert_allclose(terms.slope["energy_source"], (0.25 / 3) * terms.slope["latency"], rtol=1e-9, atol=1e-15)
    result = allocate(mp, placements)
    assert result.objective_value == pytest.approx(evaluate_users(mp, placements, result.shares).objective_value, rel=1e-9)


def encode_row(cm, j: int, placement: dict[str, str]) -> np.ndarray:
    from tiercut.cost import encode

    return encode(cm.users[j], {**placement, "x": cm.users[j].problem.source})
