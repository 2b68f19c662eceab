"""Compression that changes the model (tiercut.preprocess.compress): it runs, graph-extracts, splits, saves and loads.

- low-rank factors are exact at full rank (Tai et al.'s closed form);
- channel pruning removing all-zero filters leaves the output unchanged;
- every method's model runs, its layer graph has fewer weight bytes, and split
  execution equals the compressed model itself;
- a saved compressed model loads (safetensors + JSON spec) to the same outputs;
- on the digits data, int8 and fp16 stay within 1 point of the reference.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from tiercut.errors import TiercutError
from tiercut.graph import capture_model, split_by_placement
from tiercut.preprocess.compress import (
    METHODS,
    SPEC_FILE,
    compress,
    load_compressed,
    measure_compression,
    save_compressed,
)
from tiercut.preprocess.lowrank import LowRankSettings, decomposable, factor_module, factor_weights
from tiercut.preprocess.prune import PruneSettings, prune_channels

BASE = "tiercut.exits.models:digits_cnn"
INPUTS = ["input:float32:1x1x8x8"]


def small_net() -> nn.Module:
    torch.manual_seed(0)
    from tiercut.exits.models import digits_cnn

    return digits_cnn().eval()


@pytest.mark.parametrize(
    "layer, shape",
    [
        (nn.Conv2d(5, 7, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2)), (2, 5, 11, 13)),
        (nn.Conv2d(6, 4, 1, stride=2), (1, 6, 8, 8)),
        (nn.Linear(9, 6), (3, 9)),
    ],
)
def test_lowrank_factors_are_exact_at_full_rank(layer, shape):
    torch.manual_seed(1)
    x = torch.randn(*shape)
    kind = decomposable(layer)
    rank, first, second = factor_weights(layer, kind, None, LowRankSettings(energy=1.0))
    pair = factor_module(layer, kind, rank)
    with torch.no_grad():
        pair[0].weight.copy_(first)
        pair[1].weight.copy_(second)
        pair[1].bias.copy_(layer.bias)
    assert torch.allclose(pair(x), layer(x), atol=1e-5)
    low, first, second = factor_weights(layer, kind, 1, LowRankSettings())
    assert low == 1 and first.shape[0] == 1 and second.shape[1] == 1


def test_pruning_zero_filters_keeps_the_output():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    with torch.no_grad():
        for conv in (model[0], model[2]):  # half the filters are zero (the smallest L1 norms), so removable
            conv.weight[::2] = 0.0
            conv.bias[::2] = 0.0
    x = torch.randn(2, 3, 6, 6)
    pruned, edits = prune_channels(model.eval(), (x,), PruneSettings(ratio=0.5))
    assert pruned[0].out_channels == 4 and pruned[2].in_channels == 4 and pruned[2].out_channels == 2
    assert torch.allclose(pruned(x), model(x), atol=1e-6)
    assert {e["module"] for e in edits} >= {"0", "2"}
    assert pruned[4].in_features == 2 * 4 * 4  # conv 2's channels went too, through the flatten
    assert {e['module'] for e in edits} == {'0', '2', '4'}


@pytest.mark.parametrize(
    "method", [pytest.param(m, marks=pytest.mark.slow) if m in ("lowrank", "int8") else m for m in METHODS]
)
def test_compressed_models_run_extract_split_and_reload(method, tmp_path):
    model = small_net()
    x = torch.randn(1, 1, 8, 8)
    kwargs = {"energy": 0.5} if method == "lowrank" else {"calibration": [(torch.randn(16, 1, 8, 8),)]}
    result = compress(model, method, (x,), **kwargs)
    new = result.model
    assert new(x).shape == model(x).shape
    before = capture_model(model, example_inputs=(x,)).graph
    cap = capture_model(new, example_inputs=(x,))
    assert 0 < cap.graph.total_param_bytes < before.total_param_bytes
    if method in ("lowrank", "prune"):
        assert cap.graph.total_flops < before.total_flops
    names = cap.graph.names
    placement = {n: ("end" if i <= len(names) // 2 else "cloud") for i, n in enumerate(names)}
    split = split_by_placement(cap, placement, verify=False)
    assert len(split.partitions) == 2
    assert torch.equal(split.run(x), new(x))
    # saved and loaded: the same architecture and weights, so the same outputs
    out = save_compressed(tmp_path / "m", new, BASE, INPUTS, [result.stage])
    loaded, examples, spec = load_compressed(out)
    batch = torch.randn(5, 1, 8, 8)
    assert torch.equal(loaded(batch), new(batch))
    assert spec["stages"][0].method == method and examples[0].shape == (1, 1, 8, 8)
    report = measure_compression(method, new, (x,), reference=model, eval_inputs=batch, runs=2)
    assert report.weight_bytes == cap.graph.total_param_bytes and report.latency_s > 0
    assert 0.0 <= report.agreement <= 1.0 and report.relative_error >= 0


def test_compress_refuses_bad_requests():
    model = small_net()
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(TiercutError, match="not known"):
        compress(model, "distill", (x,))
    with pytest.raises(TiercutError, match="--energy"):
        compress(model, "lowrank", (x,), energy=1.5)
    with pytest.raises(TiercutError, match="--ratio"):
        compress(model, "prune", (x,), ratio=1.0)
    half = compress(model, "fp16", (x,)).model
    with pytest.raises(TiercutError, match="already fp16 or int8"):
        compress(half, "prune", (x,))


def _saved(tmp_path):
    model = small_net()
    result = compress(model, "prune", (torch.randn(1, 1, 8, 8),), ratio=0.25)
    return save_compressed(tmp_path / "m", result.model, BASE, INPUTS, [result.stage])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update(format="other"), "is not a 'tiercut-compressed' spec"),
        (lambda s: s.update(base="evil.py:make"), "Python code"),
        (lambda s: s.update(base="os:system"), "Python code"),
        (lambda s: s["stages"][0]["edits"].append({"op": "exec", "module": "0"}), "an edit needs op"),
        (lambda s: s["stages"][0]["edits"].append({"op": "resize", "module": "nope", "out": 3}), "lacks"),
        (lambda s: s["stages"][0]["edits"][0].update(out=7), "do not fit"),
        (lambda s: s["state"]["0.weight"].update(kind="pickle"), "unknown kind"),
    ],
)
def test_bad_compressed_specs_are_one_line_errors(tmp_path, change, message):
    out = _saved(tmp_path)
    spec = json.loads((out / SPEC_FILE).read_text())
    change(spec)
    (out / SPEC_FILE).write_text(json.dumps(spec))
    with pytest.raises(TiercutError, match=message):
        load_compressed(out)


def test_save_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("x")
    with pytest.raises(TiercutError, match="not an empty directory"):
        save_compressed(tmp_path / "m", small_net(), BASE, INPUTS, [])
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["keep.txt"]


@pytest.mark.slow
def test_int8_and_fp16_keep_digits_accuracy_within_one_point():
    from tiercut.exits.train import TrainingSettings, load_digits_split, train_jointly

    data = load_digits_split((1, 1, 8, 8), seed=0)
    model = small_net()
    train_jointly(model, data, TrainingSettings(epochs=8, seed=0))
    x = data.x_test[:1]
    reference = measure_compression("reference", model, (x,), eval_inputs=data.x_test, eval_labels=data.y_test, runs=2)
    assert reference.accuracy > 0.9
    for method in ("int8", "fp16"):
        new = compress(model, method, (x,), calibration=[(data.x_train[:256],)]).model
        report = measure_compression(method, new, (x,), reference=model, eval_inputs=data.x_test,
                                     eval_labels=data.y_test, runs=2)
        assert abs(report.accuracy - reference.accuracy) <= 0.01, (method, report.accuracy, reference.accuracy)
        assert report.agreement >= 0.98


# ----------------------------------------------------------------------------- the CLI
CLI_MODEL = [BASE, "--input-shape", "1,1,8,8"]


@pytest.mark.slow
def test_cli_compress_writes_a_model_graph_and_plan_read(tmp_path, capsys):
    from tiercut.cli import main

    out = tmp_path / "pruned"
    assert main(["compress", *CLI_MODEL, "--method", "prune", "--ratio", "0.5", "--runs", "2", "--out", str(out),
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["bytes_ratio"] < 0.5 and payload["flops_ratio"] < 0.5
    assert payload["compressed"]["agreement"] is not None and payload["data"].startswith("random weights")
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", SPEC_FILE]
    assert main(["graph", str(out), "--json", "-q"]) == 0
    graph = json.loads(capsys.readouterr().out)
    assert sum(n["param_bytes"] for n in graph["nodes"]) == payload["compressed"]["weight_bytes"]
    assert graph["model"] == "digits_cnn+prune"
    # a compressed model compresses further (stages chain)
    assert main(["compress", str(out), "--method", "fp16", "--runs", "2", "--out", str(tmp_path / "half"), "--json"]) == 0
    chained = json.loads(capsys.readouterr().out)
    assert chained["compressed"]["weight_bytes"] == payload["compressed"]["weight_bytes"] // 2
    spec = json.loads((tmp_path / "half" / SPEC_FILE).read_text())
    assert [s["method"] for s in spec["stages"]] == ["prune", "fp16"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "distill"], "--method 'distill' is not known"),
        (["--method", "lowrank", "--energy", "0"], "--energy 0.0 must lie in (0, 1]"),
        (["--method", "prune", "--ratio", "1"], "--ratio 1.0 must lie in [0, 1)"),
        (["--method", "lowrank", "--rank", "0"], "--rank 0 must be >= 1"),
        (["--method", "int8", "--int8-mode", "fast"], "--int8-mode 'fast' is not known"),
        (["--method", "prune", "--finetune-epochs", "2"], "add --digits"),
        (["--method", "fp16", "--runs", "0"], "--runs 0 must be >= 1"),
        (["--method", "prune", "--pruning", "random"], "--pruning 'random' is not known"),
        (["--method", "fp16", "--pruning", "magnitude"], "goes with --method prune"),
    ],
)
def test_cli_compress_bad_input(tmp_path, capsys, extra, message):
    from tiercut.cli import main

    out = tmp_path / "m"
    assert main(["compress", *CLI_MODEL, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_cli_compress_refuses_a_used_out_directory(tmp_path, capsys):
    from tiercut.cli import main

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("keep")
    assert main(["compress", *CLI_MODEL, "--method", "fp16", "--out", str(tmp_path / "used")]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert (tmp_path / "used" / "x").read_text() == "keep"


# ----------------------------------------------------------------------------- uploads see compressed sizes
@pytest.mark.parametrize("method", ["prune", "fp16"])
def test_upload_planners_see_the_compressed_weights(method, tmp_path):
    """A compressed model's graph carries its smaller weights into the problem, so its partitions upload faster."""
    from test_plan_zoo import zoo_problem
    from tiercut.graph import extract_graph
    from tiercut.upload import plan_upload

    model = small_net()
    x = torch.randn(1, 1, 8, 8)
    result = compress(model, method, (x,), ratio=0.5)
    out = save_compressed(tmp_path / "m", result.model, BASE, INPUTS, [result.stage])
    times = {}
    for label, spec in (("reference", BASE), ("compressed", str(out))):
        graph = extract_graph(spec, (1, 1, 8, 8) if spec == BASE else None)
        problem = zoo_problem(graph, "neurosurgeon-3g", "latency")
        on_cloud = {n.name: ("mobile" if n.is_input else "cloud") for n in graph}
        upload = plan_upload(problem, "direct", target=on_cloud)
        assert upload.param_bytes == graph.total_param_bytes
        times[label] = (upload.param_bytes, upload.upload_end_s)
    ref_bytes, ref_s = times["reference"]
    new_bytes, new_s = times["compressed"]
    assert new_bytes <= 0.51 * ref_bytes
    assert new_s < ref_s


# ----------------------------------------------------------------------------- magnitude pruning, stored sparse
def test_magnitude_pruning_zeroes_the_smallest_weights_of_each_layer_exactly():
    from tiercut.preprocess.magnitude import MagnitudeSettings, prune_magnitude

    model = small_net()
    pruned, layers = prune_magnitude(model, MagnitudeSettings(sparsity=0.75))
    for row in layers:
        before = model.get_submodule(row["module"]).weight.detach().abs().reshape(-1)
        after = pruned.get_submodule(row["module"]).weight.detach().reshape(-1)
        k = round(0.75 * before.numel())
        assert row["zeros"] == int((after == 0).sum()) == k  # exactly that many (random weights have no ties)
        # every survivor is at least as large as every pruned weight, and keeps its value
        assert before[after != 0].min() >= before[after == 0].max()
        assert torch.equal(after[after != 0], model.get_submodule(row["module"]).weight.detach().reshape(-1)[after != 0])
    assert pruned is not model and (model.get_submodule(layers[0]["module"]).weight != 0).all()


def test_sparse_storage_round_trips_and_refuses_a_lying_file():
    from tiercut.preprocess.magnitude import sparse_bytes, sparse_decode, sparse_encode

    t = torch.randn(6, 5, 3)
    t[t.abs() < 1.0] = 0.0
    bitmap, values = sparse_encode(t)
    assert torch.equal(sparse_decode(bitmap, values, list(t.shape), "w"), t)
    assert bitmap.numel() * bitmap.element_size() + values.numel() * 4 == sparse_bytes(t) < t.numel() * 4
    with pytest.raises(TiercutError, match="bitmap has"):  # a shape the bitmap cannot cover allocates nothing
        sparse_decode(bitmap, values, [10**6, 10**6], "w")
    with pytest.raises(TiercutError, match="values for"):
        sparse_decode(bitmap, values[:-1], list(t.shape), "w")
    with pytest.raises(TiercutError, match="shape must be"):
        sparse_decode(bitmap, values, "90", "w")


def test_magnitude_pruned_model_is_stored_sparse_reloads_exactly_and_reports_dense_flops(tmp_path):
    model = small_net()
    x = torch.randn(1, 1, 8, 8)
    result = compress(model, "prune", (x,), ratio=0.8, pruning="magnitude")
    assert result.stage.settings == {"ratio": 0.8, "pruning": "magnitude"} and result.stage.edits == ()
    dense_dir = save_compressed(tmp_path / "dense", compress(model, "fp16", (x,)).model.float(), BASE, INPUTS, [])
    out = save_compressed(tmp_path / "m", result.model, BASE, INPUTS, [result.stage])
    spec = json.loads((out / SPEC_FILE).read_text())
    assert any(v["kind"] == "sparse" for v in spec["state"].values())
    # the file really shrinks: 20% of the float32 weights plus a bit per element
    assert (out / "model.safetensors").stat().st_size < 0.4 * (dense_dir / "model.safetensors").stat().st_size
    loaded, _, _ = load_compressed(out)
    batch = torch.randn(4, 1, 8, 8)
    assert torch.equal(loaded(batch), result.model(batch))
    # split execution of the pruned model equals the pruned model
    cap = capture_model(loaded, example_inputs=(x,))
    names = cap.graph.names
    split = split_by_placement(cap, {n: ("end" if i <= len(names) // 2 else "cloud") for i, n in enumerate(names)}, verify=False)
    assert torch.equal(split.run(x), loaded(x))
    report = measure_compression("prune", result.model, (x,), reference=model, eval_inputs=batch, runs=2)
    ref = measure_compression("reference", model, (x,), runs=2)
    assert report.flops == ref.flops and report.weight_bytes == ref.weight_bytes  # dense kernels: the cost model's
    assert report.nonzero_flops < 0.5 * ref.flops and report.stored_bytes < 0.4 * ref.stored_bytes
    assert report.sparsity == pytest.approx(0.8, abs=0.01)


@pytest.mark.slow
def test_cli_magnitude_pruning_on_digits_reports_stored_bytes_and_accuracy(tmp_path, capsys):
    from tiercut.cli import main

    out = tmp_path / "sparse"
    assert main(["compress", *CLI_MODEL, "--method", "prune", "--pruning", "magnitude", "--ratio", "0.5", "--digits",
                 "--epochs", "6", "--finetune-epochs", "3", "--runs", "2", "--out", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["stage"]["settings"]["pruning"] == "magnitude"
    assert payload["bytes_ratio"] == 1.0 and payload["flops_ratio"] == 1.0  # dense in memory and in the kernels
    # the pruned weights are zero again after fine-tuning: still stored sparse
    assert payload["compressed"]["sparsity"] >= 0.49
    assert payload["stored_bytes_ratio"] < 0.6 and payload["nonzero_flops_ratio"] < 0.7
    # half the weights of a trained digits CNN by magnitude, fine-tuned, re-pruned: accuracy stays close
    assert payload["compressed"]["accuracy"] >= payload["reference"]["accuracy"] - 0.05


def test_fp16_agreement_on_the_fp32_path_is_scale_invariant():
    """A deep net whose every weight is scaled by 1/8 (a power of two: fp16 rounding commutes with it) outputs
    ~1e-8, which fp16 compute flushes to zero (the argmax is then meaningless); the dequantised path (weights
    rounded to fp16, computed in float32) gives exactly the figures of the unscaled net."""
    torch.manual_seed(0)

    def deep() -> nn.Module:
        layers = [m for _ in range(6) for m in (nn.Linear(16, 16, bias=False), nn.ReLU())]
        return nn.Sequential(*layers, nn.Linear(16, 10, bias=False)).eval()

    model, tiny = deep(), deep()
    tiny.load_state_dict({k: v * 0.125 for k, v in model.state_dict().items()})
    x = torch.randn(1, 16)
    batch = torch.randn(64, 16)
    reports = {}
    for label, net in (("unit", model), ("tiny", tiny)):
        half = compress(net, "fp16", (x,)).model
        reports[label] = measure_compression("fp16", half, (x,), reference=net, eval_inputs=batch, runs=1)
    unit, small = reports["unit"], reports["tiny"]
    assert small.output_rms < 1e-7 < unit.output_rms
    assert small.agreement < unit.agreement  # fp16 compute flushed the small outputs: not a weight error
    assert small.agreement_fp32_path == unit.agreement_fp32_path >= 0.95
    assert small.relative_error_fp32_path == pytest.approx(unit.relative_error_fp32_path, rel=1e-3)
    assert 0 < small.relative_error_fp32_path < 1e-2
