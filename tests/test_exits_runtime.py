"""Exits that fire at run time (counted bytes, answers) and in the simulator (issue 15, item 5)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tiercut.cost import evaluate
from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.exits.build import build_exit_model
from tiercut.exits.confidence import ExitMeasurements
from tiercut.exits.cost import ExitProblem, evaluate_expected, query_problem
from tiercut.exits.runtime import ExitExecutor
from tiercut.exits.simulate import simulate_exits
from tiercut.exits.synthetic import random_exit_problem
from tiercut.exits.train import TrainingSettings, exit_logits, load_digits_split
from tiercut.graph import capture_model
from tiercut.problem import Problem, ProblemDevice


@pytest.fixture(scope="module")
def deployed():
    """digits_cnn with exits after _1 and _4 (2 epochs): the first exit and its layers on the phone, the rest on
    the edge; thresholds that let some queries out at each exit."""
    exit_model, net = build_exit_model("tiercut.exits.models:digits_cnn", (1, 1, 8, 8), ["_1", "_4"],
                                       settings=TrainingSettings(epochs=2, seed=0), baseline=False)
    data = load_digits_split((1, 1, 8, 8), 0)
    graph = exit_model.graph
    e1 = exit_model.exits[0]
    placement = {n.name: "phone" if graph.index(n.name) <= graph.index(e1.after) or n.name in e1.nodes else "edge"
                 for n in graph if not n.is_input}
    # thresholds at the median entropy of each side exit: about half the queries reaching it leave
    thresholds = {e.name: float(np.median(exit_model.measurements.entropy[i])) for i, e in enumerate(exit_model.exits[:-1])}
    exit_model = exit_model.with_thresholds("entropy", thresholds)
    devices = (ProblemDevice("phone", "end", 2.0, 1.0, 1.0, 0.1), ProblemDevice("edge", "edge", 10.0, 1.0, 1.0))
    compute = {n.name: {"phone": 1e-3, "edge": 1e-4} for n in graph if not n.is_input}
    problem = Problem(graph, devices, (Link("phone", "edge", 1e6, 0.005),), "phone", compute)
    ep = ExitProblem.from_exit_model(problem, exit_model)
    captured = capture_model(net, example_inputs=(data.x_test[:1],))
    active = [e.name for e in exit_model.exits]
    executor = ExitExecutor(captured, exit_model.exits, placement, active, "entropy", thresholds, "phone")
    return exit_model, net, data, ep, placement, executor


@pytest.mark.slow
def test_exited_queries_send_nothing_past_the_exit(deployed):
    exit_model, net, data, ep, placement, executor = deployed
    names = [e.name for e in exit_model.exits]
    seen = set()
    for i in range(40):
        x = data.x_test[i:i + 1]
        trace = executor.run(x)
        seen.add(trace.exit)
        k = names.index(trace.exit)
        assert torch.equal(trace.answer, net(x)[k])  # the answer is the exit head's own output
        # the cost model's transfers of that exit's query, tensor by tensor and byte for byte
        sub = query_problem(ep, names, k)
        ev = evaluate(sub, {n.name: placement[n.name] for n in sub.graph if not n.is_input})
        assert [(s.node, s.src, s.dst, s.payload_bytes) for s in trace.sent] == \
            [(t.node, t.src, t.dst, t.out_bytes) for t in ev.transfers]
        if trace.exit == "exit1":  # answered on the phone: not one byte sent, no layer past the exit ran
            assert trace.payload_bytes == 0 and trace.frame_bytes == 0
            assert set(trace.ran) <= set(sub.graph.names)
            assert not any(placement[n] == "edge" for n in trace.ran)
        else:
            assert trace.payload_bytes > 0 and trace.frame_bytes > trace.payload_bytes
    assert seen == set(names)


@pytest.mark.slow
def test_measured_exit_rates_match_the_plan(deployed):
    exit_model, _, data, ep, placement, executor = deployed
    n = 120
    taken = [executor.run(data.x_test[i:i + 1]).exit for i in range(n)]
    planned = evaluate_expected(ep, placement).exit_rates
    measured = [taken.count(e.name) / n for e in exit_model.exits]
    # the plan measured the same samples in one batch; a batch of one may move a borderline score by a rounding
    for p, m in zip(planned, measured, strict=True):
        # over the first n samples against the whole split: within 3 standard errors
        assert abs(p - m) <= 3 * np.sqrt(p * (1 - p) / n) + 1 / n


def test_simulated_exits_follow_the_rates_and_the_expected_latency():
    ep = random_exit_problem(random.Random(5), n_devices=2, n_exits=2, n_layers=4)
    placement = {n.name: ep.problem.allowed_devices(n.name)[-1] for n in ep.problem.graph}
    ev = evaluate_expected(ep, placement)
    queries = simulate_exits(ep, placement, ep.names, n_queries=2000, seed=1)
    counts = [sum(q.exit == a for q in queries) / len(queries) for a in ep.names]
    for p, m in zip(ev.exit_rates, counts, strict=True):
        assert abs(p - m) <= 4 * np.sqrt(p * (1 - p) / 2000) + 1e-9
    # back to back there is no queueing: each query takes its exit's latency, the mean tends to the expectation
    per_exit = dict(zip(ep.names, (q.latency_s for q in ev.queries), strict=True))
    for q in queries[:50]:
        assert q.latency_s == pytest.approx(per_exit[q.exit])
    lat = np.array([q.latency_s for q in queries])
    assert abs(lat.mean() - ev.latency_s) <= 4 * lat.std() / np.sqrt(len(lat)) + 1e-12
    # under load queries queue: never faster than alone
    loaded = simulate_exits(ep, placement, ep.names, n_queries=300, rate_hz=2.0 / ev.latency_s, seed=1)
    assert np.mean([q.latency_s for q in loaded]) >= ev.latency_s * 0.9
    with pytest.raises(TiercutError, match="rate"):
        simulate_exits(ep, placement, ep.names, rate_hz=0.0)


def test_executor_refuses_unknown_exits_and_missing_devices():
    meas = ExitMeasurements(("final",), np.zeros((1, 1)), np.ones((1, 1)), np.ones((1, 1), dtype=bool))
    assert meas.n_samples == 1
    from tiercut.exits.branches import add_exits
    from tiercut.exits.build import exit_branches
    from tiercut.exits.models import digits_cnn

    x = torch.randn(1, 1, 8, 8)
    net = add_exits(digits_cnn(), x, ["_1"], 10)
    captured = capture_model(net, example_inputs=(x,))
    exits = exit_branches(captured.graph, 1, [0.5, 0.9])
    with pytest.raises(TiercutError, match="no exit 'exit5'"):
        ExitExecutor(captured, exits, {}, ["exit5"], "entropy", {}, "phone")
    with pytest.raises(TiercutError, match="no device for node"):
        ExitExecutor(captured, exits, {}, ["exit1", "final"], "entropy", {"exit1": 1.0}, "phone")
    logits = exit_logits(net, x)
    assert len(logits) == 2
