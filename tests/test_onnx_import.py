"""ONNX path of the graph stage: models exported from torch in the test give the torch path's totals.

Exports use torch's TorchScript exporter (``dynamo=False``, fast and offline)
with ``training=PRESERVE`` and ``do_constant_folding=False`` so BatchNorm is
not folded into the convolutions (a folded model has other parameters); one
test uses the dynamo exporter (``optimize=False`` for the same reason), whose
node metadata carries module classes.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from lanes import fast_first
from tiercut.cli import main
from tiercut.errors import TiercutError
from tiercut.graph import LayerGraph, capture_model, extract_graph
from tiercut.graph.blocks import collapse_blocks
from tiercut.graph.models import build_zoo_model
from tiercut.graph.onnx_import import onnx_graph

ZOO_EXPORTS = ("resnet18", "alexnet", "mobilenet_v2", "googlenet")


def export_legacy(module: nn.Module, example: torch.Tensor, path: Path, **kwargs) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=False, input_names=["x"], output_names=["y"], **kwargs,
        )
    return path


@pytest.fixture(scope="module")
def zoo_onnx(tmp_path_factory, capture_zoo):
    """zoo name -> (exported .onnx path, the torch path's CapturedModel), exported once."""
    folder = tmp_path_factory.mktemp("onnx_zoo")
    cache: dict[str, tuple[Path, object]] = {}

    def get(name: str):
        if name not in cache:
            captured = capture_zoo(name)
            module = build_zoo_model(name)  # the same seed as the captured one
            cache[name] = (export_legacy(module, captured.example_inputs[0], folder / f"{name}.onnx"), captured)
        return cache[name]

    return get


class SmallNet(nn.Module):
    """conv -> bn -> relu6 -> pool -> flatten -> linear (16x16 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU6()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.act(self.bn(self.conv(x)))), 1))


@pytest.fixture(scope="module")
def small_net() -> nn.Module:
    torch.manual_seed(0)
    net = SmallNet().eval()
    with torch.no_grad():  # non-trivial statistics, so the exporter cannot merge equal buffers
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    return net


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory, small_net) -> Path:
    path = tmp_path_factory.mktemp("dynamic") / "small_dynamic.onnx"
    return export_legacy(small_net, torch.randn(1, 3, 16, 16), path, dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})


@pytest.fixture(scope="module")
def static_onnx(tmp_path_factory, small_net) -> Path:
    return export_legacy(small_net, torch.randn(1, 3, 16, 16), tmp_path_factory.mktemp("static") / "small.onnx")


def save(graph: onnx.GraphProto, path: Path, opset: int = 17) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, str(path))
    return path


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# --------------------------------------------------------------------------- zoo models exported from torch
@pytest.mark.parametrize("name", fast_first(ZOO_EXPORTS))
def test_exported_zoo_model_has_the_torch_paths_totals(name, zoo_onnx):
    path, captured = zoo_onnx(name)
    torch_graph = captured.graph
    graph = onnx_graph(path)

    assert graph.total_param_count == torch_graph.total_param_count
    assert graph.total_matmul_flops == pytest.approx(torch_graph.total_matmul_flops, rel=0.01)
    assert graph.total_flops == pytest.approx(torch_graph.total_flops, rel=0.01)
    # torch also counts BatchNorm's num_batches_tracked (8 bytes each), which ONNX does not carry
    assert graph.total_param_bytes == pytest.approx(torch_graph.total_param_bytes, rel=1e-4)
    assert graph.unused_param_count == 0

    # valid DAG (LayerGraph checks order), one input, the classifier as the one output
    assert [n.out_shape for n in graph.inputs] == [tuple(captured.example_inputs[0].shape)]
    (output,) = graph.outputs
    assert output.op == "linear" and output.out_shape == (1, 1000) and output.out_dtype == "float32"
    consumers = graph.consumers()
    assert all(consumers[n.name] for n in graph.nodes if not n.is_output)  # nothing dangles
    assert LayerGraph.from_dict(json.loads(json.dumps(graph.to_dict()))) == graph


@pytest.mark.slow
def test_ops_use_the_torch_vocabulary(zoo_onnx):
    resnet = onnx_graph(zoo_onnx("resnet18")[0])
    torch_resnet = zoo_onnx("resnet18")[1].graph
    assert resnet.flops_by_op() == torch_resnet.flops_by_op()  # same op kinds, same FLOPs per kind
    ops = {n.op for n in onnx_graph(zoo_onnx("mobilenet_v2")[0])}
    assert {"input", "conv2d", "batchnorm2d", "relu6", "add", "adaptiveavgpool2d", "flatten", "linear"} == ops
    googlenet_ops = {n.op for n in onnx_graph(zoo_onnx("googlenet")[0])}
    assert {"cat", "maxpool2d"} <= googlenet_ops


def test_weights_the_exporter_merged_are_still_counted_per_layer(zoo_onnx):
    """Random-init BatchNorms are all ones/zeros: the exporter keeps one copy and Identity aliases."""
    path, _ = zoo_onnx("resnet18")
    model = onnx.load(str(path), load_external_data=False)
    assert sum(n.op_type == "Identity" for n in model.graph.node) > 0
    graph = onnx_graph(path)
    assert "identity" not in {n.op for n in graph}  # folded into the BatchNorms that read them
    bn = graph["/layer4/layer4.1/bn2/BatchNormalization"]
    assert bn.param_count == 2 * 512 and bn.param_bytes == 4 * 512 * 4  # weight, bias; mean, var are buffers


@pytest.mark.slow
def test_an_export_with_batchnorm_folded_counts_the_files_weights(tmp_path, zoo_onnx):
    """The TorchScript exporter's defaults fold each BatchNorm (weight, bias: 2C) into a conv bias (C)."""
    _, captured = zoo_onnx("resnet18")
    path = tmp_path / "folded.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(build_zoo_model("resnet18"), captured.example_inputs, str(path), dynamo=False)
    graph = onnx_graph(path)
    bn_channels = sum(m.num_features for m in build_zoo_model("resnet18").modules() if isinstance(m, nn.BatchNorm2d))
    assert "batchnorm2d" not in {n.op for n in graph}
    assert graph.total_param_count == captured.graph.total_param_count - bn_channels
    assert graph.total_matmul_flops == captured.graph.total_matmul_flops


@pytest.mark.parametrize("name", fast_first(["resnet18", "googlenet", "mobilenet_v2"]))
def test_block_granularity_finds_the_torch_blocks(name, zoo_onnx):
    path, captured = zoo_onnx(name)
    module_graph = onnx_graph(path)
    blocks = onnx_graph(path, granularity="block")
    torch_blocks, _ = collapse_blocks(captured.graph, captured.owner, build_zoo_model(name))

    assert blocks.granularity == "block"
    assert blocks.total_flops == module_graph.total_flops
    assert blocks.total_param_count == module_graph.total_param_count
    # the same blocks and single layers, in the same order (eval-mode exports drop dropout layers)
    assert [n.module for n in blocks if n.module] == [n.module for n in torch_blocks if n.module and n.op != "dropout"]
    merged = [n.name for n in blocks if not n.is_input and not n.name.startswith("/")]
    assert merged and all(len(blocks[m].members) > 1 for m in merged)
    assert [n.name for n in blocks.outputs] == [n.name for n in module_graph.outputs]


@pytest.mark.slow
def test_dynamo_export_with_module_classes(tmp_path, capture_zoo):
    captured = capture_zoo("resnet18")
    path = tmp_path / "resnet18_dynamo.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            build_zoo_model("resnet18"), captured.example_inputs, str(path), dynamo=True, optimize=False, verbose=False,
        )
    graph = onnx_graph(path)
    assert graph.total_param_count == captured.graph.total_param_count
    assert graph.total_matmul_flops == pytest.approx(captured.graph.total_matmul_flops, rel=0.01)
    blocks = onnx_graph(path, granularity="block")
    torch_blocks, _ = collapse_blocks(captured.graph, captured.owner, build_zoo_model("resnet18"))
    # the metadata names classes: blocks carry them as their op, like the torch path's blocks
    assert [n.module for n in blocks if n.module] == [n.module for n in torch_blocks if n.module]
    assert [n.name for n in blocks if n.op == "basicblock"] == [n.name for n in torch_blocks if n.op == "basicblock"]
    assert len([n for n in blocks if n.op == "basicblock"]) == 8
    assert {n.module for n in graph if n.op == "conv2d"} >= {"conv1", "layer1.0.conv1", "layer4.1.conv2"}


# --------------------------------------------------------------------------- shapes and weights
def test_dynamic_batch_takes_the_input_shape(dynamic_onnx, static_onnx, small_net):
    with pytest.raises(TiercutError) as exc:
        onnx_graph(dynamic_onnx)
    message = one_line(exc)
    assert "'x'" in message and "--input-shape" in message and "static shapes" in message

    batch4 = onnx_graph(dynamic_onnx, (4, 3, 16, 16))
    batch1 = onnx_graph(static_onnx)
    torch4 = capture_model(small_net, (4, 3, 16, 16)).graph
    assert batch4.outputs[0].out_shape == (4, 10)
    assert batch4.total_matmul_flops == 4 * batch1.total_matmul_flops == torch4.total_matmul_flops
    assert batch4.total_flops == torch4.total_flops
    assert batch4.total_param_count == torch4.total_param_count == sum(p.numel() for p in small_net.parameters())
    assert batch4.inputs[0].out_bytes == 4 * 3 * 16 * 16 * 4
    assert [n.op for n in batch4] == ["input", "conv2d", "batchnorm2d", "relu6", "maxpool2d", "flatten", "linear"]


def test_a_static_export_can_take_another_batch(static_onnx):
    graph = onnx_graph(static_onnx, (2, 3, 16, 16))
    assert graph.outputs[0].out_shape == (2, 10)
    assert graph.total_matmul_flops == 2 * onnx_graph(static_onnx).total_matmul_flops


def test_shared_weight_is_counted_once(tmp_path):
    model = __import__("fixtures_models").tiny_net().eval()
    path = export_legacy(model, torch.randn(1, 3, 8, 8), tmp_path / "tiny.onnx")
    graph = onnx_graph(path)
    torch_graph = extract_graph("fixtures_models:tiny_net", (1, 3, 8, 8))
    assert graph.total_param_count == torch_graph.total_param_count
    assert graph.total_param_bytes == torch_graph.total_param_bytes
    convs = [n for n in graph if n.op == "conv2d"]
    assert [c.param_count for c in convs] == [3 * 4 * 9 + 4, 16 + 4, 4]  # the shared 1x1 weight on the first reader


def _dequantized_linear_graph() -> onnx.GraphProto:
    """x -> MatMul(x, DequantizeLinear(int8 W)) -> Add(bias) -> Reshape(shape constant); one unused weight."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.integers(-100, 100, (6, 4)).astype(np.int8), "w_q"),
        numpy_helper.from_array(np.array(0.05, dtype=np.float32), "w_scale"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), "w_zero"),
        numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "bias"),
        numpy_helper.from_array(np.zeros((3, 3), dtype=np.float32), "never_read"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="dq"),
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "bias"], ["hb"], name="add"),
        helper.make_node("Constant", [], ["shape"], name="shape_const",
                         value=numpy_helper.from_array(np.array([2, 2, 2], dtype=np.int64))),
        helper.make_node("Reshape", ["hb", "shape"], ["y"], name="reshape"),
    ]
    return helper.make_graph(
        nodes, "dq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits,
    )


def test_constants_fold_into_their_first_reader(tmp_path):
    graph = onnx_graph(save(_dequantized_linear_graph(), tmp_path / "dq.onnx"))
    assert graph.names == ["x", "mm", "add", "reshape"]
    mm, add, reshape = graph["mm"], graph["add"], graph["reshape"]
    assert mm.op == "linear" and mm.members == ("dq", "mm") and mm.inputs == ("x",)
    assert mm.param_count == 24 and mm.param_bytes == 24 * 4  # the dequantized float weight
    assert mm.flops == mm.matmul_flops == 2 * 2 * 4 * 6
    assert add.param_count == 4 and add.flops == 8 and add.matmul_flops == 0
    assert reshape.members == ("shape_const", "reshape") and reshape.param_count == 0 and reshape.param_bytes == 24
    assert reshape.is_output and reshape.out_shape == (2, 2, 2) and reshape.out_bytes == 32
    assert graph.unused_param_count == 9 and graph.unused_param_bytes == 36


def test_graph_without_scopes_has_no_blocks(tmp_path):
    path = save(_dequantized_linear_graph(), tmp_path / "plain.onnx")
    module_graph = onnx_graph(path)
    blocks = onnx_graph(path, granularity="block")
    assert blocks.granularity == "block"
    assert blocks.nodes == module_graph.nodes


def test_external_weights_are_not_needed(tmp_path, static_onnx):
    model = onnx.load(str(static_onnx))
    path = tmp_path / "external.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="external.data", size_threshold=0)
    (tmp_path / "external.data").unlink()  # only shapes are read
    assert onnx_graph(path).total_param_count == onnx_graph(static_onnx).total_param_count


# --------------------------------------------------------------------------- FLOP formulas against torch's counter
def _flops_of_single_node(tmp_path: Path, node: onnx.NodeProto, inputs: dict[str, tuple[int, ...]], opset: int = 17) -> int:
    graph = helper.make_graph(
        [node], "one", [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v)) for k, v in inputs.items()],
        [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)],
    )
    layer_graph = onnx_graph(save(graph, tmp_path / "one.onnx", opset))
    (only,) = [n for n in layer_graph if not n.is_input]
    assert only.flops == only.matmul_flops
    return only.flops


def _torch_flops(fn, *tensors) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*tensors)
    return counter.get_total_flops()


dims = st.integers(1, 6)


@settings(max_examples=25, deadline=None)
@given(batch=st.lists(dims, min_size=0, max_size=2), m=dims, k=dims, n=dims)
def test_matmul_flops_match_torch(tmp_path_factory, batch, m, k, n):
    a, b = (*batch, m, k), (*batch, k, n)
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    got = _flops_of_single_node(tmp_path_factory.mktemp("mm"), node, {"a": a, "b": b})
    assert got == _torch_flops(torch.matmul, torch.randn(a), torch.randn(b))


@settings(max_examples=25, deadline=None)
@given(
    batch=dims, groups=st.integers(1, 3), cin=st.integers(1, 3), cout=st.integers(1, 3), size=st.integers(4, 8),
    kernel=st.integers(1, 3), stride=st.integers(1, 2), transposed=st.booleans(),
)
def test_conv_flops_match_torch(tmp_path_factory, batch, groups, cin, cout, size, kernel, stride, transposed):
    c_in, c_out = cin * groups, cout * groups
    x = (batch, c_in, size, size)
    w = (c_in, c_out // groups, kernel, kernel) if transposed else (c_out, c_in // groups, kernel, kernel)
    op = "ConvTranspose" if transposed else "Conv"
    node = helper.make_node(op, ["x", "w"], ["y"], group=groups, strides=[stride, stride], kernel_shape=[kernel, kernel])
    got = _flops_of_single_node(tmp_path_factory.mktemp("conv"), node, {"x": x, "w": w})
    fn = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
    assert got == _torch_flops(lambda a, b: fn(a, b, stride=stride, groups=groups), torch.randn(x), torch.randn(w))


@pytest.mark.parametrize(
    ("equation", "a", "b"),
    [
        ("bij,bjk->bik", (2, 3, 4), (2, 4, 5)),
        ("ij,jk", (3, 4), (4, 5)),
        ("...ij,...jk->...ik", (2, 2, 3, 4), (2, 2, 4, 5)),
        ("bhqd,bhkd->bhqk", (2, 3, 4, 8), (2, 3, 6, 8)),
    ],
)
def test_einsum_flops_match_torch(tmp_path, equation, a, b):
    node = helper.make_node("Einsum", ["a", "b"], ["y"], equation=equation)
    got = _flops_of_single_node(tmp_path, node, {"a": a, "b": b})
    assert got == _torch_flops(lambda x, y: torch.einsum(equation, x, y), torch.randn(a), torch.randn(b))


def test_gemm_flops(tmp_path):
    gemm = helper.make_node("Gemm", ["a", "b"], ["y"], transA=1)
    assert _flops_of_single_node(tmp_path, gemm, {"a": (7, 3), "b": (7, 5)}) == _torch_flops(
        torch.mm, torch.randn(3, 7), torch.randn(7, 5)
    )


@pytest.mark.skipif(onnx.defs.onnx_opset_version() < 23, reason="the Attention op needs opset 23")
def test_attention_flops(tmp_path):
    attention = helper.make_node("Attention", ["q", "k", "v"], ["y"])
    shapes = {"q": (2, 4, 5, 8), "k": (2, 4, 7, 8), "v": (2, 4, 7, 6)}
    assert _flops_of_single_node(tmp_path, attention, shapes, opset=23) == sdpa_flop_count(*shapes.values())
    attention_3d = helper.make_node("Attention", ["q", "k", "v"], ["y"], q_num_heads=4, kv_num_heads=4)
    shapes_3d = {"q": (2, 5, 32), "k": (2, 7, 32), "v": (2, 7, 24)}
    assert _flops_of_single_node(tmp_path, attention_3d, shapes_3d, opset=23) == sdpa_flop_count(*shapes.values())


# --------------------------------------------------------------------------- errors
def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TiercutError) as exc:
        onnx_graph(tmp_path / "absent.onnx")
    assert "does not exist" in one_line(exc)
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    with pytest.raises(TiercutError) as exc:
        onnx_graph(folder)
    assert "not a file" in one_line(exc)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a protobuf at all\n", bytes(range(256)) * 4, b"\x08\x07\x12\x05hello"],
    ids=["empty", "text", "binary", "no-graph"],
)
def test_corrupt_bytes_are_not_an_onnx_model(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(TiercutError) as exc:
        onnx_graph(path)
    assert "not an ONNX model" in one_line(exc)


def test_graph_without_inputs(tmp_path):
    const = helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(np.ones(3, dtype=np.float32)))
    graph = helper.make_graph([const], "no_inputs", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    with pytest.raises(TiercutError) as exc:
        onnx_graph(save(graph, tmp_path / "no_inputs.onnx"))
    assert "no inputs" in one_line(exc)


def test_input_shape_of_the_wrong_rank(static_onnx):
    with pytest.raises(TiercutError) as exc:
        onnx_graph(static_onnx, (1, 3, 16))
    message = one_line(exc)
    assert "rank 3" in message and "rank 4" in message and "'x'" in message


def test_input_shape_the_model_cannot_take(static_onnx):
    with pytest.raises(TiercutError) as exc:
        onnx_graph(static_onnx, (1, 3, 32, 32))  # the classifier expects 8*8*8 features
    assert "shape inference failed" in one_line(exc)


def test_malformed_graphs(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    undefined = helper.make_graph([helper.make_node("Add", ["x", "ghost"], ["y"], name="adds_ghost")], "g", [x], [y])
    with pytest.raises(TiercutError) as exc:
        onnx_graph(save(undefined, tmp_path / "undefined.onnx"))
    assert "'ghost'" in one_line(exc)
    cycle = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second")],
        "g", [x], [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(cycle, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "cycle.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(TiercutError) as exc:
        onnx_graph(path)
    assert "cycle" in one_line(exc)


def test_unknown_granularity(static_onnx):
    with pytest.raises(TiercutError) as exc:
        onnx_graph(static_onnx, granularity="layer")
    assert "granularity" in one_line(exc)


# --------------------------------------------------------------------------- CLI
def test_cli_reads_an_onnx_file(static_onnx, dynamic_onnx, capsys):
    assert main(["graph", str(static_onnx), "--json"]) == 0
    graph = LayerGraph.from_dict(json.loads(capsys.readouterr().out))
    assert graph.model == "small.onnx" and graph.total_param_count == onnx_graph(static_onnx).total_param_count
    assert main(["graph", str(dynamic_onnx), "--input-shape", "3,3,16,16", "--granularity", "block"]) == 0
    out = capsys.readouterr().out
    assert "total:" in out and "conv2d" in out


@pytest.mark.parametrize("content", [b"garbage bytes, not a model", None], ids=["corrupt", "missing"])
def test_cli_unreadable_onnx_is_one_line_and_exit_2(tmp_path, content, capsys):
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    assert main(["graph", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tiercut: error:") and "model.onnx" in err
    assert "Traceback" not in err


def test_cli_dynamic_onnx_without_shape(dynamic_onnx, capsys):
    assert main(["graph", str(dynamic_onnx)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--input-shape" in err


def test_sizes_follow_the_element_type(tmp_path):
    """out_bytes and param_bytes use the real element size (float16 here)."""
    w = numpy_helper.from_array(np.ones((4, 4), dtype=np.float16), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)], initializer=[w],
    )
    layer_graph = onnx_graph(save(graph, tmp_path / "half.onnx"))
    mm = layer_graph["mm"]
    assert (mm.out_dtype, mm.out_bytes, mm.param_bytes, mm.param_count) == ("float16", 3 * 4 * 2, 16 * 2, 16)
    assert layer_graph["x"].out_bytes == math.prod((3, 4)) * 2
