"""Calibrating a device from a profile taken on it: the fit recovers a known device and a known slowdown."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import yaml

from tiercut.cli import main
from tiercut.env import Environment
from tiercut.errors import TiercutError
from tiercut.graph import extract_graph
from tiercut.problem import build_problem
from tiercut.profile import (
    DeviceSpec,
    NodeProfile,
    Profile,
    StoppingRule,
    TimingStats,
    calibrate_from_profile,
    device_seconds,
    graph_features,
    load_catalog_file,
)
from tiercut.profile.host import HostInfo

TRUE = DeviceSpec(
    name="truth", kind="cpu", peak_flops=2e11, memory_bandwidth_bps=2e10, power_compute_w=10.0, power_idle_w=2.0,
    dispatch_overhead_s=20e-6, efficiency={"conv": 0.6, "depthwise": 0.12, "matmul": 0.5, "memory": 0.6},
)


@functools.cache
def _graph(model: str):
    return extract_graph(model)


def _host(peak: float, bandwidth: float) -> HostInfo:
    return HostInfo(
        cpu_model="Synthetic board", logical_cpus=4, physical_cores=4, cpu_mhz=1500.0, threads=4, torch_version="2",
        python_version="3", platform="test", gemm_flops=peak, conv_flops=peak, memory_bandwidth_bps=bandwidth,
        dispatch_overhead_s=20e-6,
    )


def _profile(model: str, spec: DeviceSpec, slowdown: float = 1.0, noise: float = 0.0, seed: int = 0) -> Profile:
    """A profile as the device ``spec`` would record it, every time multiplied by ``slowdown`` (and some noise)."""
    rng = np.random.default_rng(seed)
    feats = graph_features(_graph(model))
    seconds = device_seconds(list(feats.values()), spec) * slowdown
    nodes = {}
    for (name, f), t in zip(feats.items(), seconds, strict=True):
        samples = t * np.exp(rng.normal(0.0, noise, 7)) if noise else [t] * 7
        nodes[name] = NodeProfile(name, f, TimingStats.from_samples(list(samples), 1, "stable"))
    whole = TimingStats.from_samples([float(seconds.sum())] * 7, 1, "stable")
    return Profile(model, "module", ((1, 3, 224, 224),), _host(spec.peak_flops, spec.memory_bandwidth_bps),
                   StoppingRule(), nodes, whole, "wall", "2025-01-01T00:00:00Z")


@pytest.mark.slow
def test_calibration_recovers_the_device_that_made_the_profile():
    cal = calibrate_from_profile(_profile("mobilenet_v2", TRUE), "board")
    assert cal.dispatch_overhead_s == pytest.approx(TRUE.dispatch_overhead_s, rel=0.05)
    for cls in ("conv", "depthwise", "memory"):  # the classes MobileNet-v2 has compute- or memory-bound nodes of
        assert cal.efficiency[cls] == pytest.approx(TRUE.efficiency[cls], rel=0.1), cls
    assert cal.sources["efficiency.conv"].startswith("fitted by 'tiercut devices calibrate'")
    assert "power_compute_w" in cal.sources and cal.is_calibrated


@pytest.mark.parametrize("slowdown", [3.0, 0.5])
@pytest.mark.slow
def test_a_profile_made_with_a_known_slowdown_gives_a_device_that_much_slower(slowdown):
    """Calibrate round trip: slowing every measurement by k makes every prediction k times slower."""
    base = calibrate_from_profile(_profile("resnet18", TRUE, noise=0.05, seed=1), "base")
    slow = calibrate_from_profile(_profile("resnet18", TRUE, slowdown, noise=0.05, seed=2), "slow")
    for model in ("resnet18", "mobilenet_v2", "alexnet"):  # including models it never saw
        feats = list(graph_features(_graph(model)).values())
        ratio = device_seconds(feats, slow).sum() / device_seconds(feats, base).sum()
        assert ratio == pytest.approx(slowdown, rel=0.15), model


@pytest.mark.slow
def test_calibration_on_a_base_entry_keeps_its_peaks_and_powers_and_refits_one_precision():
    profile = _profile("resnet18", TRUE.with_changes(peak_flops=665.6e9, memory_bandwidth_bps=59.7e9), 1.0)
    from tiercut.profile import get_device_spec

    tx2 = get_device_spec("jetson_tx2")
    cal = calibrate_from_profile(profile, "my_tx2", base=tx2)
    assert (cal.peak_flops, cal.power_compute_w, cal.memory_bandwidth_bps) == (tx2.peak_flops, tx2.power_compute_w,
                                                                             tx2.memory_bandwidth_bps)
    assert cal.dispatch_overhead_s == pytest.approx(TRUE.dispatch_overhead_s, rel=0.05)
    half = calibrate_from_profile(profile, "my_tx2_fp16", base=tx2, precision="fp16")
    assert half.efficiency == tx2.efficiency and half.default_precision == "fp16"
    assert half.precisions["fp16"].dispatch_overhead_s == pytest.approx(TRUE.dispatch_overhead_s, rel=0.1)
    assert "efficiency and overhead fitted" in half.sources["precisions.fp16"]
    with pytest.raises(TiercutError, match="no int8 figures"):
        calibrate_from_profile(profile, "x", base=tx2, precision="int8")


@pytest.mark.slow
def test_devices_calibrate_writes_an_entry_an_environment_file_uses(tmp_path, capsys):
    profile_path = tmp_path / "board.json"
    _profile("resnet18", TRUE, 2.0).save(profile_path)
    out = tmp_path / "my-devices.yaml"
    assert main(["devices", "calibrate", str(profile_path), "--name", "board", "--out", str(out)]) == 0
    assert "board" in load_catalog_file(out)
    assert main(["devices", "calibrate", str(profile_path), "--name", "board2", "--out", str(out)]) == 0
    assert set(load_catalog_file(out)) == {"board", "board2"}  # added, not overwritten
    env_file = tmp_path / "env.yaml"
    env_file.write_text(yaml.safe_dump({"devices": [
        {"name": "dev", "tier": "end", "spec": {"catalog": "my-devices.yaml", "entry": "board"}},
        {"name": "srv", "tier": "cloud", "spec": "nvidia_t4", "precision": "fp16"},
    ], "links": [{"a": "dev", "b": "srv", "bandwidth_bytes_per_s": 1e7}]}))
    from tiercut.env import load_environment

    env = load_environment(env_file)
    problem = build_problem(_graph("resnet18"), env)
    assert "my-devices.yaml" in problem.provenance["dev"] or "board" in problem.provenance["dev"]
    truth = device_seconds(list(graph_features(_graph("resnet18")).values()), TRUE).sum() * 2.0
    assert sum(row["dev"] for row in problem.compute_s.values()) == pytest.approx(truth, rel=0.1)
    assert "at fp16" in problem.provenance["srv"]
    capsys.readouterr()
    assert main(["devices", "--catalog", str(out), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"board", "board2"}


def test_calibrate_errors_are_one_line(tmp_path, capsys):
    profile_path = tmp_path / "board.json"
    _profile("resnet18", TRUE).save(profile_path)
    for argv, words in (
        (["devices", "calibrate", str(tmp_path / "none.json"), "--name", "b"], "cannot read profile"),
        (["devices", "calibrate", str(profile_path), "--name", "b c"], "letters, digits"),
        (["devices", "calibrate", str(profile_path), "--name", "b", "--base", "cray_1"], "unknown device"),
        (["devices", "calibrate", str(profile_path), "--name", "b", "--precision", "fp8"], "precision"),
        (["devices", "calibrate", str(profile_path), "--name", "b", "--out", str(tmp_path / "no" / "x.yaml")], "does not exist"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (argv, err)
    env = Environment.from_dict({"devices": [{"name": "a", "tier": "end", "spec": {"catalog": str(tmp_path / "x.yaml"),
                                                                                     "entry": "b"}}]})
    with pytest.raises(TiercutError, match="cannot read device catalog"):
        build_problem(_graph("alexnet"), env)
    with pytest.raises(TiercutError, match="catalog spec needs"):
        Environment.from_dict({"devices": [{"name": "a", "tier": "end", "spec": {"catalog": "x.yaml"}}]})
