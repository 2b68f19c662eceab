"""Model -> LayerGraph: published totals, structure, granularity, fallbacks, errors."""

from __future__ import annotations

import json

import pytest
import torch

from lanes import fast_first
from tiercut.errors import TiercutError
from tiercut.graph import ZOO, LayerGraph, Node, capture_model, extract_graph, parse_shape
from tiercut.graph.capture import capture

ZOO_NAMES = list(ZOO)


@pytest.mark.parametrize("name", fast_first(ZOO_NAMES))
def test_zoo_totals_match_torchvision_documentation(name, capture_zoo):
    """Parameter count exact; conv/linear/matmul/attention FLOPs = documented GFLOPS x 2 within 3%."""
    graph = capture_zoo(name).graph
    documented = ZOO[name].documented()
    assert graph.total_param_count + graph.unused_param_count == documented["num_params"]
    if name == "inception_v3":  # its documented count includes the auxiliary head, never run in eval
        aux = sum(p.numel() for p in capture_zoo(name).graph_module.parameters()) - graph.total_param_count
        assert graph.unused_param_count > 3_000_000 and aux == 0
    else:
        assert graph.unused_param_count == 0
    expected_flops = 2e9 * documented["gflops"]
    assert abs(graph.total_matmul_flops - expected_flops) / expected_flops < 0.03
    # the other ops are counted too, and are a small positive share
    other = graph.total_flops - graph.total_matmul_flops
    assert 0 < other < 0.1 * graph.total_flops


@pytest.mark.parametrize("name", fast_first(ZOO_NAMES))
def test_zoo_graph_structure(name, capture_zoo):
    cap = capture_zoo(name)
    graph = cap.graph
    assert cap.method == "fx"
    assert [n.op for n in graph.inputs] == ["input"]
    assert graph.inputs[0].out_shape == ZOO[name].input_shape()
    assert graph.outputs and graph.outputs[-1].out_shape == (1, 1000)
    # every fx node but the output belongs to exactly one layer node, which lists it as a member
    fx_names = {n.name for n in cap.graph_module.graph.nodes if n.op != "output"}
    assert set(cap.owner) == fx_names
    members = [m for node in graph for m in node.members]
    assert sorted(members) == sorted(fx_names)
    for node in graph:
        assert node.out_bytes >= 0 and node.flops >= node.matmul_flops >= 0
        if node.op in ("conv2d", "linear"):
            assert node.param_bytes > 0 and node.matmul_flops > 0
        if node.out_dtype == "float32" and node.out_shape:
            assert node.out_bytes == 4 * torch.Size(node.out_shape).numel() or node.op == "multiheadattention"
    assert graph.is_chain() == ZOO[name].is_chain


@pytest.mark.slow
def test_op_kinds_follow_the_contract(capture_zoo):
    ops = {n.op for n in capture_zoo("resnet18").graph}
    assert {"input", "conv2d", "batchnorm2d", "relu", "maxpool2d", "add", "adaptiveavgpool2d", "flatten", "linear"} <= ops
    assert "cat" in {n.op for n in capture_zoo("googlenet").graph}
    assert "multiheadattention" in {n.op for n in capture_zoo("vit_b_16").graph}


@pytest.mark.parametrize("name", fast_first(["resnet18", "googlenet", "densenet121", "mobilenet_v2", "inception_v3", "vit_b_16"]))
@pytest.mark.slow
def test_block_granularity_collapses_blocks_and_keeps_totals(name, capture_zoo):
    fine = capture_zoo(name).graph
    cap = capture_zoo(name, "block")
    blocks = cap.graph
    assert blocks.granularity == "block"
    assert len(blocks) < len(fine)
    assert blocks.total_flops == fine.total_flops
    assert blocks.total_matmul_flops == fine.total_matmul_flops
    assert blocks.total_param_count == fine.total_param_count
    assert blocks.total_param_bytes == fine.total_param_bytes
    # owner maps fx nodes onto block names; members partition the fx nodes
    assert set(cap.owner.values()) == set(blocks.names)
    assert sorted(m for n in blocks for m in n.members) == sorted(cap.owner)
    assert blocks.outputs[-1].out_shape == (1, 1000)


@pytest.mark.slow
def test_block_names_of_known_architectures(capture_zoo):
    assert "layer1.0" in capture_zoo("resnet18", "block").graph
    assert capture_zoo("resnet18", "block").graph["layer1.0"].op == "basicblock"
    assert capture_zoo("googlenet", "block").graph["inception3a"].op == "inception"
    assert "features.denseblock1.denselayer1" in capture_zoo("densenet121", "block").graph
    assert "encoder.layers.encoder_layer_0" in capture_zoo("vit_b_16", "block").graph
    # a residual block's output is one tensor, sent once
    block = capture_zoo("resnet18", "block").graph["layer1.0"]
    assert block.out_bytes == 64 * 56 * 56 * 4


@pytest.mark.slow
def test_json_round_trip(capture_zoo):
    graph = capture_zoo("googlenet").graph
    text = json.dumps(graph.to_dict())
    again = LayerGraph.from_dict(json.loads(text))
    assert again == graph
    assert json.loads(text)["schema_version"] == 1


def test_json_with_other_schema_version_is_refused():
    data = LayerGraph(nodes=(Node("x", "input"),)).to_dict()
    data["schema_version"] = 99
    with pytest.raises(TiercutError, match="schema_version"):
        LayerGraph.from_dict(data)
    with pytest.raises(TiercutError, match="nodes"):
        LayerGraph.from_dict({"schema_version": 1})
    with pytest.raises(TiercutError, match="lacks the field"):
        LayerGraph.from_dict({"schema_version": 1, "nodes": [{"op": "input"}]})


def test_graph_validates_order_and_names():
    with pytest.raises(TiercutError, match="topological"):
        LayerGraph(nodes=(Node("a", "relu", inputs=("x",)), Node("x", "input")))
    with pytest.raises(TiercutError, match="two nodes named"):
        LayerGraph(nodes=(Node("x", "input"), Node("x", "relu")))
    with pytest.raises(TiercutError, match="has inputs"):
        LayerGraph(nodes=(Node("x", "input"), Node("y", "input", inputs=("x",))))
    with pytest.raises(TiercutError, match="no node"):
        LayerGraph(nodes=(Node("x", "input"),))["missing"]


def test_factory_spec_and_shared_parameters_counted_once():
    graph = extract_graph("fixtures_models:tiny_net", (1, 3, 8, 8))
    model = __import__("fixtures_models").tiny_net()
    unique = sum(p.numel() for p in model.parameters())  # parameters() de-duplicates shared tensors
    assert graph.total_param_count == unique
    assert graph["left"].param_count == 4 * 4 + 4
    assert graph["right"].param_count == 4  # its weight is left's, counted there; only its bias here
    assert graph["add"].inputs == ("left", "right")
    assert graph["conv"].flops == graph["conv"].matmul_flops == 2 * 3 * 4 * 9 * 8 * 8


def test_fx_failure_falls_back_to_torch_export():
    model = __import__("fixtures_models").LoopsOverBatch().eval()
    cap = capture(model, (torch.randn(2, 6),))
    assert cap.method == "export"
    assert cap.graph.total_param_count == 6 * 3 + 3
    assert {"linear", "stack"} <= {n.op for n in cap.graph}
    assert cap.graph.total_matmul_flops == 2 * (2 * 6 * 3)  # two rows through the 6->3 linear
    x = torch.randn(2, 6)
    torch.testing.assert_close(cap.graph_module(x), model(x))
    assert capture_model("fixtures_models:LoopsOverBatch", (2, 6)).method == "export"


def test_untraceable_model_names_the_module():
    torch.manual_seed(0)
    with pytest.raises(TiercutError, match=r"module 'inner'") as err:
        capture(__import__("fixtures_models").Untraceable().eval(), (torch.randn(2, 6),))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("spec", "shape", "message"),
    [
        ("no_such_model", None, "unknown model 'no_such_model'"),
        ("fixtures_models:missing", (1, 3), "has no 'missing'"),
        ("no_such_package.mod:make", (1, 3), "cannot import"),
        ("fixtures_models:not_a_module", (1, 3), "not a torch.nn.Module"),
        ("fixtures_models:raises", (1, 3), "raised RuntimeError: factory exploded"),
        ("fixtures_models:tiny_net", None, "needs an input shape"),
        ("resnet18", (1, 3), "fails on the example input"),
    ],
)
def test_model_errors_are_one_line(spec, shape, message):
    with pytest.raises(TiercutError, match=message) as err:
        extract_graph(spec, shape)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["1,a", "", "1,0,3", "-1,3"])
def test_bad_shapes(text):
    with pytest.raises(TiercutError, match="input shape"):
        parse_shape(text)


def test_parse_shape():
    assert parse_shape("1,3,224,224") == (1, 3, 224, 224)
    assert parse_shape("1x3x32x32") == (1, 3, 32, 32)


def test_unknown_granularity():
    with pytest.raises(TiercutError, match="granularity"):
        extract_graph("fixtures_models:tiny_net", (1, 3, 8, 8), granularity="layer")
