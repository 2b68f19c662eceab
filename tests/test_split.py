"""Runnable partitions: any placement -> acyclic pieces -> GraphModules whose composition equals the model."""

from __future__ import annotations

import bisect
import collections
import dataclasses
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional

from fixtures_models import LoopsOverBatch, TinyNet
from lanes import fast_first
from tiercut.errors import TiercutError
from tiercut.graph import ZOO, capture_model
from tiercut.graph.split import assign_pieces, node_dependencies, split_by_placement

SMALL = (1, 3, 64, 64)
DAG_MODELS = ["resnet18", "googlenet", "densenet121", "mobilenet_v2"]
# block granularity: the models whose blocks test_graph.py also captures (shared session cache)
BLOCK_MODELS = ["resnet18", "googlenet", "densenet121", "mobilenet_v2", "inception_v3", "vit_b_16"]
SLOW_ZOO = {"vgg16", "vit_b_16"}


# --------------------------------------------------------------------- helpers
def expected_output(cap):
    with torch.no_grad():
        return cap.graph_module(*cap.example_inputs)


def assert_same(got, expected):
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.shape == expected.shape and got.dtype == expected.dtype
        assert torch.allclose(got, expected, atol=1e-5)
    elif isinstance(expected, (tuple, list)):
        assert type(got) is type(expected) and len(got) == len(expected)
        for a, b in zip(got, expected):
            assert_same(a, b)
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected)
        for key in expected:
            assert_same(got[key], expected[key])
    else:
        assert got == expected


def random_placement(names, n_devices, rng, mode):
    devices = [f"dev{i}" for i in range(n_devices)]
    if mode == "iid":
        return {n: rng.choice(devices) for n in names}
    cuts = sorted(rng.sample(range(1, len(names)), k=min(4, len(names) - 1)))
    runs = [rng.choice(devices) for _ in range(len(cuts) + 1)]
    return {n: runs[bisect.bisect_right(cuts, i)] for i, n in enumerate(names)}


def piece_edges(split):
    """(producer partition, consumer partition) pairs, from the names the partitions exchange."""
    edges = set()
    for p in split.partitions:
        for name in p.input_names:
            if name in split.producers and split.producers[name] != p.index:
                edges.add((split.producers[name], p.index))
    return edges


def reachable_sets(edges, n):
    """For each partition, the set of partitions reachable from it (itself included), by DP over the indices."""
    succ = collections.defaultdict(set)
    for a, b in edges:
        assert a < b  # indices are a topological order
        succ[a].add(b)
    desc = [set() for _ in range(n)]
    for a in reversed(range(n)):
        desc[a] = {a}.union(*(desc[s] for s in succ[a]))
    return succ, desc


def check_structure(cap, placement, split):
    """Invariants every split must satisfy (independent of the algorithm that built it)."""
    graph = cap.graph
    parts = split.partitions
    assert [p.index for p in parts] == list(range(len(parts)))
    # every layer-graph node in exactly one partition, on its device
    held = [name for p in parts for name in p.nodes]
    assert sorted(held) == sorted(graph.names)
    for p in parts:
        assert {placement[name] for name in p.nodes} == {p.device}
        assert list(p.nodes) == sorted(p.nodes, key=graph.index)
    # every received value is a model input held by the partition or made by an earlier partition
    model_inputs = set(split.input_spec.names)
    for p in parts:
        for name in p.input_names:
            if name in model_inputs and cap.owner[name] in p.nodes:
                continue
            source = split.producers[name]
            assert source < p.index and name in parts[source].output_names
            assert cap.owner[name] not in p.nodes
    for name in split.output_spec.value_names():
        assert name in parts[split.producers[name]].output_names
    # a partition sends exactly what later partitions or the model's output read
    for p in parts:
        needed = {name for q in parts if q.index != p.index for name in q.input_names if split.producers.get(name) == p.index}
        needed |= {name for name in split.output_spec.value_names() if split.producers[name] == p.index}
        assert set(p.output_names) == needed
    # weights are copied, never sent
    get_attrs = {n.name for n in cap.graph_module.graph.nodes if n.op == "get_attr"}
    assert not get_attrs & {name for p in parts for name in p.input_names}
    # acyclic by construction (indices topological); pairwise maximal: no two partitions of one
    # device can be merged, because one reaches the other through a third partition
    succ, desc = reachable_sets(piece_edges(split), len(parts))
    for a in parts:
        for b in parts[a.index + 1:]:
            if a.device == b.device:  # merging would close a cycle a -> s ~> b -> merged
                assert any(b.index in desc[s] for s in succ[a.index] if s != b.index), (a.index, b.index)


def run_by_hand(split, inputs):
    """What a runtime does: each partition gets only the named values it lists."""
    values = split.input_spec.bind(tuple(inputs))
    for p in split.partitions:
        produced = p.run({name: values[name] for name in p.input_names})
        assert list(produced) == list(p.output_names)
        values.update(produced)
    return split.output_spec.build(values), values


# --------------------------------------------------------------------- property test
@st.composite
def placements(draw, names):
    n_devices = draw(st.integers(2, 4))
    if draw(st.booleans()):  # every node anywhere
        devices = draw(st.lists(st.integers(0, n_devices - 1), min_size=len(names), max_size=len(names)))
    else:  # a few cuts in topological order (the typical plan)
        cuts = sorted(draw(st.lists(st.integers(1, len(names) - 1), min_size=1, max_size=5)))
        runs = draw(st.lists(st.integers(0, n_devices - 1), min_size=len(cuts) + 1, max_size=len(cuts) + 1))
        devices = [runs[bisect.bisect_right(cuts, i)] for i in range(len(names))]
    return {name: f"dev{d}" for name, d in zip(names, devices)}


@pytest.mark.parametrize("name", fast_first(DAG_MODELS))
@pytest.mark.slow
def test_random_placements_on_dag_models_reproduce_the_model(name, capture_zoo):
    cap = capture_zoo(name, "module", SMALL)
    expected = expected_output(cap)

    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(placements(cap.graph.names))
    def check(placement):
        split = split_by_placement(cap, placement, verify=False)
        assert_same(split.run(*cap.example_inputs), expected)
        check_structure(cap, placement, split)

    check()


# --------------------------------------------------------------------- the zoo
@pytest.mark.parametrize("name", fast_first(ZOO))
def test_every_zoo_model_splits_at_module_granularity(name, capture_zoo):
    cap = capture_zoo(name)  # documented input size, shared with test_graph.py
    expected = expected_output(cap)
    rng = random.Random(f"module-{name}")
    modes = [("iid", 3), ("runs", 2)] if name in SLOW_ZOO else [("iid", 2), ("iid", 4), ("runs", 3)]
    for i, (mode, n_devices) in enumerate(modes):
        placement = random_placement(cap.graph.names, n_devices, rng, mode)
        split = split_by_placement(cap, placement, verify=i == 0)  # verify: the postcondition on a real model
        assert_same(split.run(*cap.example_inputs), expected)
        check_structure(cap, placement, split)
        assert len(split.devices) > 1
        # each partition holds exactly the weights of its nodes (no sharing in the zoo)
        for p in split.partitions:
            assert p.param_bytes == sum(cap.graph[n].param_bytes for n in p.nodes)


@pytest.mark.parametrize("name", fast_first(BLOCK_MODELS))
@pytest.mark.slow
def test_zoo_models_split_at_block_granularity(name, capture_zoo):
    cap = capture_zoo(name, "block")
    expected = expected_output(cap)
    rng = random.Random(f"block-{name}")
    for mode in ("iid", "runs"):
        placement = random_placement(cap.graph.names, 3, rng, mode)
        split = split_by_placement(cap, placement, verify=False)
        got, _ = run_by_hand(split, cap.example_inputs)
        assert_same(got, expected)
        check_structure(cap, placement, split)
        # a block is never torn apart: each partition runs exactly the fx nodes of its blocks
        kind = {n.name: n.op for n in cap.graph_module.graph.nodes}
        for p in split.partitions:
            ran = [n for n in p.graph_module.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
            owned = [m for node in p.nodes for m in cap.graph[node].members if kind[m] not in ("placeholder", "get_attr")]
            assert len(ran) == len(owned)
            assert [n.target for n in ran] == [n.target for n in cap.graph_module.graph.nodes if n.name in set(owned)]


@pytest.mark.slow
def test_one_device_gives_one_partition_holding_everything(capture_zoo):
    cap = capture_zoo("resnet18", "module", SMALL)
    split = split_by_placement(cap, dict.fromkeys(cap.graph.names, "edge"))
    assert len(split.partitions) == 1
    (only,) = split.partitions
    assert only.device == "edge" and only.nodes == tuple(cap.graph.names)
    assert only.input_names == ("x",)
    assert only.output_names == tuple(n.name for n in cap.graph.outputs)
    assert only.param_bytes == cap.graph.total_param_bytes
    assert_same(split.run(*cap.example_inputs), expected_output(cap))


@pytest.mark.slow
def test_a_chain_cut_once_gives_two_partitions_at_every_cut(capture_zoo):
    cap = capture_zoo("alexnet")
    graph = cap.graph
    assert graph.is_chain()
    expected = expected_output(cap)
    names = graph.names
    for k in range(1, len(names)):
        placement = {n: ("end" if i < k else "cloud") for i, n in enumerate(names)}
        split = split_by_placement(cap, placement, verify=False)
        first, second = split.partitions
        assert (first.device, second.device) == ("end", "cloud")
        assert first.nodes == tuple(names[:k]) and second.nodes == tuple(names[k:])
        # exactly the tensor at the cut crosses
        assert first.output_names == (names[k - 1],) and second.input_names == (names[k - 1],)
        assert first.param_bytes + second.param_bytes == graph.total_param_bytes
        assert_same(split.run(*cap.example_inputs), expected)


# --------------------------------------------------------------------- the cycle case
class CycleCase(nn.Module):
    """x on A, a = f(x) on B, b = g(x, a) on A: A's connected part {x, b} would need B and feed it."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(4, 4)
        self.g = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.f(x)
        return self.g(torch.cat([x, a], 1))


def test_the_cycle_case_becomes_three_ordered_partitions():
    cap = capture_model(CycleCase(), (2, 4))
    assert cap.graph.names == ["x", "f", "cat", "g"]
    placement = {"x": "A", "f": "B", "cat": "A", "g": "A"}
    split = split_by_placement(cap, placement)
    assert [(p.device, p.nodes) for p in split.partitions] == [("A", ("x",)), ("B", ("f",)), ("A", ("cat", "g"))]
    first, middle, last = split.partitions
    assert first.input_names == ("x",) and first.output_names == ("x",)
    assert middle.input_names == ("x",) and middle.output_names == ("f",)
    assert last.input_names == ("x", "f") and last.output_names == ("g",)
    assert split.producers == {"x": 0, "f": 1, "g": 2}
    assert_same(split.run(*cap.example_inputs), expected_output(cap))
    check_structure(cap, placement, split)


def _random_dag_module(seed: int, n_layers: int) -> nn.Module:
    """A random DAG of linear layers: each layer adds the outputs of 1-3 earlier ones."""
    rng = random.Random(seed)
    sources = [rng.sample(range(i + 1), k=min(i + 1, rng.randint(1, 3))) for i in range(n_layers)]

    class RandomDag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(3, 3) for _ in range(n_layers))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            values = [x]
            for layer, srcs in zip(self.layers, sources):
                total = values[srcs[0]]
                for s in srcs[1:]:
                    total = total + values[s]
                values.append(torch.tanh(layer(total)))
            return values[-1] + values[len(values) // 2]

    return RandomDag()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_layers=st.integers(1, 7), n_devices=st.integers(1, 3), data=st.data())
def test_random_small_dags_with_random_placements(seed, n_layers, n_devices, data):
    """Many small DAGs (every cycle pattern shows up): equal output, valid and pairwise-maximal pieces."""
    torch.manual_seed(seed)
    cap = capture_model(_random_dag_module(seed, n_layers), (2, 3))
    names = cap.graph.names
    devices = data.draw(st.lists(st.integers(0, n_devices - 1), min_size=len(names), max_size=len(names)))
    placement = {n: f"d{d}" for n, d in zip(names, devices)}
    split = split_by_placement(cap, placement, verify=False)
    assert_same(split.run(*cap.example_inputs), expected_output(cap))
    check_structure(cap, placement, split)
    # never more pieces than the layering it starts from
    deps = node_dependencies(cap)
    layer: dict[str, int] = {}
    for v in names:
        layer[v] = max((layer[u] + (placement[u] != placement[v]) for u in deps[v]), default=0)
    assert len(split.partitions) <= len({(placement[v], layer[v]) for v in names})


# --------------------------------------------------------------------- weights, glue values, structures
class SharedWeight(nn.Module):
    """One raw parameter read (get_attr) by two layers."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.linear(torch.relu(functional.linear(x, self.w)), self.w)


def test_a_weight_read_by_two_partitions_is_copied_into_both():
    cap = capture_model(SharedWeight(), (2, 4))
    by_op = {n.op: n.name for n in cap.graph}
    second_linear = [n.name for n in cap.graph if n.op == "linear"][1]
    placement = dict.fromkeys(cap.graph.names, "A")
    placement[by_op["relu"]] = "B"
    placement[second_linear] = "C"
    split = split_by_placement(cap, placement)
    holders = [p for p in split.partitions if "w" in dict(p.graph_module.named_parameters())]
    assert [p.device for p in holders] == ["A", "C"]
    assert all(p.param_bytes == 4 * 4 * 4 for p in holders)
    last = split.partitions[-1]
    assert last.device == "C" and last.input_names == (by_op["relu"],)  # the weight is not sent
    assert_same(split.run(*cap.example_inputs), expected_output(cap))


Out = collections.namedtuple("Out", ["logits", "aux"])


class ShapeGlue(nn.Module):
    """Python ints and torch.Size cross partitions; the output is a dict of namedtuple, tuple, list."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor):
        n = x.shape[0]
        y = self.fc(x)
        z = torch.relu(y).reshape(n, 2, 2)
        return {"main": Out(y, None), "pair": (z, n), "list": [x.sum()]}


def test_shape_glue_values_cross_partitions_and_the_output_structure_is_rebuilt():
    cap = capture_model(ShapeGlue(), (2, 4))
    names = cap.graph.names
    expected = expected_output(cap)
    # every node on its own device: every value crosses
    placement = {n: f"dev{i}" for i, n in enumerate(names)}
    split = split_by_placement(cap, placement)
    got, values = run_by_hand(split, cap.example_inputs)
    assert_same(got, expected)
    assert type(got["main"]) is Out and got["main"].aux is None and got["pair"][1] == 2
    crossing = {name for p in split.partitions for name in p.input_names}
    kinds = {type(values[name]).__name__ for name in crossing}
    assert {"Tensor", "Size", "int"} <= kinds
    assert split.output_spec.kind == "dict"


def test_a_model_captured_by_torch_export_splits_too():
    cap = capture_model(LoopsOverBatch(), (4, 6))
    assert cap.method == "export"
    expected = expected_output(cap)
    rng = random.Random(7)
    for _ in range(5):
        placement = random_placement(cap.graph.names, 3, rng, "iid")
        split = split_by_placement(cap, placement)
        assert_same(split.run(*cap.example_inputs), expected)
        check_structure(cap, placement, split)
        # fc.weight is read by every linear: each partition with a linear holds it
        for p in split.partitions:
            if any(cap.graph[n].op == "linear" for n in p.nodes):
                assert "fc.weight" in p.graph_module.state_dict()


def test_partition_run_takes_named_values_and_ignores_extra_ones():
    cap = capture_model(TinyNet(), (1, 3, 8, 8))
    placement = {n: ("end" if i < 4 else "edge") for i, n in enumerate(cap.graph.names)}
    split = split_by_placement(cap, placement)
    first, second = split.partitions
    sent = first.run({"x": cap.example_inputs[0], "unrelated": 1})
    assert set(sent) == set(first.output_names) == set(second.input_names)
    result = second.run(sent)
    assert_same(result[second.output_names[0]], expected_output(cap))


# --------------------------------------------------------------------- verification
def test_verify_raises_when_the_split_does_not_reproduce_the_model():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 8))
    cap = capture_model(model, (4, 8))
    placement = {n: ("A" if i < 2 else "B") for i, n in enumerate(cap.graph.names)}
    assert len(split_by_placement(cap, placement).partitions) == 2  # eval mode: deterministic
    cap.graph_module.train()  # dropout now draws a new mask on every run
    with pytest.raises(TiercutError, match="do not reproduce the model's output") as info:
        split_by_placement(cap, placement)
    assert "\n" not in str(info.value)
    assert len(split_by_placement(cap, placement, verify=False).partitions) == 2


# --------------------------------------------------------------------- error paths
@pytest.fixture(scope="module")
def cycle_case():
    return capture_model(CycleCase(), (2, 4))


def check_one_line_error(call, match):
    with pytest.raises(TiercutError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_a_node_missing_from_the_placement_is_named(cycle_case):
    check_one_line_error(lambda: split_by_placement(cycle_case, {"x": "A", "f": "B", "cat": "A"}), "no device for node 'g'")
    check_one_line_error(lambda: split_by_placement(cycle_case, {}), r"no device for node 'x' \(and 3 more\)")


def test_an_unknown_node_in_the_placement_is_named(cycle_case):
    placement = {"x": "A", "f": "B", "cat": "A", "g": "A", "conv9": "A"}
    check_one_line_error(lambda: split_by_placement(cycle_case, placement), "'conv9', which is not a node")


def test_a_device_that_is_not_a_name_is_rejected(cycle_case):
    check_one_line_error(lambda: split_by_placement(cycle_case, {"x": "A", "f": 3, "cat": "A", "g": "A"}), "node 'f' to 3")
    check_one_line_error(lambda: split_by_placement(cycle_case, {"x": "A", "f": "", "cat": "A", "g": "A"}), "non-empty")


def test_a_value_no_partition_can_produce_is_named(cycle_case):
    placement = {"x": "A", "f": "B", "cat": "A", "g": "A"}
    orphan = dataclasses.replace(cycle_case, owner={k: v for k, v in cycle_case.owner.items() if k != "f"})
    check_one_line_error(lambda: split_by_placement(orphan, placement), "fx node 'f' belongs to no layer-graph node")
    stranger = dataclasses.replace(cycle_case, owner={**cycle_case.owner, "f": "ghost"})
    check_one_line_error(lambda: split_by_placement(stranger, placement), "belongs to 'ghost', which is not in the layer graph")
    # f's value held by g, which runs after cat reads it: it cannot be made in time
    late = dataclasses.replace(cycle_case, owner={**cycle_case.owner, "f": "g"})
    check_one_line_error(lambda: assign_pieces(late, placement), "'cat' reads 'g', which comes later")


def test_running_with_wrong_inputs_is_an_error(cycle_case):
    split = split_by_placement(cycle_case, dict.fromkeys(cycle_case.graph.names, "A"))
    x = cycle_case.example_inputs[0]
    check_one_line_error(lambda: split.run(x, x), r"takes 1 input\(s\) \(x\), got 2")
    check_one_line_error(lambda: split.run(), "needs input 'x'")
    check_one_line_error(lambda: split.partitions[0].run({}), "partition 0 on 'A' needs value 'x'")
