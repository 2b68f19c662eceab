"""The device model: achieved per-class efficiency, overhead and precision, checked against published latencies."""

from __future__ import annotations

import functools
import statistics
from pathlib import Path

import numpy as np
import pytest
import yaml

from tiercut.errors import TiercutError
from tiercut.graph import extract_graph
from tiercut.profile import DeviceSpec, NodeFeatures, device_seconds, get_device_spec, graph_features, load_catalog, op_class
from tiercut.profile.catalog import OP_CLASSES, PrecisionSpec, parse_catalog, required_sources

FIGURES = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "published_latencies.yaml"
CONV = NodeFeatures("conv2d", 2e9, 0.0, 1e6, 1e6, 1e6, 576.0)
DEPTHWISE = NodeFeatures("conv2d", 2e7, 0.0, 4e6, 4e6, 1e3, 9.0)
LINEAR = NodeFeatures("linear", 2e8, 0.0, 1e4, 4e3, 4e8, 4096.0)
RELU = NodeFeatures("relu", 0.0, 1e6, 4e6, 4e6, 0.0)
VIEW = NodeFeatures("flatten", 0.0, 0.0, 4e6, 4e6, 0.0)


def _device(**changes) -> DeviceSpec:
    fields = dict(
        name="dev", kind="gpu", peak_flops=1e12, memory_bandwidth_bps=1e11, power_compute_w=10.0, power_idle_w=1.0,
        dispatch_overhead_s=50e-6, efficiency={"conv": 0.5, "depthwise": 0.1, "matmul": 0.4, "memory": 0.8},
        precisions={"fp16": PrecisionSpec(peak_flops=4e12), "int8": PrecisionSpec(8e12, {"conv": 0.25}, 5e-6, "TensorRT")},
    )
    fields.update(changes)
    return DeviceSpec(**fields)


def test_op_classes_follow_the_kind_of_kernel():
    assert [op_class(f) for f in (CONV, DEPTHWISE, LINEAR, RELU, VIEW)] == ["conv", "depthwise", "matmul", "memory", "view"]


def test_node_time_is_overhead_plus_the_larger_of_compute_and_memory_at_the_class_efficiency():
    dev = _device()
    t = device_seconds([CONV, DEPTHWISE, LINEAR, RELU, VIEW], dev, "fp32")
    assert t[0] == pytest.approx(50e-6 + max(2e9 / (1e12 * 0.5), 3e6 / (1e11 * 0.8)))
    assert t[1] == pytest.approx(50e-6 + max(2e7 / (1e12 * 0.1), 8.001e6 / (1e11 * 0.8)))
    assert t[2] == pytest.approx(50e-6 + max(2e8 / (1e12 * 0.4), 4.00014e8 / (1e11 * 0.8)))  # weights stream: memory-bound
    assert t[3] == pytest.approx(50e-6 + 8e6 / (1e11 * 0.8))
    assert t[4] < 1e-8  # a view is free


def test_precision_changes_peak_bytes_and_may_change_efficiency_and_overhead():
    dev = _device()
    fp32, fp16, int8 = (device_seconds([CONV, RELU], dev, p) for p in ("fp32", "fp16", "int8"))
    assert fp16[0] == pytest.approx(50e-6 + 2e9 / (4e12 * 0.5))  # 4x peak, same efficiency
    assert fp16[1] == pytest.approx(50e-6 + 4e6 / (1e11 * 0.8))  # half the bytes
    assert int8[0] == pytest.approx(5e-6 + 2e9 / (8e12 * 0.25))  # its own efficiency and overhead
    assert int8[1] == pytest.approx(5e-6 + 2e6 / (1e11 * 0.8))
    assert fp32[0] > fp16[0]
    assert dev.resolve("int8").stack == "TensorRT" and dev.resolve("fp16").stack == ""


def test_unsupported_precision_and_uncalibrated_devices_are_one_line_errors():
    with pytest.raises(TiercutError, match="no int8 figures") as exc:
        device_seconds([CONV], get_device_spec("jetson_tk1"), "int8")
    assert "\n" not in str(exc.value)
    plain = _device(efficiency=None, precisions={})
    with pytest.raises(TiercutError, match="no achieved efficiencies"):
        device_seconds([CONV], plain)
    with pytest.raises(TiercutError, match="kernel counts"):
        device_seconds([CONV, RELU], _device(), kernels=[1])


def test_block_nodes_pay_the_overhead_once_per_layer():
    dev = _device()
    one, three = device_seconds([RELU], dev), device_seconds([RELU], dev, kernels=[3])
    assert three[0] - one[0] == pytest.approx(2 * dev.dispatch_overhead_s)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"efficiency": {"conv": 0.5}}, "lacks depthwise"),
        ({"efficiency": {"conv": 0.5, "depthwise": 0.1, "matmul": 0.1, "memory": 0.7, "gemm": 1}}, "unknown op class"),
        ({"efficiency": {"conv": 9.0, "depthwise": 0.1, "matmul": 0.1, "memory": 0.7}}, "must lie in"),
        ({"precisions": {"fp8": {"peak_flops": 1e12}}}, "unknown precision"),
        ({"precisions": {"fp16": {"efficiency": {"conv": 0.3}}}}, "lacks peak_flops"),
        ({"default_precision": "int8"}, "default_precision"),
    ],
)
def test_invalid_efficiency_and_precision_entries_are_one_line_errors(changes, words):
    entry = {
        "kind": "gpu", "peak_flops": 1e12, "memory_bandwidth_bps": 1e11, "power_compute_w": 5.0, "power_idle_w": 1.0,
        "efficiency": {"conv": 0.5, "depthwise": 0.1, "matmul": 0.4, "memory": 0.7},
    }
    entry.update(changes)
    entry["sources"] = dict.fromkeys(required_sources(entry), "test")
    with pytest.raises(TiercutError, match=words) as exc:
        parse_catalog({"schema_version": 2, "devices": {"dev": entry}})
    assert "\n" not in str(exc.value)


def test_every_efficiency_and_precision_in_the_shipped_catalog_is_sourced():
    for name, spec in load_catalog().items():
        assert spec.is_calibrated, name
        for cls in OP_CLASSES:
            assert spec.sources.get(f"efficiency.{cls}", "").strip(), f"{name}.efficiency.{cls}"
        for precision in spec.precisions:
            assert spec.sources.get(f"precisions.{precision}", "").strip(), f"{name}.precisions.{precision}"


def test_the_catalog_has_neurosurgeons_devices_and_the_xeon_uses_its_avx512_clock():
    catalog = load_catalog()
    assert {"jetson_tk1", "jetson_tx1", "nvidia_tesla_k40"} <= set(catalog)
    assert catalog["nvidia_tesla_k40"].peak_flops == pytest.approx(2880 * 2 * 745e6, rel=1e-3)
    xeon = catalog["xeon_gold_6230"]
    assert xeon.peak_flops == pytest.approx(20 * 1.9e9 * 64) and "AVX-512" in xeon.sources["peak_flops"]


def test_catalog_spec_round_trips_with_precisions():
    for spec in load_catalog().values():
        assert DeviceSpec.from_dict(spec.to_dict()) == spec


# ------------------------------------------------------------------ published latencies
def _figures() -> list[dict]:
    return yaml.safe_load(FIGURES.read_text())["figures"]


@functools.cache
def _graph(model: str, shape: tuple[int, ...] | None):
    return extract_graph(model, shape)


def _predicted_ms(figure: dict) -> float:
    spec = get_device_spec(figure["device"])
    if figure.get("clock_fraction", 1.0) != 1.0:
        spec = spec.at_clock(figure["clock_fraction"], "as measured")
    shape = tuple(figure["input"]) if figure.get("input") else None
    feats = [f for f in graph_features(_graph(figure["model"], shape)).values() if f.op not in figure.get("drop_ops", ())]
    return float(device_seconds(feats, spec, figure["precision"]).sum() * 1e3)


def test_every_published_figure_names_a_catalog_device_a_role_and_a_source():
    catalog = load_catalog()
    for figure in _figures():
        assert figure["device"] in catalog and figure["role"] in ("fit", "holdout", "listed")
        assert figure["source"].strip() and figure["latency_ms"] > 0
        assert figure["precision"] in catalog[figure["device"]].precision_names


@pytest.mark.slow
def test_the_catalog_alone_reproduces_the_held_out_published_latencies():
    """The benchmark's target (benchmarks/device_transfer.py) from the catalog data alone: nothing is timed."""
    held = [f for f in _figures() if f["role"] == "holdout"]
    ratios = [_predicted_ms(f) / f["latency_ms"] for f in held]
    assert len(held) >= 12 and len({f["device"] for f in held}) >= 5
    assert statistics.median(abs(r - 1.0) for r in ratios) < 0.25
    assert max(max(r, 1 / r) for r in ratios) < 1.6
    fitted = [_predicted_ms(f) / f["latency_ms"] for f in _figures() if f["role"] == "fit"]
    assert np.median(np.abs(np.array(fitted) - 1.0)) < 0.05  # the fit itself is reproduced too
