"""ONNX models profiled and run in onnxruntime: split by a placement, outputs equal to the whole model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tiercut.errors import TiercutError
from tiercut.graph.onnx_run import load_onnx_model, run_whole, split_onnx

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _export(model, args, path, names):
    torch.onnx.export(model.eval(), args, str(path), dynamo=False, input_names=names)
    return path


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory):
    from fixtures_models import TinyNet

    torch.manual_seed(0)
    return _export(TinyNet(), (torch.randn(1, 3, 8, 8),), tmp_path_factory.mktemp("onnx") / "tiny.onnx", ["image"])


@pytest.fixture(scope="module")
def tiny_transformer(tmp_path_factory):
    from fixtures_models import TinyTransformer

    torch.manual_seed(0)
    args = (torch.randint(0, 50, (1, 12)), torch.zeros(1, 12, dtype=torch.bool))
    return _export(TinyTransformer(), args, tmp_path_factory.mktemp("onnx") / "tt.onnx", ["ids", "mask"])


def _alternating(graph, every):
    names = [n.name for n in graph if not n.is_input]
    placement = {n.name: "end" for n in graph if n.is_input}
    placement.update({name: ("edge" if (i // every) % 2 else "end") for i, name in enumerate(names)})
    return placement


@pytest.mark.parametrize("every", [1, 2, 5])
def test_a_split_onnx_model_equals_the_whole_model(tiny_net, every):
    model = load_onnx_model(tiny_net)
    split = split_onnx(model, _alternating(model.graph, every))
    assert {p.device for p in split.pieces} == {"end", "edge"}
    feeds = {"image": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    (got,), (expected,) = split.run(feeds), run_whole(model, feeds)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    from fixtures_models import TinyNet  # the ONNX file computes what the torch model computes

    torch.manual_seed(0)
    with torch.no_grad():
        np.testing.assert_allclose(got, TinyNet().eval()(torch.from_numpy(feeds["image"])).numpy(), rtol=1e-4, atol=1e-5)


def test_token_ids_and_mask_split_in_onnxruntime(tiny_transformer):
    model = load_onnx_model(tiny_transformer)
    assert model.example_inputs["ids"].dtype == np.int64 and model.example_inputs["mask"].dtype == np.bool_
    split = split_onnx(model, _alternating(model.graph, 7))
    assert len(split.pieces) >= 3
    ids = np.random.default_rng(2).integers(0, 50, (1, 12))
    mask = np.zeros((1, 12), dtype=bool)
    np.testing.assert_allclose(split.run({"ids": ids, "mask": mask})[0],
                               run_whole(model, {"ids": ids, "mask": mask})[0], rtol=1e-5, atol=1e-6)


def test_a_placement_missing_a_node_is_refused(tiny_net):
    model = load_onnx_model(tiny_net)
    with pytest.raises(TiercutError, match="place every node"):
        split_onnx(model, {"image": "end"})


def test_profile_an_onnx_model_node_by_node(tiny_net, tmp_path, capsys):
    from tiercut.cli import main

    out = tmp_path / "profile.json"
    code = main(["profile", str(tiny_net), "--repeats", "3", "--torch-threads", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    graph = load_onnx_model(tiny_net).graph
    assert set(data["nodes"]) == {n.name for n in graph if not n.is_input}
    assert all(node["timing"]["median_s"] > 0 for node in data["nodes"].values())
    assert data["whole_model"]["median_s"] > 0 and data["input_shapes"] == [[1, 3, 8, 8]]
    # the profile matches the ONNX model's graph node by node (same names, ops, FLOPs and bytes), so plans use it
    from tiercut.problem import load_profile_file

    profile = load_profile_file(out)
    assert all(profile.timing_for(graph, n.name) is not None for n in graph if not n.is_input)


def test_onnx_profile_mistakes_are_one_line_errors(tiny_net, tmp_path, capsys):
    from tiercut.cli import main

    code = main(["profile", str(tiny_net), "--clock", "cpu", "--torch-threads", "1", "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert code == 2 and "onnxruntime on the CPU" in err and len(err.strip().splitlines()) == 1
