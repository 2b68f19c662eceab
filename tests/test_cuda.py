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


# ----------------------------------------------------------------- GPU logic exercised without a GPU
# "cpu:0" is a device torch accepts that is not the string "cpu": the code paths written for cuda:N (copy the
# weights to the device once, move inputs in and outputs back) run on it here, so their logic is tested even
# where no GPU is present. What stays untested here: CUDA events (cuda_timer), real host<->device copies.
STAND_IN = "cpu:0"


def test_resolve_cuda_picks_the_index_and_checks_it_against_the_device_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_torch_device("cuda") == "cuda:1"  # the current device
    assert resolve_torch_device("CUDA:0") == "cuda:0"
    assert resolve_torch_device("auto") == "cuda:0"
    with pytest.raises(TiercutError, match="there are 2 CUDA device") as exc:
        resolve_torch_device("cuda:2")
    assert "\n" not in str(exc.value)


def test_a_cuda_host_records_its_accelerator_and_calibrates_as_a_gpu(monkeypatch):
    from tiercut.profile import describe_host

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Stand-in GPU")
    host = describe_host(1, torch_device="cuda:0")
    assert host.torch_device == "cuda:0" and host.accelerator == "Stand-in GPU"
    assert host.name.startswith("Stand-in GPU (host ")
    assert not host.same_machine(describe_host(1))  # a GPU profile is never re-used as a CPU one


@pytest.mark.slow  # loading a program imports torch's export machinery (about 3 s)
def test_a_worker_program_on_another_device_gives_the_cpu_answer():
    from runtime_programs import hand_program, node, ref
    from tiercut.runtime.artifact import load_program
    from tiercut.runtime.profiling import DeviceProgram, on_device

    x, w = torch.randn(2, 3), torch.randn(3, 3)
    program, weights = hand_program([node("y", "aten.mm.default", ref("x"), ref("w"))], {"x": x}, {"w": w}, ["y"],
                                    [((2, 3), torch.float32)])
    loaded = load_program(program, weights)
    assert on_device(loaded, "cpu") is loaded  # the CPU runs the program itself
    moved = on_device(loaded, STAND_IN)
    assert isinstance(moved, DeviceProgram) and moved.program_id == loaded.program_id
    assert moved.inner is not loaded and set(moved.inner._weights) == set(loaded._weights)  # weights bound anew
    assert torch.allclose(moved.run({"x": x})["y"], loaded.run({"x": x})["y"])


def _client(device: str):
    """A client over a plan splitting a small CNN between end and edge, its settings on ``device`` (no workers)."""
    from tiercut.runtime.client import MigrationClient, RunSettings
    from tiercut.runtime.migration import placement_plan, prepare_migration

    captured = capture_model("fixtures_models:tiny_net", (1, 3, 8, 8))
    nodes = [n.name for n in captured.graph.nodes]  # x, conv, relu, left, right, add, flatten, fc
    placement = {n: ("edge" if 2 <= i < len(nodes) - 2 else "end") for i, n in enumerate(nodes)}  # a branch on edge
    migration = prepare_migration(captured, placement_plan(placement, "end"))
    settings = RunSettings()
    object.__setattr__(settings, "client_torch_device", device)  # the stand-in skips the cuda:N check
    return captured, MigrationClient(migration, {}, settings)


def test_the_clients_own_partitions_run_on_its_torch_device_and_answer_as_on_the_cpu():
    captured, client = _client(STAND_IN)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        expected = captured.graph_module(x)
    assert torch.allclose(client._run_local_stage((x,)), expected, atol=1e-5)
    stage = client.plan.stages[-1]
    values = dict(stage.split.input_spec.bind((x,)))
    for partition in stage.split.partitions:  # the remote ones too, as the client runs them when falling back
        out = client.run_partition(partition, {n: values[n] for n in partition.input_names})
        assert all(v.device.type == "cpu" for v in out.values() if isinstance(v, torch.Tensor))
        values.update(out)
    assert torch.allclose(stage.split.output_spec.build(values), expected, atol=1e-5)
    copied = set(client._on_device)
    assert copied == {*stage.split.partitions, *client.plan.local_stage.split.partitions}  # each partition copied once
    client.run_partition(stage.split.partitions[0], {n: values[n] for n in stage.split.partitions[0].input_names})
    assert set(client._on_device) == copied  # and then re-used
    assert next(captured.graph_module.parameters()).device == torch.device("cpu")  # verify re-runs it on the CPU


def test_run_settings_take_only_a_resolved_client_device():
    from tiercut.runtime.client import RunSettings

    assert RunSettings(client_torch_device="cuda:0").client_torch_device == "cuda:0"
    for bad in ("cuda", "gpu", "auto"):
        with pytest.raises(TiercutError, match="not resolved"):
            RunSettings(client_torch_device=bad)


@pytest.mark.skipif(HAS_CUDA, reason="checks the error shown when there is no GPU")
@pytest.mark.parametrize("command", ["run", "serve"])
def test_run_and_serve_on_cuda_without_a_gpu_exit_2_with_one_line(command, capsys):
    args = {"run": ["run", "alexnet", "--env", "neurosurgeon-wifi", "--torch-device", "cuda"],
            "serve": ["serve", "--device", "cloud", "--env", "neurosurgeon-wifi", "--torch-device", "cuda"]}[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "sees no GPU" in err and err.count("\n") == 1


@needs_cuda
def test_gpu_smoke_the_client_runs_its_partitions_on_the_gpu():
    captured, client = _client(resolve_torch_device("cuda"))
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        expected = captured.graph_module(x)
    assert torch.allclose(client._run_local_stage((x,)), expected, atol=1e-4)
    assert all(next(m.parameters()).device.type == "cuda" for m in client._on_device.values())
