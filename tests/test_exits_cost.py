"""The expected-cost layer over exits (issue 15, item 2): figures by hand, recomputation from the JSON."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiercut.cost import evaluate
from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.exits import ExitBranch, ExitMeasurements
from tiercut.exits.cost import (
    ExitPlan,
    ExitProblem,
    check_exit_plan,
    evaluate_expected,
    make_exit_plan,
    query_problem,
)
from tiercut.exits.synthetic import random_exit_problem
from tiercut.graph.types import LayerGraph, Node
from tiercut.problem import Problem, ProblemDevice


def hand_problem(rates_right: tuple[bool, ...] = (True, False)) -> ExitProblem:
    """x -> a -> b -> c (final); exit1's branch h after a. Two samples: the first leaves at exit1."""
    graph = LayerGraph((
        Node("x", "input", out_bytes=1000),
        Node("a", "conv2d", ("x",), out_bytes=400, param_bytes=100),
        Node("b", "conv2d", ("a",), out_bytes=200, param_bytes=100),
        Node("c", "linear", ("b",), out_bytes=40, is_output=True, param_bytes=100),
        Node("h", "linear", ("a",), out_bytes=40, is_output=True, param_bytes=10),
    ))
    devices = (ProblemDevice("d0", "end", 2.0, 1.0, 0.5, 0.1), ProblemDevice("d1", "edge", 10.0, 1.0, 1.0, 0.0, price_per_s=1.0))
    links = (Link("d0", "d1", 1000.0, 0.01),)
    compute = {"a": {"d0": 0.1, "d1": 0.01}, "b": {"d0": 0.2, "d1": 0.02}, "c": {"d0": 0.05, "d1": 0.005},
               "h": {"d0": 0.03, "d1": 0.003}}
    problem = Problem(graph, devices, links, "d0", compute)
    exits = (ExitBranch("exit1", "a", ("h",), "h", 0.5), ExitBranch("final", "c", (), "c", 1.0))
    meas = ExitMeasurements(("exit1", "final"), np.array([[0.1, 2.0], [0.1, 0.1]]), np.array([[0.9, 0.2], [0.9, 0.9]]),
                            np.array([list(rates_right), [True, True]]))
    return ExitProblem(problem, exits, "entropy", {"exit1": 1.0}, meas)


def test_expected_figures_by_hand():
    ep = hand_problem()
    placement = {"a": "d0", "h": "d0", "b": "d1", "c": "d1"}
    ev = evaluate_expected(ep, placement)
    assert ev.exit_rates == (0.5, 0.5)
    # the query leaving at exit1 computes a and h on the phone and sends nothing
    early = ev.queries[0]
    assert early.transfers == ()
    assert early.latency_s == pytest.approx(0.1 + 0.03)
    # the other computes a, h (tried, not confident), b, c, sends a up (0.01 + 400/1000) and c's answer back
    late = ev.queries[1]
    assert [(t.node, t.src, t.dst) for t in late.transfers] == [("a", "d0", "d1"), ("c", "d1", "d0")]
    assert late.latency_s == pytest.approx(0.1 + 0.03 + 0.02 + 0.005 + 0.41 + 0.05)
    assert ev.latency_s == pytest.approx(0.5 * early.latency_s + 0.5 * late.latency_s)
    assert ev.worst_latency_s == pytest.approx(late.latency_s)
    assert ev.accuracy == pytest.approx(0.5 * 1 + 0.5 * 1)  # sample 1 right at exit1, sample 2 right at final
    # source energy: compute 2 W, tx 1 W, rx 0.5 W, idle 0.1 W
    e_early = 2.0 * 0.13
    e_late = 2.0 * 0.13 + 1.0 * 0.41 + 0.5 * 0.05 + 0.1 * 0.025
    assert ev.energy_source_j == pytest.approx(0.5 * e_early + 0.5 * e_late)
    assert ev.cost == pytest.approx(0.5 * 0.025)  # d1's price per second, only the late query uses it
    # memory: every deployed node (h counted even though it only tried)
    assert ev.memory_bytes == {"d0": 110, "d1": 200}


def test_one_active_exit_is_the_right_sized_model():
    ep = hand_problem()
    placement = {"a": "d1", "h": "d1", "b": "d1", "c": "d1"}
    ev = evaluate_expected(ep, placement, ["exit1"])
    assert ev.exit_rates == (1.0,)
    assert ev.accuracy == 0.5  # exit1 alone is right on one sample of two
    sub = query_problem(ep, ["exit1"], 0)
    assert sorted(n.name for n in sub.graph) == ["a", "h", "x"]  # b, c never deployed
    assert ev.latency_s == pytest.approx(evaluate(sub, {"a": "d1", "h": "d1"}).latency_s)


def test_no_exit_that_fires_equals_the_plain_cost_model():
    ep = hand_problem()
    never = ExitProblem(ep.problem, ep.exits, "entropy", {"exit1": 0.0}, ep.measurements)
    placement = {"a": "d0", "h": "d0", "b": "d1", "c": "d1"}
    ev = evaluate_expected(never, placement)
    assert ev.exit_rates == (0.0, 1.0)
    plain = evaluate(query_problem(ep, ["exit1", "final"], 1), placement)
    assert ev.latency_s == plain.latency_s and ev.energy_total_j == plain.energy_total_j


def test_slo_and_floor_are_violations():
    ep = hand_problem().with_limits(latency_slo_s=0.1, accuracy_min=0.99)
    ev = evaluate_expected(ep, {"a": "d0", "h": "d0", "b": "d1", "c": "d1"}, ["exit1"])
    text = " ".join(ev.violations)
    assert "latency SLO 100 ms" in text and "under the floor 0.99" in text
    assert not ev.feasible


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), n_devices=st.integers(1, 3), rule=st.sampled_from(["entropy", "max_softmax"]))
def test_plans_recompute_from_the_problem_json(seed, n_devices, rule):
    rng = random.Random(seed)
    ep = random_exit_problem(rng, n_devices=n_devices, n_exits=rng.randint(1, 3), n_layers=4, rule=rule,
                             branch_nodes=rng.randint(1, 2))
    placement = {n.name: rng.choice(ep.problem.allowed_devices(n.name)) for n in ep.problem.graph}
    active = [e.name for e in ep.exits if e.is_final or rng.random() < 0.6]
    plan = make_exit_plan(ep, "test", placement, active)
    again = ExitProblem.from_dict(json.loads(json.dumps(ep.to_dict())))
    back = ExitPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert check_exit_plan(again, back) == []
    assert sum(plan.exit_rates) == pytest.approx(1.0)
    # expected latency lies between the fastest and the slowest exit taken
    taken = [t for t, p in zip(plan.exit_latency_s, plan.exit_rates, strict=True) if p > 0]
    assert min(taken) - 1e-12 <= plan.latency_s <= max(taken) + 1e-12


def test_a_tampered_plan_is_caught():
    ep = hand_problem()
    plan = make_exit_plan(ep, "test", {"a": "d0", "h": "d0", "b": "d1", "c": "d1"}, ["exit1", "final"])
    data = plan.to_dict()
    data["latency_s"] *= 0.9
    data["exit_rates"] = [0.9, 0.1]
    problems = check_exit_plan(ep, ExitPlan.from_dict(data))
    assert any(p.startswith("latency_s") for p in problems) and any(p.startswith("exit_rates") for p in problems)


def test_bad_exit_problems_are_named():
    ep = hand_problem()
    with pytest.raises(TiercutError, match="depth order"):
        evaluate_expected(ep, {}, ["final", "exit1"])
    with pytest.raises(TiercutError, match="no exit 'exit9'"):
        evaluate_expected(ep, {}, ["exit9"])
    with pytest.raises(TiercutError, match="no device for node 'b'"):
        evaluate_expected(ep, {"a": "d0", "h": "d0"})
    with pytest.raises(TiercutError, match="latency SLO"):
        ep.with_limits(latency_slo_s=-1.0)
    with pytest.raises(TiercutError, match="accuracy floor"):
        ep.with_limits(accuracy_min=1.5)
    with pytest.raises(TiercutError, match="no 'exits' object"):
        ExitProblem.from_dict(ep.problem.to_dict())
    wrong = (ExitBranch("exit1", "b", ("h",), "h", 0.5), ExitBranch("final", "c", (), "c", 1.0))
    with pytest.raises(TiercutError, match="outside the branch"):
        ExitProblem(ep.problem, wrong, "entropy", {"exit1": 1.0}, ep.measurements)
