"""Structural preprocessing (tiercut.preprocess): exact merges keep the optimum, every contraction maps back.

- ``merge`` on a problem is exact: brute force on the contracted problem
  equals brute force on the original, over every objective, with memory
  limits and pins (hypothesis);
- every contraction (merge, blocks, dominators) maps back: the cost model's
  figures of a contracted placement equal those of its expansion;
- ``blocks`` / ``dominators`` never gain and report their loss;
- on a zoo model the exact optimum is unchanged by ``merge`` and the expanded
  placement runs split with the model's output.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cli import main
from tiercut.cost import evaluate, metric_values
from tiercut.errors import TiercutError
from tiercut.graph import split_by_placement
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan import plan
from tiercut.plan.synthetic import random_problem
from tiercut.preprocess import STEPS, optimality_loss, parse_steps, preprocess
from tiercut.preprocess.merge import seed_chain_groups
from tiercut.preprocess.types import contract_graph

OBJECTIVES = st.sampled_from(["latency", "energy_source", "energy_total", "cost", "weighted:latency=1,energy_source=0.2"])
SHAPES = st.sampled_from(["dag", "chain", "series-parallel"])
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


def _same_optimum(a, b) -> None:
    assert a.feasible == b.feasible
    if a.feasible:
        assert b.objective_value == pytest.approx(a.objective_value, rel=1e-9, abs=1e-12)


@settings(max_examples=60, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(2, 8), n_devices=st.integers(2, 3),
       objective=OBJECTIVES, shape=SHAPES, limits=st.booleans())
def test_merge_keeps_the_brute_force_optimum(rng, n_nodes, n_devices, objective, shape, limits):
    problem = random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, shape=shape, objective=objective,
                             missing_compute=0.2, constraints=limits, missing_link=0.3, missing_source_link=0.2,
                             directional=0.3)  # relayed and one-way-slow links too
    if problem.constraints.budgets():  # merge declines with budgets (checked below); memory and pins stay
        problem = problem.with_constraints(type(problem.constraints)(pinned=problem.constraints.pinned))
    result = preprocess(problem, "merge")
    assert result.exact and result.problem is not None
    _same_optimum(plan(problem, "brute-force"), plan(result.problem, "brute-force"))


def test_merge_merges_something_and_declines_under_budgets():
    merged = 0
    for seed in range(40):
        problem = random_problem(random.Random(seed), n_nodes=7, n_devices=2, shape="chain")
        merged += len(problem.graph) - len(preprocess(problem, "merge").graph)
    assert merged > 20  # the dominance test is not vacuous
    problem = random_problem(random.Random(1), n_nodes=7, shape="chain")
    budgeted = problem.with_constraints(type(problem.constraints)(latency_budget_s=10.0))
    result = preprocess(budgeted, "merge")
    assert len(result.graph) == len(problem.graph) and "budget" in result.steps[0].note


@settings(max_examples=40, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(2, 9), n_devices=st.integers(2, 3),
       objective=OBJECTIVES, shape=SHAPES, steps=st.sampled_from(["merge", "blocks", "dominators", "merge,blocks"]))
def test_contracted_placements_have_the_figures_of_their_expansion(rng, n_nodes, n_devices, objective, shape, steps):
    problem = random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, shape=shape, objective=objective,
                             missing_compute=0.1, shared_params=0.3)
    result = preprocess(problem, steps)
    reduced = result.problem
    assert reduced is not None
    assert set(result.groups) == set(result.graph.names)
    assert sorted(m for g in result.groups.values() for m in g) == sorted(problem.graph.names)
    for _ in range(5):
        placement = {n: rng.choice(reduced.allowed_devices(n)) for n in reduced.graph.names}
        small, full = evaluate(reduced, placement), evaluate(problem, result.expand(placement))
        assert small.valid == full.valid
        if small.valid:
            for key, value in metric_values(full).items():
                assert metric_values(small)[key] == pytest.approx(value, rel=1e-9, abs=1e-12)
            assert small.memory_bytes == full.memory_bytes


@pytest.mark.parametrize("step", ["blocks", "dominators"])
def test_block_collapse_reports_its_loss(step):
    losses = []
    for seed in range(25):
        problem = random_problem(random.Random(seed), n_nodes=8, n_devices=2, shape="series-parallel")
        result = preprocess(problem, step)
        assert not result.exact
        loss = optimality_loss(problem, result, "brute-force")
        assert loss.loss >= -1e-12
        assert loss.preprocessed == pytest.approx(plan(result.problem, "brute-force").objective_value)
        losses.append(loss.loss)
    assert max(losses) > 0  # collapsing blocks does cost optimality sometimes, and it is reported


def test_graph_only_merge_is_the_seed_rule_and_unproven():
    g = LayerGraph((Node("x", "input", out_bytes=4), Node("a", "conv", ("x",), out_bytes=8),
                    Node("b", "relu", ("a",), out_bytes=8), Node("c", "conv", ("b",), out_bytes=4),
                    Node("d", "add", ("c", "b"), out_bytes=4, is_output=True)))
    assert seed_chain_groups(g) == [["a", "b"]]  # c -> d is no chain link: d also reads b
    result = preprocess(g, "merge")
    assert not result.exact and result.problem is None
    assert result.groups["b"] == ("a", "b") and "a" not in result.graph


def test_contraction_refuses_a_group_with_two_exits():
    g = LayerGraph((Node("x", "input"), Node("a", "conv", ("x",)), Node("b", "relu", ("a",)),
                    Node("c", "add", ("a", "b"), is_output=True)))
    with pytest.raises(TiercutError, match="only the exit"):
        contract_graph(g, [["a", "b"]], "chain")
    with pytest.raises(TiercutError, match="graph input"):
        contract_graph(g, [["x", "a"]], "chain")


def test_parse_steps():
    assert parse_steps("merge, blocks") == ("merge", "blocks") and parse_steps(None) == () and parse_steps("none") == ()
    assert set(STEPS) == {"merge", "blocks", "dominators"}
    with pytest.raises(TiercutError, match="not known"):
        parse_steps("merge,fold")


@pytest.mark.slow
def test_zoo_optimum_unchanged_and_expanded_split_runs(capture_zoo):
    import torch

    from test_plan_zoo import zoo_problem

    cap = capture_zoo("resnet18", "module", (1, 3, 32, 32))
    expected = cap.graph_module(*cap.example_inputs)
    for preset in ("neurosurgeon-3g", "neurosurgeon-wifi"):
        problem = zoo_problem(cap.graph, preset, "latency")
        result = preprocess(problem, "merge")
        assert len(result.graph) < 0.6 * len(cap.graph)
        for planner in ("mincut", "dp", "ilp"):
            _same_optimum(plan(problem, planner), plan(result.problem, planner))
        blocks = preprocess(problem, "merge,blocks")
        assert optimality_loss(problem, blocks, "mincut").relative >= -1e-12
    # an expanded placement of the contracted graph (half its groups on the cloud) runs split, same output
    names = result.graph.names
    placement = {n: ("cloud" if i > len(names) // 2 else "mobile") for i, n in enumerate(names)}
    split = split_by_placement(cap, result.expand(placement))
    assert len(split.partitions) >= 2
    assert torch.allclose(split.run(*cap.example_inputs), expected, atol=1e-5)


def test_cli_preprocess(tmp_path, capsys):
    graph_json = tmp_path / "g.json"
    assert main(["graph", "fixtures_models:tiny_net", "--allow-code", "--input-shape", "1,3,8,8", "--json", "-q"]) == 0
    full = capsys.readouterr().out
    graph_json.write_text(full)
    assert main(["graph", str(graph_json), "--preprocess", "blocks", "--json", "-q"]) == 0
    captured = capsys.readouterr()
    assert "may lose optimality" in captured.err
    import json

    assert len(json.loads(captured.out)["nodes"]) < len(json.loads(full)["nodes"])
    assert main(["plan", str(graph_json), "--env", "neurosurgeon-wifi", "--preprocess", "merge", "--json", "-q"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload["plan"]["placement"]) == {n["name"] for n in payload["problem"]["nodes"]}
    for argv, message in (
        (["graph", str(graph_json), "--preprocess", "fold"], "preprocessing step 'fold' is not known"),
        (["plan", str(graph_json), "--preprocess", "merge", "--spatial", "auto"], "drop --spatial auto"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------- with cut compression (JALAD)
@pytest.mark.slow
@settings(max_examples=25, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(2, 6), n_devices=st.integers(2, 3),
       objective=OBJECTIVES, shape=st.sampled_from(["dag", "chain"]))
def test_merge_keeps_the_brute_force_optimum_with_cut_compression(rng, n_nodes, n_devices, objective, shape):
    """Each transfer bounded over its codecs: the contracted problem's optimum (placement and codecs jointly,
    under the accuracy budget) is the original's."""
    from tiercut.plan.synthetic import random_cut_compression

    problem = random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, shape=shape, objective=objective,
                             missing_link=0.2)
    problem = random_cut_compression(rng, problem.with_constraints(type(problem.constraints)()))
    result = preprocess(problem, "merge")
    assert result.exact and result.problem is not None and result.problem.cut_compression is not None
    assert set(result.problem.cut_compression.tensors) <= set(result.problem.graph.names)
    best, contracted = plan(problem, "brute-force"), plan(result.problem, "brute-force")
    _same_optimum(best, contracted)
    if contracted.feasible:  # the contracted plan maps back with its codecs and the same figures
        expanded = evaluate(problem, result.expand(contracted.placement), compression=contracted.cut_compression or None)
        assert expanded.objective_value == pytest.approx(contracted.objective_value, rel=1e-9, abs=1e-12)


@pytest.mark.slow
def test_merge_with_cut_compression_keeps_a_cut_that_only_compression_makes_best():
    """A chain whose middle tensor is big: raw, the best cut is elsewhere and merge may fold the middle in; with a
    codec that shrinks it 20x, the middle cut becomes best and merge must keep it."""
    from tiercut.problem import CutCodec, CutCompression, TensorCompression

    for seed in range(12):
        problem = random_problem(random.Random(seed), n_nodes=6, n_devices=2, shape="chain")
        problem = problem.with_constraints(type(problem.constraints)())
        devices = problem.device_names
        codec = CutCodec("int8", 8, "tensor", {d: 0.0 for d in devices}, {d: 0.0 for d in devices})
        tensors = {n.name: {"int8": TensorCompression(0.05, 0.0)} for n in problem.graph}
        compressed = problem.with_cut_compression(CutCompression((codec,), tensors, None, "test"))
        with_cc = preprocess(compressed, "merge").problem
        _same_optimum(plan(compressed, "brute-force"), plan(with_cc, "brute-force"))


@pytest.mark.slow
def test_cli_plan_preprocess_with_cut_compression_and_its_note(capsys):
    import json

    model = ["fixtures_models:tiny_net", "--allow-code", "--input-shape", "1,3,8,8", "--env", "neurosurgeon-3g"]
    assert main(["plan", *model, "--preprocess", "merge", "--cut-compression", "auto", "--algorithm", "ilp",
                 "--json", "-q"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    note = [line for line in captured.err.splitlines() if "--preprocess" in line]
    assert len(note) == 1 and "merge:" in note[0] and "nodes" in note[0] and "optimum is kept" in note[0]
    names = {n["name"] for n in payload["problem"]["nodes"]}
    assert set(payload["problem"]["cut_compression"]["tensors"]) <= names
    assert set(payload["plan"]["cut_compression"]) <= names
    # the same plan without preprocessing has the same optimum (merge is exact with compression too)
    assert main(["plan", *model, "--cut-compression", "auto", "--algorithm", "ilp", "--json", "-q"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert payload["plan"]["objective_value"] == pytest.approx(full["plan"]["objective_value"], rel=1e-6)
    # a step that may lose optimality says by how much, measured with the same planner
    assert main(["plan", *model, "--preprocess", "blocks", "-q"]) == 0
    err = capsys.readouterr().err
    assert "blocks:" in err and " loss " in err and len(err.strip().splitlines()) == 1
