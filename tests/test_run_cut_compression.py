"""``tiercut run --cut-compression``: the plan's compressed cut really travels compressed between real workers.

A small conv net whose first two layers are private (pinned to the end
device) is cut after its first ReLU; on a 100 kB/s link JALAD compresses that
64 kB tensor (budget: 0.25 of top-1 agreement, as measured on 8 random
inputs; the random-weight net's logits are close, so int8 may flip one).
The same run with compression off is the reference: the bytes on the wire
shrink, and the answers agree with the uncompressed model as the
plan's declared accuracy loss says.
"""

from __future__ import annotations

import functools

import pytest
import torch
import yaml
from torch import nn

from tiercut.errors import TiercutError

ENVIRONMENT = {
    "name": "cut-pair",
    "devices": [{"name": "end", "tier": "end"}, {"name": "edge", "tier": "edge"}],
    "links": [{"a": "end", "b": "edge", "bandwidth_bytes_per_s": 1.0e5, "latency_s": 0.002}],
}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 128, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10),
    ).eval()


@functools.cache
def _table() -> dict[str, dict[str, float]]:
    """Compute seconds: the end device is slow at the big conv, the edge fast at everything."""
    from tiercut.graph import capture_model

    names = [n.name for n in capture_model(_net(), (1, 3, 32, 32)).graph if not n.is_input]
    heavy = names[2]
    return {n: ({"end": 1.0, "edge": 2e-3} if n == heavy else {"end": 1e-3, "edge": 1e-4}) for n in names}


def _run(tmp_path, mode: str | None):
    from tiercut.pipeline.run import run

    env = tmp_path / "env.yaml"
    env.write_text(yaml.safe_dump(ENVIRONMENT))
    threads = torch.get_num_threads()
    try:
        return run(
            _net(), str(env), upload_algorithm="direct", source="end", input_shape=(1, 3, 32, 32), queries=2,
            queries_after_upload=4, compute_table=_table(), private_layers=2, cut_compression=mode,
            accuracy_loss_max=None if mode is None else 0.25, verify=True, max_run_s=240,
        )
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_run_sends_the_planned_compressed_cut_with_fewer_bytes_and_the_declared_accuracy(tmp_path):
    compressed = _run(tmp_path, "int8")
    report = compressed.cut_compression
    assert report is not None and report.decision.compression, "on a 100 kB/s link the plan compresses the cut"
    assert set(report.decision.compression.values()) == {"int8"}
    assert report.decision.wire_bytes < 0.5 * report.decision.raw_bytes
    final = [q for q in compressed.result.queries if q.stage == report.final_stage and not q.fallback]
    assert final and report.queries_compared == len(final)
    # the answers are the model's with the cut tensor dequantized (the wire really carried the codes) ...
    assert all(q.output_matches for q in final)
    # ... and agree with the uncompressed model as the plan declared
    assert report.top1_agreement >= 1.0 - report.decision.declared_accuracy_loss - 1.0 / len(final)
    assert report.max_relative_error < 0.05

    raw = _run(tmp_path, None)
    assert raw.cut_compression is None
    raw_final = [q.bytes_moved for q in raw.result.queries if q.stage == report.final_stage and not q.fallback]
    assert raw_final and all(q.output_matches for q in raw.result.queries)
    assert report.bytes_moved_median < 0.5 * sorted(raw_final)[len(raw_final) // 2]
    data = compressed.to_dict()["cut_compression"]
    assert data["compression"] == dict(report.decision.compression) and data["queries_compared"] == len(final)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cut_compression": "int8", "upload_plan": {"stages": []}}, "drop --upload-plan"),
        ({"cut_compression": "int8", "tiled_plan": "plan.json"}, "drop --tiled-plan"),
        ({"cut_compression": "int8", "granularity": "block"}, "module graph"),
        ({"cut_compression": "int9"}, "is not known"),
        ({"accuracy_loss_max": 0.1}, "add --cut-compression"),
        ({"cut_compression": "auto", "accuracy_loss_max": 2.0}, "fraction in [0, 1]"),
    ],
)
def test_a_run_refuses_cut_compression_it_cannot_do_before_any_model_work(kwargs, message):
    from tiercut.pipeline.run import run

    with pytest.raises(TiercutError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run("resnet18", "three-tier", **kwargs)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--cut-compression", "int7"], "--cut-compression 'int7' is not known"),
        (["--accuracy-loss-max", "0.01"], "add --cut-compression auto"),
        (["--cut-compression", "int8", "--upload-plan", "plan.json"], "drop --upload-plan"),
        (["--cut-compression", "int8", "--exits", "exits.json"], "drop --cut-compression"),
    ],
)
def test_cli_run_refuses_bad_cut_compression_in_one_line(extra, message, capsys):
    from tiercut.cli import main

    code = main(["run", "resnet18", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
