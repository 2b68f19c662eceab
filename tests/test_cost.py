"""The cost model: hand-computed figures, scalar == vectorised == linear forms, JSON round trips."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cost import (
    compile_problem,
    decode,
    encode,
    evaluate,
    evaluate_many,
    linear_form,
    linear_value,
)
from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan.synthetic import random_problem
from tiercut.problem import METRICS, Constraints, Objective, Plan, Problem, ProblemDevice

REL = 1e-9


def small_problem(objective: str = "latency", constraints: Constraints | None = None) -> Problem:
    """x -> a -> b -> c (c also reads a); mobile m and cloud c, one link."""
    graph = LayerGraph(
        (
            Node("x", "input", out_bytes=1000),
            Node("a", "conv2d", ("x",), param_bytes=10, out_bytes=500),
            Node("b", "relu", ("a",), out_bytes=500),
            Node("c", "linear", ("b", "a"), out_bytes=10, is_output=True),
        ),
        model="tiny",
    )
    devices = (
        ProblemDevice("m", "end", power_compute_w=2.0, power_tx_w=1.0, power_rx_w=0.5, power_idle_w=0.1, memory_bytes=100),
        ProblemDevice("c", "cloud", power_compute_w=10.0, power_tx_w=3.0, power_rx_w=4.0, price_per_s=1.0),
    )
    links = (Link("m", "c", bandwidth_bytes_per_s=1e4, latency_s=0.01, price_per_byte=1e-6),)
    compute = {"a": {"m": 0.1, "c": 0.01}, "b": {"m": 0.05, "c": 0.005}, "c": {"m": 0.2, "c": 0.001}}
    return Problem(graph, devices, links, "m", compute, Objective.parse(objective), constraints or Constraints())


def test_hand_computed_figures():
    p = small_problem()
    ev = evaluate(p, {"a": "m", "b": "c", "c": "m"})
    # compute 0.1 + 0.005 + 0.2; a goes to c once (b there), b comes back once (c on m): 2 x (0.01 + 500/1e4)
    assert ev.compute_s == pytest.approx(0.305)
    assert ev.transfer_s == pytest.approx(0.12)
    assert ev.latency_s == pytest.approx(0.425)
    assert [(t.node, t.src, t.dst) for t in ev.transfers] == [("a", "m", "c"), ("b", "c", "m")]
    # source energy: compute 0.3 s at 2 W, tx 0.06 s at 1 W, rx 0.06 s at 0.5 W, idle 0.005 s at 0.1 W
    assert ev.energy_source_j == pytest.approx(2 * 0.3 + 1 * 0.06 + 0.5 * 0.06 + 0.1 * 0.005)
    # total: compute m 0.3*2 + c 0.005*10; transfers (1 + 4) * 0.06 + (3 + 0.5) * 0.06
    assert ev.energy_total_j == pytest.approx(0.6 + 0.05 + 5 * 0.06 + 3.5 * 0.06)
    # cost: 0.005 s on c at 1/s + 1000 bytes at 1e-6
    assert ev.cost == pytest.approx(0.005 + 1000 * 1e-6)
    assert ev.memory_bytes == {"m": 10, "c": 0}
    assert ev.feasible and ev.valid


def test_tensor_sent_once_per_device_and_output_returns():
    p = small_problem()
    ev = evaluate(p, {"a": "m", "b": "c", "c": "c"})
    # a is read by b and c, both on c: one transfer; the output c comes back to the source
    assert [(t.node, t.src, t.dst) for t in ev.transfers] == [("a", "m", "c"), ("c", "c", "m")]
    assert ev.latency_s == pytest.approx(0.1 + 0.005 + 0.001 + 0.06 + (0.01 + 10 / 1e4))


def test_invalid_placements_are_inf_and_listed():
    p = small_problem()
    bad_input = evaluate(p, {"x": "c", "a": "c", "b": "c", "c": "c"})
    assert not bad_input.valid and math.isinf(bad_input.latency_s)
    assert any("input" in v for v in bad_input.violations)
    no_run = Problem(p.graph, p.devices, p.links, "m", {**p.compute_s, "b": {"m": 0.05}})
    ev = evaluate(no_run, {"a": "m", "b": "c", "c": "m"})
    assert not ev.valid and any("cannot run" in v for v in ev.violations)
    no_link = Problem(p.graph, p.devices, (), "m", p.compute_s)
    ev = evaluate(no_link, {"a": "m", "b": "c", "c": "m"})
    assert not ev.valid and any("no path of links" in v for v in ev.violations)
    assert evaluate(no_link, {"a": "m", "b": "m", "c": "m"}).feasible


def test_constraint_violations():
    cons = Constraints(latency_budget_s=0.2, cost_budget=0.0, pinned={"a": "m"})
    p = small_problem(constraints=cons)
    ev = evaluate(p, {"a": "c", "b": "c", "c": "c"})
    assert ev.valid and not ev.feasible
    text = " ".join(ev.violations)
    assert "pinned" in text and "cost" in text
    tight = Problem(p.graph, (p.devices[0].__class__("m", "end", memory_bytes=5), p.devices[1]), p.links, "m", p.compute_s)
    ev = evaluate(tight, {"a": "m", "b": "m", "c": "m"})
    assert not ev.feasible and "memory" in ev.violations[0]
    relaxed = tight.with_constraints(Constraints(memory=False))
    assert evaluate(relaxed, {"a": "m", "b": "m", "c": "m"}).feasible


def test_placement_errors_are_one_line():
    p = small_problem()
    with pytest.raises(TiercutError, match="no device for node 'b'"):
        evaluate(p, {"a": "m"})
    with pytest.raises(TiercutError, match="unknown device 'gpu'"):
        evaluate(p, {"a": "gpu", "b": "m", "c": "m"})
    with pytest.raises(TiercutError, match="unknown node 'zz'"):
        evaluate(p, {"a": "m", "b": "m", "c": "m", "zz": "m"})


def test_weighted_objective():
    p = small_problem("weighted:latency=2,cost=10")
    ev = evaluate(p, {"a": "m", "b": "c", "c": "m"})
    assert ev.objective_value == pytest.approx(2 * ev.latency_s + 10 * ev.cost)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("speed", "not known"),
        ("weighted:latency", "metric=weight"),
        ("weighted:latency=x", "not a number"),
        ("weighted:joy=1", "not a metric"),
        ("weighted:", "positive weight"),
        ("weighted:latency=-1", ">= 0"),
    ],
)
def test_objective_errors(text, message):
    with pytest.raises(TiercutError, match=message):
        Objective.parse(text)


def test_problem_validation_errors():
    p = small_problem()
    with pytest.raises(TiercutError, match="source 'z'"):
        Problem(p.graph, p.devices, p.links, "z", p.compute_s)
    with pytest.raises(TiercutError, match="can run on no device"):
        Problem(p.graph, p.devices, p.links, "m", {"a": {"m": 1.0}, "b": {"m": 1.0}})
    with pytest.raises(TiercutError, match="unknown device"):
        Problem(p.graph, p.devices, p.links, "m", {**p.compute_s, "a": {"gpu": 1.0}})
    with pytest.raises(TiercutError, match="finite number >= 0"):
        Problem(p.graph, p.devices, p.links, "m", {**p.compute_s, "a": {"m": -1.0}})
    with pytest.raises(TiercutError, match="pinned to 'c', where it cannot run"):
        Problem(p.graph, p.devices, p.links, "m", {**p.compute_s, "a": {"m": 1.0}}, constraints=Constraints(pinned={"a": "c"}))
    with pytest.raises(TiercutError, match="inputs are on the source"):
        Problem(p.graph, p.devices, p.links, "m", p.compute_s, constraints=Constraints(pinned={"x": "c"}))
    with pytest.raises(TiercutError, match="two links"):
        Problem(p.graph, p.devices, p.links * 2, "m", p.compute_s)
    with pytest.raises(TiercutError, match="bandwidth"):
        Problem(p.graph, p.devices, (Link("m", "c", 0.0),), "m", p.compute_s)
    with pytest.raises(TiercutError, match="latency_budget_s"):
        Constraints(latency_budget_s=-1.0)


def test_problem_and_plan_json_round_trip_recomputes():
    from tiercut.plan import plan

    p = small_problem("energy_source", Constraints(latency_budget_s=1.0, pinned={"a": "m"}))
    result = plan(p, "brute-force")
    text = json.dumps({"problem": p.to_dict(), "plan": result.to_dict()})
    data = json.loads(text)
    for key in ("nodes", "devices", "links", "source", "compute_s", "objective", "constraints"):
        assert key in data["problem"]
    plan_keys = ("algorithm", "placement", "latency_s", "energy_source_j", "energy_total_j", "cost", "solve_s", "feasible",
                 "optimal")
    for key in plan_keys:
        assert key in data["plan"]
    again = Problem.from_dict(data["problem"])
    assert again.to_dict() == p.to_dict()
    plan_again = Plan.from_dict(data["plan"])
    ev = evaluate(again, plan_again.placement)
    for metric in METRICS:
        assert ev.metric(metric) == pytest.approx(plan_again.metric(metric), rel=REL)
    with pytest.raises(TiercutError, match="schema_version"):
        Problem.from_dict({**data["problem"], "schema_version": 99})
    with pytest.raises(TiercutError, match="lacks the field 'compute_s'"):
        Problem.from_dict({k: v for k, v in data["problem"].items() if k != "compute_s"})


def _random_placements(rng: random.Random, problem: Problem, count: int) -> np.ndarray:
    D = len(problem.devices)
    X = np.array([[rng.randrange(D) for _ in problem.graph] for _ in range(count)], dtype=np.int64)
    src = problem.device_index(problem.source)
    for i, node in enumerate(problem.graph):
        if node.is_input and rng.random() < 0.9:
            X[:, i] = src
    return X


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rng=st.randoms(use_true_random=False),
    n_nodes=st.integers(1, 9),
    n_devices=st.integers(1, 4),
    shape=st.sampled_from(["dag", "chain", "series-parallel"]),
    objective=st.sampled_from(["latency", "energy_source", "energy_total", "cost", "weighted:latency=1,energy_total=0.2,cost=3"]),
)
@pytest.mark.slow
def test_vectorised_equals_scalar(rng, n_nodes, n_devices, shape, objective):
    problem = random_problem(
        rng, n_nodes=n_nodes, n_devices=n_devices, shape=shape, objective=objective,
        missing_compute=0.3, missing_link=0.3, constraints=True,
    )
    comp = compile_problem(problem)
    X = _random_placements(rng, problem, 40)
    batch = evaluate_many(comp, X)
    for i, row in enumerate(X):
        ev = evaluate(problem, decode(problem, row))
        assert bool(batch.valid[i]) == ev.valid
        assert bool(batch.feasible[i]) == ev.feasible
        assert (batch.penalty[i] == 0) == ev.feasible
        for metric in METRICS:
            a, b = float(batch.metric(metric)[i]), ev.metric(metric)
            assert (math.isinf(a) and math.isinf(b)) or a == pytest.approx(b, rel=REL, abs=1e-12)
        assert float(batch.objective[i]) == pytest.approx(ev.objective_value, rel=REL, abs=1e-12) or (
            math.isinf(batch.objective[i]) and math.isinf(ev.objective_value)
        )
        assert list(batch.memory_bytes[i]) == [ev.memory_bytes[d] for d in problem.device_names]
        assert (encode(problem, decode(problem, row)) == row).all()


@settings(max_examples=100, deadline=None)
@given(
    rng=st.randoms(use_true_random=False),
    n_nodes=st.integers(1, 8),
    n_devices=st.integers(2, 4),
)
@pytest.mark.slow
def test_linear_forms_equal_the_cost_model(rng, n_nodes, n_devices):
    problem = random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, missing_compute=0.2)
    comp = compile_problem(problem)
    X = _random_placements(rng, problem, 20)
    src = problem.device_index(problem.source)
    X[:, [i for i, n in enumerate(problem.graph) if n.is_input]] = src
    batch = evaluate_many(comp, X)
    for metric in METRICS:
        values = linear_value(comp, linear_form(comp, metric), X)
        expected = batch.metric(metric)
        finite = np.isfinite(expected)
        assert np.allclose(values[finite], expected[finite], rtol=REL, atol=1e-12)
        assert np.isinf(values[~finite]).all()


def test_evaluate_many_rejects_bad_arrays():
    p = small_problem()
    with pytest.raises(TiercutError, match="columns"):
        evaluate_many(p, np.zeros((2, 3), dtype=int))
    with pytest.raises(TiercutError, match="device indices"):
        evaluate_many(p, np.full((2, 4), 5))
