"""D2D collaboration (DCOSD2D): Kuhn-Munkres matching of model segments to helper devices.

The matching step equals brute force over every assignment (hypothesis, on
random weight matrices and on the weights of random problems); on chains
the star model bounds the cost model's latency of the same placement; the
plan is never better than the exact joint optimum (brute force) nor worse
than all-local (benchmarks/d2d.py measures the gap); the d2d-phones preset is
planned with helpers.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cost import compile_problem, evaluate, linear_form
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan import get_planner, plan
from tiercut.plan.d2d import (
    D2DPlanner,
    balanced_segments,
    brute_force_matching,
    crossing_bytes,
    helper_devices,
    match_segments,
    matching_placement,
    matchings,
    segment_weights,
    segmentations,
)
from tiercut.plan.synthetic import random_problem


@st.composite
def weight_matrices(draw):
    rows = draw(st.integers(1, 3))
    helpers = draw(st.integers(0, 3))
    cols = helpers + rows
    values = draw(st.lists(st.one_of(st.floats(0, 100, allow_nan=False), st.just(math.inf)),
                           min_size=rows * cols, max_size=rows * cols))
    W = np.array(values, dtype=float).reshape(rows, cols)
    W[:, helpers:] = np.where(np.isinf(W[:, helpers:]), 50.0, W[:, helpers:])  # the source columns stay possible
    return W


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weight_matrices())
def test_km_matching_equals_brute_force_on_random_weights(W):
    assignment, total = match_segments(W)
    _, best = brute_force_matching(W)
    assert len(set(assignment)) == len(assignment)  # one segment per column
    assert total == pytest.approx(best, rel=1e-9, abs=1e-9)
    assert total == pytest.approx(float(W[np.arange(len(assignment)), list(assignment)].sum()), rel=1e-12)


def test_an_assignment_that_needs_an_inf_weight_has_an_inf_total():
    W = np.array([[math.inf, math.inf], [math.inf, math.inf]])
    assert match_segments(W)[1] == math.inf
    assert brute_force_matching(W)[1] == math.inf


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.sampled_from(["latency", "energy_source", "energy_total"]))
def test_km_equals_brute_force_on_the_weights_of_random_problems(seed, objective):
    rng = random.Random(seed)
    problem = random_problem(rng, n_nodes=6, n_devices=rng.choice([2, 3, 4]), shape=rng.choice(["chain", "dag"]),
                             objective=objective, constraints=rng.random() < 0.5, missing_compute=0.1)
    if not helper_devices(problem):
        return
    comp = compile_problem(problem)
    form = linear_form(comp, problem.objective)
    for k in range(1, min(len(helper_devices(problem)) + 1, 3) + 1):
        for segments in segmentations(comp, k, cut_candidates=4):
            W, columns = segment_weights(comp, segments, form.node, form.transfer)
            assert W.shape == (k, len(helper_devices(problem)) + k)
            assert columns[-k:] == (problem.source,) * k
            assert match_segments(W)[1] == pytest.approx(brute_force_matching(W)[1], rel=1e-9, abs=1e-12)
            placed = [problem.device_index(columns[c]) for c in match_segments(W)[0]]
            W2, _ = segment_weights(comp, segments, form.node, form.transfer, placed)  # a refinement round's weights
            assert match_segments(W2)[1] == pytest.approx(brute_force_matching(W2)[1], rel=1e-9, abs=1e-12)


def test_segments_are_contiguous_nonempty_and_cover_the_model():
    rng = random.Random(3)
    problem = random_problem(rng, n_nodes=9, n_devices=3, shape="dag")
    comp = compile_problem(problem)
    order = [i for i, n in enumerate(problem.graph) if not n.is_input]
    for k in range(1, len(order) + 1):
        for by in ("time", "params"):
            segments = balanced_segments(comp, k, by)
            assert len(segments) == k and all(segments)
            assert [v for seg in segments for v in seg] == order
    with pytest.raises(TiercutError, match="segments"):
        balanced_segments(comp, len(order) + 1)
    with pytest.raises(TiercutError, match="segmentation 'flops' is not known"):
        balanced_segments(comp, 2, "flops")


def test_crossing_bytes_count_each_tensor_between_its_maker_and_last_reader():
    rng = random.Random(4)
    problem = random_problem(rng, n_nodes=8, n_devices=2, shape="dag")
    comp = compile_problem(problem)
    nodes = list(problem.graph)
    order = [n.name for n in nodes if not n.is_input]
    crossing = crossing_bytes(comp)
    for j in range(len(order) + 1):
        before = {n.name for n in nodes if n.is_input} | set(order[:j])
        after = set(order[j:])
        want = sum(n.out_bytes for n in nodes if n.name in before and any(n.name in m.inputs for m in nodes if m.name in after))
        assert crossing[j] == pytest.approx(want)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000))
def test_on_chains_the_star_model_bounds_the_cost_model_latency_and_the_plan_is_no_better_than_exact(seed):
    rng = random.Random(seed)
    problem = random_problem(rng, n_nodes=6, n_devices=rng.choice([3, 4]), shape="chain", extra_outputs=0.0)
    if not helper_devices(problem):
        return
    comp = compile_problem(problem)
    for m in matchings(problem, cut_candidates=4):
        if m.model == "star" and math.isfinite(m.total):
            latency = evaluate(problem, {n.name: problem.device_names[d]
                                         for n, d in zip(problem.graph, matching_placement(comp, m), strict=True)}).latency_s
            assert latency <= m.total * (1 + 1e-9) + 1e-12
    d2d = plan(problem, "d2d")
    exact = plan(problem, "brute-force")
    assert d2d.objective_value >= exact.objective_value * (1 - 1e-9)
    local = evaluate(problem, {n.name: problem.source for n in problem.graph})
    assert d2d.latency_s <= local.latency_s * (1 + 1e-9)  # never worse than keeping everything on the device


def test_refinement_finds_a_chain_of_helpers_the_star_model_misses():
    """Two helpers that each hold half the model: passing the cut tensor straight between them beats relaying it."""
    from tiercut.env import environment_from_mapping
    from tiercut.problem import build_problem

    graph = LayerGraph(
        (
            Node("x", "input", (), out_bytes=10_000),
            Node("a", "linear", ("x",), flops=1, param_bytes=600, out_bytes=10_000),
            Node("b", "linear", ("a",), flops=1, param_bytes=600, out_bytes=100, is_output=True),
        )
    )
    env = environment_from_mapping({
        "name": "two-helpers",
        "devices": [{"name": "cam", "tier": "end"}, {"name": "p1", "tier": "end", "memory_bytes": 1000},
                    {"name": "p2", "tier": "end", "memory_bytes": 1000}],
        "links": [{"tiers": ["end", "end"], "bandwidth_bytes_per_s": 1e6, "latency_s": 0.0}],
    })
    times = {"a": {"cam": 1.0, "p1": 0.01, "p2": 0.01}, "b": {"cam": 0.015, "p1": 0.01, "p2": 0.01}}
    problem = build_problem(graph, env, source="cam", compute_s=times)
    star_only = get_planner("d2d", refine_rounds=0).solve(problem)
    refined = get_planner("d2d").solve(problem)
    assert refined.latency_s < star_only.latency_s
    assert {refined.placement["a"], refined.placement["b"]} == {"p1", "p2"}
    assert refined.latency_s == pytest.approx(plan(problem, "brute-force").latency_s)


def test_every_helper_takes_at_most_one_segment():
    rng = random.Random(8)
    for _ in range(20):
        problem = random_problem(rng, n_nodes=7, n_devices=4, shape="chain")
        for m in matchings(problem, cut_candidates=6):
            helpers = [d for d in m.devices if d != problem.source]
            assert len(helpers) == len(set(helpers))


def test_settings_are_checked():
    rng = random.Random(1)
    problem = random_problem(rng, n_nodes=4, n_devices=3)
    with pytest.raises(TiercutError, match="max_segments must be a whole number"):
        get_planner("d2d", max_segments=0).solve(problem)
    with pytest.raises(TiercutError, match="cut_candidates must be a whole number"):
        get_planner("d2d", cut_candidates=-1).solve(problem)
    with pytest.raises(TiercutError, match="refine_rounds must be a whole number"):
        get_planner("d2d", refine_rounds=-1).solve(problem)
    alone = random_problem(rng, n_nodes=4, n_devices=1)
    with pytest.raises(TiercutError, match="no D2D link"):
        D2DPlanner().solve(alone)
    one = get_planner("d2d", max_segments=1).solve(problem)
    assert len({one.placement[n.name] for n in problem.graph if not n.is_input}) == 1


@pytest.mark.slow  # imports torch and traces a model
def test_the_d2d_preset_is_a_mesh_of_end_devices_and_the_camera_gets_help():
    from tiercut.env import load_environment
    from tiercut.exits.models import digits_cnn
    from tiercut.graph import capture_model
    from tiercut.problem import build_problem

    env = load_environment("d2d-phones")
    assert {d.tier for d in env.devices} == {"end"} and len(env.devices) == 5
    names = [d.name for d in env.devices]
    for i, a in enumerate(names):  # every pair of end devices has a Wi-Fi Direct link
        for b in names[i + 1:]:
            assert env.link(a, b) is not None
    graph = capture_model(digits_cnn(), (1, 1, 8, 8)).graph
    times = {n.name: {d: (0.02 if d == "camera" else 0.002) for d in names} for n in graph if not n.is_input}
    problem = build_problem(graph, env, compute_s=times)
    result = plan(problem, "d2d")
    local = evaluate(problem, {n.name: "camera" for n in problem.graph})
    assert result.feasible and result.latency_s < local.latency_s
    assert any(d != "camera" for d in result.placement.values())


def test_memory_boundaries_surround_what_no_helper_holds_and_pack_the_rest():
    from tiercut.env import environment_from_mapping
    from tiercut.plan.d2d import memory_boundaries
    from tiercut.problem import build_problem

    sizes = [400, 400, 5000, 400, 400, 400]  # the third layer fits on no helper (1000 bytes each)
    nodes = [Node("x", "input", (), out_bytes=10)]
    for i, size in enumerate(sizes):
        nodes.append(Node(f"l{i}", "linear", (nodes[-1].name,), flops=1, param_bytes=size, out_bytes=10,
                          is_output=i == len(sizes) - 1))
    env = environment_from_mapping({
        "name": "mem",
        "devices": [{"name": "cam", "tier": "end"}, {"name": "p1", "tier": "end", "memory_bytes": 1000}],
        "links": [{"a": "cam", "b": "p1", "bandwidth_bytes_per_s": 1e6, "latency_s": 0.0}],
    })
    graph = LayerGraph(tuple(nodes))
    problem = build_problem(graph, env, source="cam", compute_s={n.name: {"cam": 1.0, "p1": 0.1} for n in nodes[1:]})
    # around l2 (positions 2 and 3), and l3+l4 fill a helper so a run ends before l5 (position 5)
    assert memory_boundaries(compile_problem(problem)) == [2, 3, 5]
    result = plan(problem, "d2d")
    assert result.placement["l2"] == "cam" and result.feasible


def test_boundary_choices_are_bounded():
    from tiercut.plan.d2d import MAX_COMBINATIONS

    rng = random.Random(12)
    problem = random_problem(rng, n_nodes=40, n_devices=5, shape="chain")
    comp = compile_problem(problem)
    for k in range(1, 6):
        assert len(segmentations(comp, k, cut_candidates=40)) <= MAX_COMBINATIONS + 2
