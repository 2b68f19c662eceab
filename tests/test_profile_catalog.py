"""The device catalog (validated, sourced) and the roofline transfer to its devices."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tiercut.errors import TiercutError
from tiercut.profile import DeviceSpec, NodeFeatures, bound_kinds, get_device_spec, load_catalog, roofline_scaled_seconds
from tiercut.profile.catalog import NUMERIC_FIELDS, load_catalog_file, parse_catalog
from tiercut.profile.host import HostInfo

HOST = HostInfo(
    cpu_model="Synthetic CPU", logical_cpus=2, physical_cores=2, cpu_mhz=2500.0, threads=2, torch_version="2",
    python_version="3", platform="test", gemm_flops=1e11, conv_flops=2e11, memory_bandwidth_bps=2e10,
    dispatch_overhead_s=2e-6, llc_bytes=32 * 2**20,
)
CONV = NodeFeatures("conv2d", 2e9, 0.0, 1e6, 1e6, 1e6, 576.0)  # compute-bound everywhere
RELU = NodeFeatures("relu", 0.0, 1e6, 4e6, 4e6, 0.0)  # memory-bound everywhere
SIZE = NodeFeatures("size", 0.0, 0.0, 0.0, 0.0, 0.0)  # no counted work


def _one_line(exc: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(exc.value)
    return str(exc.value)


# ------------------------------------------------------------------ catalog
def test_every_shipped_entry_validates_and_cites_every_figure():
    catalog = load_catalog()
    for name, spec in catalog.items():
        assert spec.name == name and spec.description
        for figure in NUMERIC_FIELDS:
            assert spec.sources.get(figure, "").strip(), f"{name}.{figure} has no source"
        assert spec.peak_flops > 0 and spec.memory_bandwidth_bps > 0
        assert spec.power_compute_w >= spec.power_idle_w >= 0
        hash(spec)  # frozen and hashable


def test_the_catalog_covers_the_required_kinds_of_device():
    names = set(load_catalog())
    assert {"raspberry_pi_4", "jetson_nano", "nvidia_t4", "nvidia_a100", "xeon_gold_6230"} <= names
    assert names & {"jetson_tx2", "jetson_agx_xavier"}
    assert any("snapdragon" in n for n in names)
    assert get_device_spec("nvidia_a100").peak_flops == pytest.approx(19.5e12)


def test_unknown_device_lists_the_known_names():
    with pytest.raises(TiercutError) as exc:
        get_device_spec("cray_1")
    message = _one_line(exc)
    assert "cray_1" in message and "raspberry_pi_4" in message and "nvidia_t4" in message


def _entry(**changes):
    entry = {
        "kind": "cpu", "description": "x", "peak_flops": 1e10, "memory_bandwidth_bps": 1e9, "power_compute_w": 5.0,
        "power_idle_w": 1.0, "dispatch_overhead_s": 1e-5,
        "sources": {f: "test" for f in NUMERIC_FIELDS},
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"peak_flops": -1.0}, "peak_flops"),
        ({"memory_bandwidth_bps": 0.0}, "memory_bandwidth_bps"),
        ({"peak_flops": "fast"}, "number"),
        ({"power_compute_w": 0.5}, "idle"),
        ({"kind": "quantum"}, "kind"),
        ({"peak_flops": None}, "lacks"),
        ({"sources": {"peak_flops": "x"}}, "without a source"),
        ({"clock_hz": 1e9}, "unknown field"),
        ({"power_idle_w": float("inf")}, "finite"),
    ],
)
def test_invalid_catalog_entries_are_one_line_errors(changes, words):
    with pytest.raises(TiercutError) as exc:
        parse_catalog({"schema_version": 1, "devices": {"dev": _entry(**changes)}})
    assert words in _one_line(exc) and "dev" in str(exc.value)


def test_a_valid_user_catalog_loads_and_yaml_exponents_without_sign_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "devices": {"dev": _entry(peak_flops="4.5e9")}}))
    assert load_catalog_file(path)["dev"].peak_flops == 4.5e9


@pytest.mark.parametrize("text", ["devices: [1, 2", "schema_version: 3\ndevices: {}", "- a list"])
def test_bad_catalog_files_are_one_line_errors(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(TiercutError) as exc:
        load_catalog_file(path)
    _one_line(exc)
    with pytest.raises(TiercutError):
        load_catalog_file(tmp_path / "missing.yaml")


def test_device_spec_json_round_trip_and_validation():
    spec = get_device_spec("jetson_nano")
    assert DeviceSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(TiercutError):
        dataclasses.replace(spec, peak_flops=0.0)


# ------------------------------------------------------------------ GHz devices
def test_a_device_known_only_by_ghz_scales_every_node_by_the_same_factor():
    edge = DeviceSpec.from_cpu_ghz("edge", 10.0, power_compute_w=65.0, power_idle_w=10.0, reference=HOST)
    factor = HOST.aggregate_ghz / 10.0  # 5 GHz host / 10 GHz edge
    host_s = np.array([0.01, 0.002, 1e-6])
    moved = roofline_scaled_seconds(host_s, [CONV, RELU, SIZE], HOST, edge)
    assert moved == pytest.approx(host_s * factor)
    assert edge.sources["peak_flops"].startswith("seed-paper GHz model")
    with pytest.raises(TiercutError) as exc:
        DeviceSpec.from_cpu_ghz("bad", -1.0, power_compute_w=1.0, power_idle_w=0.5, reference=HOST)
    _one_line(exc)


def test_ghz_devices_default_to_the_shipped_predictor_host():
    client = DeviceSpec.from_cpu_ghz("client", 1.5, power_compute_w=4.0, power_idle_w=1.0)
    assert client.peak_flops > 0 and client.memory_bandwidth_bps > 0


# ------------------------------------------------------------------ transfer
def test_compute_bound_nodes_scale_with_flops_and_memory_bound_with_bandwidth():
    t4 = get_device_spec("nvidia_t4")
    assert bound_kinds([CONV, RELU], HOST) == ["compute", "memory"]
    host_s = np.array([0.02, 0.001])
    moved = roofline_scaled_seconds(host_s, [CONV, RELU], HOST, t4)
    work = host_s - HOST.dispatch_overhead_s
    assert moved[0] == pytest.approx(t4.dispatch_overhead_s + work[0] * HOST.peak_flops / t4.peak_flops)
    assert moved[1] == pytest.approx(
        t4.dispatch_overhead_s + work[1] * HOST.memory_bandwidth_bps / t4.memory_bandwidth_bps
    )
    assert moved[0] / host_s[0] != pytest.approx(moved[1] / host_s[1], rel=0.1)  # not one flat factor


def test_a_node_can_change_bound_between_devices():
    mixed = NodeFeatures("conv2d", 4e7, 0.0, 1e6, 1e6, 0.0, 9.0)  # 20 FLOP/byte
    assert bound_kinds([mixed], HOST) == ["compute"]  # host ridge at 10 FLOP/byte
    assert bound_kinds([mixed], get_device_spec("nvidia_t4")) == ["memory"]  # T4 ridge at 25


def test_a_node_without_counted_work_keeps_its_overhead_part():
    pi = get_device_spec("raspberry_pi_4")
    moved = roofline_scaled_seconds([2e-6, 1e-6], [SIZE, SIZE], HOST, pi)  # host overhead is 2 us
    assert moved == pytest.approx([pi.dispatch_overhead_s, pi.dispatch_overhead_s / 2])


@settings(max_examples=50, deadline=None)
@given(
    seconds=st.lists(st.floats(1e-7, 1.0), min_size=3, max_size=3),
    speedup=st.floats(1.0, 1e3),
)
def test_transfer_is_identity_on_the_same_device_and_monotone_in_speed(seconds, speedup):
    feats = [CONV, RELU, SIZE]
    same = roofline_scaled_seconds(seconds, feats, HOST, HOST)
    assert same == pytest.approx(seconds)
    faster = DeviceSpec(
        "faster", "cpu", HOST.peak_flops * speedup, HOST.memory_bandwidth_bps * speedup, 1.0, 0.5,
        dispatch_overhead_s=HOST.dispatch_overhead_s,
    )
    assert np.all(roofline_scaled_seconds(seconds, feats, HOST, faster) <= np.asarray(seconds) + 1e-15)


def test_transfer_errors_are_one_line():
    no_roofline = HostInfo.from_dict({**HOST.to_dict(), "gemm_flops": 0.0, "conv_flops": 0.0})
    for call in (
        lambda: roofline_scaled_seconds([1e-3], [CONV], no_roofline, get_device_spec("nvidia_t4")),
        lambda: roofline_scaled_seconds([1e-3, 2e-3], [CONV], HOST, get_device_spec("nvidia_t4")),
    ):
        with pytest.raises(TiercutError) as exc:
            call()
        _one_line(exc)
