"""GPUs: --torch-device for profile/serve/run, CUDA-event timing. The GPU tests skip where torch sees no GPU."""

from __future__ import annotations

import pytest
import torch

from tiercut.cli import main
from tiercut.errors import TiercutError
from tiercut.graph import capture_model
from tiercut.profile import measure_profile
from tiercut.profile.measure import resolve_torch_device, timer_for

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


def test_auto_picks_cuda_only_when_present_and_bad_devices_are_one_line_errors():
    assert resolve_torch_device("auto") == ("cuda:0" if HAS_CUDA else "cpu")
    assert resolve_torch_device("CPU") == "cpu"
    with pytest.raises(TiercutError, match="not known") as exc:
        resolve_torch_device("tpu")
    assert "\n" not in str(exc.value)
    if not HAS_CUDA:
        with pytest.raises(TiercutError, match="sees no GPU"):
            resolve_torch_device("cuda")


def test_clocks_must_match_the_device():
    with pytest.raises(TiercutError, match="CUDA events"):
        timer_for("wall", 1, "cuda:0")
    with pytest.raises(TiercutError, match="cuda clock times GPU work"):
        timer_for("cuda", 1, "cpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the error shown when there is no GPU")
def test_profile_on_cuda_without_a_gpu_exits_2(tmp_path, capsys):
    assert main(["profile", "alexnet", "--torch-device", "cuda", "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert "sees no GPU" in err and err.count("\n") == 1
    assert not (tmp_path / "p.json").exists()


@needs_cuda
def test_gpu_smoke_profile_times_with_cuda_events_and_keeps_the_model_on_the_cpu():
    captured = capture_model("resnet18", (1, 3, 64, 64))
    profile = measure_profile(captured, repeats=3, torch_device="cuda")
    assert profile.clock == "cuda" and profile.host.torch_device.startswith("cuda") and profile.host.accelerator
    assert all(n.median_s > 0 for n in profile.nodes.values()) and profile.whole_model.median_s > 0
    assert profile.host.gemm_flops > 0
    assert next(captured.graph_module.parameters()).device.type == "cpu"  # the caller's model was not moved
