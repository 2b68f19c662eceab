"""Per-message costs in the one cost model (docs/cost-model.md "Per-message costs").

Every hop of a transfer is one message: it also costs its sender's and its receiver's ``message_s`` (busy seconds
of those devices) and its link's ``message_overhead_bytes`` (bytes that occupy the link with the tensor's). The
figures recompute from the problem JSON, the vectorised model and the linear forms equal the reference, the exact
planners still equal brute force, and the runtime's pipelined prediction and the simulator use the same figures.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cost import compile_problem, evaluate, evaluate_many, linear_form, linear_value
from tiercut.cost.throughput import stage_forms, stage_names, stage_times_many
from tiercut.env import Link, environment_from_mapping
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan import plan
from tiercut.plan.synthetic import random_problem
from tiercut.problem import Objective, Problem, ProblemDevice

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


def with_message_costs(problem: Problem, rng: random.Random) -> Problem:
    """``problem`` through its JSON with random per-message seconds on its devices and overhead bytes on its links."""
    data = json.loads(json.dumps(problem.to_dict()))
    for device in data["devices"]:
        device["message_s"] = rng.choice([0.0, rng.uniform(0.0, 0.5)])
    for link in data["links"]:
        link["message_overhead_bytes"] = rng.choice([0.0, rng.uniform(0.0, 2000.0)])
    return Problem.from_dict(data)


def chain_problem() -> Problem:
    """in -> a -> b (output); client and server over one link of 1000 B/s, 0.1 s latency."""
    nodes = (
        Node("in", "input", out_bytes=100),
        Node("a", "conv2d", ("in",), out_bytes=200),
        Node("b", "linear", ("a",), out_bytes=50, is_output=True),
    )
    devices = (ProblemDevice("client", "end", message_s=0.01), ProblemDevice("server", "edge", message_s=0.002))
    link = Link("client", "server", 1000.0, 0.1, message_overhead_bytes=100.0)
    compute = {"a": {"client": 1.0, "server": 0.5}, "b": {"client": 0.3, "server": 0.2}}
    return Problem(LayerGraph(nodes), devices, (link,), "client", compute, Objective("throughput"))


def test_message_costs_by_hand():
    problem = chain_problem()
    ev = evaluate(problem, {"a": "server", "b": "server"})
    # in: client -> server (100 B), b: server -> client (50 B, the output); each hop one message
    hop_in = 0.1 + 0.01 + 0.002 + (100 + 100) / 1000
    hop_out = 0.1 + 0.002 + 0.01 + (100 + 50) / 1000
    assert ev.latency_s == pytest.approx(0.7 + hop_in + hop_out)
    assert ev.pipeline_stages == pytest.approx({
        "client": 2 * 0.01,  # it sends one message and receives one
        "server": 0.7 + 2 * 0.002,
        "client->server": (100 + 100) / 1000,
        "server->client": (100 + 50) / 1000,
    })
    local = evaluate(problem, {"a": "client", "b": "client"})
    assert local.latency_s == pytest.approx(1.3) and local.pipeline_stages["client"] == pytest.approx(1.3)


def test_message_costs_default_to_zero_and_round_trip():
    problem = chain_problem()
    again = Problem.from_dict(json.loads(json.dumps(problem.to_dict())))
    placement = {"a": "server", "b": "client"}
    assert evaluate(again, placement).latency_s == evaluate(problem, placement).latency_s
    assert again.devices[0].message_s == 0.01 and again.links[0].message_overhead_bytes == 100.0
    bare = ProblemDevice("x", "end").to_dict()
    assert "message_s" not in bare and "message_overhead_bytes" not in Link("a", "b", 1.0).to_dict()


def test_environment_files_take_the_message_costs_with_units():
    env = environment_from_mapping({
        "name": "m",
        "devices": [{"name": "phone", "tier": "end", "message_s": "1.5 ms"}, {"name": "edge", "tier": "edge"}],
        "links": [{"a": "phone", "b": "edge", "bandwidth": "8 Mbit/s", "message_overhead_bytes": 512}],
    })
    assert env.devices[0].message_s == pytest.approx(0.0015) and env.devices[1].message_s == 0.0
    assert env.links[0].message_overhead_bytes == 512


@pytest.mark.parametrize(("where", "field"), [("devices", "message_s"), ("links", "message_overhead_bytes")])
def test_negative_message_costs_are_refused_in_one_line(where, field):
    data = json.loads(json.dumps(chain_problem().to_dict()))
    data[where][0][field] = -1.0
    with pytest.raises(TiercutError) as info:
        Problem.from_dict(data)
    assert field in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(TiercutError):
        environment_from_mapping({"name": "m", "devices": [{"name": "p", "tier": "end", field: -1}] if where == "devices"
                                  else [{"name": "p", "tier": "end"}, {"name": "q", "tier": "edge"}],
                                  "links": [{"a": "p", "b": "q", "bandwidth": 1.0, field: -1}] if where == "links"
                                  else []})


@settings(max_examples=60, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(1, 7), n_devices=st.integers(1, 4))
def test_vectorised_and_linear_forms_equal_the_reference(rng, n_nodes, n_devices):
    problem = with_message_costs(random_problem(
        rng, n_nodes=n_nodes, n_devices=n_devices, shape="dag", objective="throughput", missing_compute=0.2,
        missing_link=0.3, missing_source_link=0.3, directional=0.4), rng)
    comp = compile_problem(problem)
    X = np.stack([np.array([rng.choice(np.flatnonzero(comp.allowed[v])) for v in range(comp.n_nodes)])
                  for _ in range(6)])
    batch = evaluate_many(comp, X, stages=True)
    many = stage_times_many(comp, X)
    forms = stage_forms(comp)
    metric_forms = {m: linear_form(comp, m) for m in ("latency", "energy_source", "energy_total", "cost")}
    for p, row in enumerate(X):
        ev = evaluate(problem, {n.name: problem.device_names[d] for n, d in zip(problem.graph, row, strict=True)})
        assert bool(batch.valid[p]) == ev.valid
        if not ev.valid:
            continue
        reference = np.array([ev.pipeline_stages[s] for s in stage_names(problem)])
        assert many[p] == pytest.approx(reference, rel=1e-9, abs=1e-12)
        assert [float(linear_value(comp, f, row)[0]) for _, f in forms] == pytest.approx(reference, rel=1e-9, abs=1e-12)
        assert batch.bottleneck_s[p] == pytest.approx(ev.bottleneck_s, rel=1e-9)
        for metric, form in metric_forms.items():
            assert float(linear_value(comp, form, row)[0]) == pytest.approx(ev.metric(metric), rel=1e-9, abs=1e-12)
            assert float(batch.metric(metric)[p]) == pytest.approx(ev.metric(metric), rel=1e-9, abs=1e-12)


def same_optimum(result, truth) -> None:
    assert result.feasible == truth.feasible, (result.note, truth.note)
    if truth.feasible:
        assert result.objective_value == pytest.approx(truth.objective_value, rel=1e-7, abs=1e-12), result.note


@settings(max_examples=40, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(1, 7), n_devices=st.integers(2, 3),
       objective=st.sampled_from(["latency", "energy_source", "cost"]))
@pytest.mark.slow
def test_exact_planners_equal_brute_force_with_message_costs(rng, n_nodes, n_devices, objective):
    problem = with_message_costs(random_problem(
        rng, n_nodes=n_nodes, n_devices=n_devices, shape="chain", objective=objective, missing_compute=0.2,
        missing_link=0.3), rng)
    truth = plan(problem, "brute-force")
    for name in ("ilp", "dp", "shortest-path"):
        same_optimum(plan(problem, name), truth)
    if n_devices == 2:
        same_optimum(plan(problem, "mincut"), truth)


@settings(max_examples=30, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(1, 7), n_devices=st.integers(2, 3))
def test_throughput_planners_equal_brute_force_with_message_costs(rng, n_nodes, n_devices):
    problem = with_message_costs(random_problem(
        rng, n_nodes=n_nodes, n_devices=n_devices, shape="chain", objective="throughput", missing_link=0.3), rng)
    truth = plan(problem, "brute-force")
    same_optimum(plan(problem, "throughput-dp"), truth)
    same_optimum(plan(problem, "ilp"), truth)


@settings(max_examples=30, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(1, 7), n_devices=st.integers(2, 4))
def test_the_runtime_prediction_agrees_with_the_cost_model(rng, n_nodes, n_devices):
    from tiercut.runtime.pipelining import pipeline_stages

    problem = with_message_costs(random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, shape="dag",
                                                objective="throughput", missing_link=0.3, directional=0.4), rng)
    comp = compile_problem(problem)
    row = [rng.choice(list(np.flatnonzero(comp.allowed[v]))) for v in range(comp.n_nodes)]
    placement = {n.name: problem.device_names[d] for n, d in zip(problem.graph, row, strict=True)}
    ev = evaluate(problem, placement)
    if not ev.valid:
        return
    predicted = pipeline_stages(problem, placement)
    busy = {name: seconds for name, seconds in ev.pipeline_stages.items() if seconds > 0}
    assert {s.name: s.seconds for s in predicted.stages} == pytest.approx(busy, rel=1e-12)
    assert predicted.latency_s == pytest.approx(ev.latency_s, rel=1e-12)


@settings(max_examples=25, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(1, 6), n_devices=st.integers(2, 3))
def test_one_query_alone_in_the_simulator_takes_the_cost_models_latency(rng, n_nodes, n_devices):
    from tiercut.sim import SimConfig, SimUser, simulate

    problem = with_message_costs(random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, shape="chain",
                                                missing_link=0.3), rng)
    comp = compile_problem(problem)
    row = [rng.choice(list(np.flatnonzero(comp.allowed[v]))) for v in range(comp.n_nodes)]
    placement = {n.name: problem.device_names[d] for n, d in zip(problem.graph, row, strict=True)}
    ev = evaluate(problem, placement)
    if not ev.valid:
        return
    result = simulate([SimUser("u", problem, placement=placement, max_queries=1)], SimConfig(execution="sequential"))
    assert result.queries[0].latency_s == pytest.approx(ev.latency_s, rel=1e-9)
    assert result.queries[0].energy_source_j == pytest.approx(ev.energy_source_j, rel=1e-9, abs=1e-12)
    assert math.isfinite(result.queries[0].latency_s)


def test_a_relay_pays_its_message_seconds_twice():
    """A relayed transfer is two messages: the relay receives and sends (its device stage), store-and-forward."""
    nodes = (Node("in", "input", out_bytes=100), Node("a", "conv2d", ("in",), out_bytes=10, is_output=True))
    devices = (ProblemDevice("c", "end", message_s=0.01), ProblemDevice("r", "edge", message_s=0.05),
               ProblemDevice("s", "cloud", message_s=0.001))
    links = (Link("c", "r", 1000.0), Link("r", "s", 1000.0))
    problem = Problem(LayerGraph(nodes), devices, links, "c", {"a": {"c": 5.0, "r": 5.0, "s": 1.0}})
    ev = evaluate(problem, {"a": "s"})
    assert ev.pipeline_stages["r"] == pytest.approx(4 * 0.05)  # in and out both pass through r
    assert ev.pipeline_stages["c"] == pytest.approx(2 * 0.01)
    assert ev.latency_s == pytest.approx(1.0 + 2 * (0.01 + 2 * 0.05 + 0.001) + (100 + 100 + 10 + 10) / 1000)


def test_the_throughput_bound_at_a_level_is_one_query_at_a_time_then_the_bottleneck():
    from tiercut.runtime.pipelining import pipeline_stages

    problem = chain_problem()
    predicted = pipeline_stages(problem, {"a": "server", "b": "server"})
    assert predicted.throughput_bound_qps(1) == pytest.approx(1 / predicted.latency_s)
    assert predicted.throughput_bound_qps(100) == pytest.approx(predicted.throughput_qps)
    assert predicted.throughput_bound_qps(2) == pytest.approx(min(2 / predicted.latency_s, 1 / predicted.bottleneck_s))
    assert predicted.latency_bound_s(1) == pytest.approx(predicted.latency_s)
    assert predicted.latency_bound_s(100) == pytest.approx(100 * predicted.bottleneck_s)
