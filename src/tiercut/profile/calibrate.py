"""Calibrating a device: its achieved efficiencies from measurements taken on it.

The seed paper's installation phase profiles the client on the client
itself (dnn-migration-in-iots, Program 1). This module closes the loop for
any device: ``tiercut profile`` run *on* the device writes a profile; this
module fits the device model of :mod:`tiercut.profile.device_model` to it --
the fixed per-node overhead and the achieved efficiency of each op class --
and returns a :class:`~tiercut.profile.catalog.DeviceSpec` whose predictions
come from those measurements (``tiercut devices calibrate``).

Two fits, one parametrisation:

- :func:`calibrate_from_profile`: from a per-node profile. Every measured
  node is a residual ``log(predicted / measured)`` (the many small nodes
  pin the overhead, the few big ones the efficiencies), and the whole
  model is one more residual with the weight of all nodes together (the
  isolated node medians miss the in-model cache effects; the whole-model
  median has them). Op classes the profile has no node of
  keep the base device's efficiency (or :data:`DEFAULT_RATIOS` x the
  fitted ``conv``), and the source says so.
- :func:`fit_whole_models`: from published whole-model latencies (what the
  catalog is built from, ``benchmarks/device_transfer.py --fit``): only a
  few figures, so only the overhead and the ``conv`` efficiency are free;
  the other classes follow :data:`DEFAULT_RATIOS`.

Both minimise with :func:`scipy.optimize.least_squares` (soft-L1 loss) in
log space, efficiencies within ``(0, MAX_EFFICIENCY]``, the overhead within
``[1e-8, 1e-2]`` s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tiercut.errors import TiercutError
from tiercut.profile.catalog import MAX_EFFICIENCY, OP_CLASSES, PRECISIONS, DeviceSpec, PrecisionSpec, ResolvedPrecision
from tiercut.profile.device_model import class_arrays, seconds_with
from tiercut.profile.features import NodeFeatures

if TYPE_CHECKING:
    from tiercut.profile.profile_file import Profile

#: efficiencies of the other classes relative to ``conv`` when nothing measures them
#: (assumptions, stated in every entry that uses them): a linear layer's GEMM runs
#: like a convolution's; a depthwise (short-dot-product) convolution reaches a quarter
#: of it; memory-bound ops reach 70 % of the data-sheet bandwidth (the order of a
#: STREAM copy on DDR/LPDDR systems).
DEFAULT_RATIOS: dict[str, float] = {"matmul": 1.0, "depthwise": 0.25}
DEFAULT_MEMORY_EFFICIENCY = 0.7
_OVERHEAD_BOUNDS = (1e-8, 1e-2)


@dataclass(frozen=True)
class Workload:
    """One whole-model measurement: the nodes and the seconds they took together."""

    label: str
    features: tuple[NodeFeatures, ...]
    seconds: float
    kernels: tuple[int, ...] | None = None


@dataclass(frozen=True)
class FitResult:
    """What a fit found: overhead, efficiencies, and how well it explains the data.

    Attributes:
        dispatch_overhead_s: fitted per-node overhead.
        efficiency: op class -> fitted (or derived) efficiency.
        fitted: the parameters that were free (``overhead``, ``conv``...).
        residuals: label -> predicted / measured of each whole-model figure.
        node_mdape: median absolute node error (profile fits only).
    """

    dispatch_overhead_s: float
    efficiency: Mapping[str, float]
    fitted: tuple[str, ...]
    residuals: Mapping[str, float]
    node_mdape: float | None = None


def _complete(efficiency: Mapping[str, float], memory: float) -> dict[str, float]:
    conv = float(efficiency["conv"])
    out = {"conv": conv, "memory": float(efficiency.get("memory", memory))}
    for cls, ratio in DEFAULT_RATIOS.items():
        out[cls] = float(efficiency.get(cls, min(conv * ratio, MAX_EFFICIENCY)))
    return out


def _resolved(peak_flops: float, bandwidth: float, precision: str, overhead: float) -> ResolvedPrecision:
    return ResolvedPrecision(precision, peak_flops, bandwidth, overhead, None, "", PRECISIONS[precision])


def fit_whole_models(
    workloads: Sequence[Workload],
    *,
    peak_flops: float,
    memory_bandwidth_bps: float,
    precision: str = "fp32",
    memory_efficiency: float = DEFAULT_MEMORY_EFFICIENCY,
    overhead_s: float | None = None,
) -> FitResult:
    """Fit the ``conv`` efficiency (and the overhead, unless given) to whole-model latencies.

    With one workload, give ``overhead_s`` (one figure cannot separate the two).
    """
    if not workloads:
        raise TiercutError("nothing to fit: give at least one measured workload")
    if overhead_s is None and len(workloads) < 2:
        raise TiercutError("one whole-model figure cannot fit both overhead and efficiency; give overhead_s")
    arrays = [(w, *class_arrays(w.features)) for w in workloads]
    free_overhead = overhead_s is None

    def efficiencies(theta: np.ndarray) -> tuple[float, dict[str, float]]:
        overhead = math.exp(theta[0]) if free_overhead else float(overhead_s)
        conv = math.exp(theta[-1])
        return overhead, _complete({"conv": conv}, memory_efficiency)

    def residual(theta: np.ndarray) -> np.ndarray:
        overhead, eff = efficiencies(theta)
        resolved = _resolved(peak_flops, memory_bandwidth_bps, precision, overhead)
        out = []
        for w, classes, matmul, other, nbytes in arrays:
            kernels = None if w.kernels is None else np.asarray(w.kernels)
            total = seconds_with(classes, matmul, other, nbytes, resolved, eff, kernels).sum()
            out.append(math.log(total / w.seconds))
        return np.array(out)

    from scipy.optimize import least_squares

    lo = ([math.log(_OVERHEAD_BOUNDS[0])] if free_overhead else []) + [math.log(1e-4)]
    hi = ([math.log(_OVERHEAD_BOUNDS[1])] if free_overhead else []) + [math.log(MAX_EFFICIENCY)]
    starts = [[math.log(o), math.log(e)] for o in (3e-6, 30e-6, 300e-6) for e in (0.05, 0.3, 1.5)]
    if not free_overhead:
        starts = [[math.log(e)] for e in (0.05, 0.3, 1.5)]
    fit = min(
        (least_squares(residual, s, bounds=(lo, hi), loss="soft_l1", f_scale=0.1) for s in starts),
        key=lambda r: r.cost,
    )  # a few starts: the overhead / efficiency trade-off has shallow valleys
    overhead, eff = efficiencies(fit.x)
    ratios = {w.label: math.exp(r) for w, r in zip(workloads, residual(fit.x), strict=True)}
    return FitResult(overhead, eff, ("overhead", "conv") if free_overhead else ("conv",), ratios)


def fit_profile(
    profile: Profile,
    *,
    peak_flops: float,
    memory_bandwidth_bps: float,
    precision: str = "fp32",
    fallback: Mapping[str, float] | None = None,
) -> FitResult:
    """Fit overhead and per-class efficiencies to a per-node profile (see the module docstring)."""
    names = list(profile.nodes)
    if not names:
        raise TiercutError("the profile has no measured nodes; run 'tiercut profile' on the device first")
    features = [profile.nodes[n].features for n in names]
    measured = np.array([profile.nodes[n].median_s for n in names])
    classes, matmul, other, nbytes = class_arrays(features)
    present = [c for c in OP_CLASSES if c in classes or (c == "conv")]
    counted = np.array([c != "view" for c in classes])
    if not counted.any():
        raise TiercutError("the profile has only reshape-like nodes; profile a model with real layers")
    whole = profile.whole_model.median_s
    fallback = dict(fallback or {})
    free = ["overhead", *present]

    def efficiencies(theta: np.ndarray) -> tuple[float, dict[str, float]]:
        values = dict(zip(free, np.exp(theta), strict=True))
        base = {"conv": values["conv"]}
        for cls in OP_CLASSES:
            if cls in values:
                base[cls] = values[cls]
            elif cls in fallback:
                base[cls] = fallback[cls]
        return float(values["overhead"]), _complete(base, fallback.get("memory", DEFAULT_MEMORY_EFFICIENCY))

    def predict(theta: np.ndarray) -> np.ndarray:
        overhead, eff = efficiencies(theta)
        return seconds_with(classes, matmul, other, nbytes, _resolved(peak_flops, memory_bandwidth_bps, precision, overhead), eff)

    def residual(theta: np.ndarray) -> np.ndarray:
        pred = predict(theta)
        nodes = np.log(np.maximum(pred[counted], 1e-12) / measured[counted])
        total = math.sqrt(counted.sum()) * math.log(pred.sum() / whole)
        return np.append(nodes, total)

    from scipy.optimize import least_squares

    small = float(np.quantile(measured[counted], 0.1))
    theta0 = [math.log(min(max(small, 1e-7), 1e-3))] + [math.log(0.3)] * (len(free) - 1)
    lo = [math.log(_OVERHEAD_BOUNDS[0])] + [math.log(1e-5)] * (len(free) - 1)
    hi = [math.log(_OVERHEAD_BOUNDS[1])] + [math.log(MAX_EFFICIENCY)] * (len(free) - 1)
    starts = [theta0, [math.log(1e-06), *theta0[1:]], [math.log(1e-4)] + [math.log(1.0)] * (len(free) - 1)]
    fit = min(
        (least_squares(residual, s, bounds=(lo, hi), loss="soft_l1", f_scale=0.2, max_nfev=2000) for s in starts),
        key=lambda r: r.cost,
    )
    overhead, eff = efficiencies(fit.x)
    pred = predict(fit.x)
    node_ape = np.abs(pred[counted] / measured[counted] - 1.0)
    return FitResult(
        overhead,
        eff,
        tuple(free),
        {f"{profile.model} (whole model)": float(pred.sum() / whole)},
        float(np.median(node_ape)),
    )


def calibrate_from_profile(
    profile: Profile,
    name: str,
    *,
    base: DeviceSpec | None = None,
    precision: str = "fp32",
    description: str = "",
) -> DeviceSpec:
    """A device entry whose predictions come from ``profile`` (measured on that device).

    Args:
        profile: a :class:`~tiercut.profile.profile_file.Profile` taken on the device.
        name: the new entry's name.
        base: a catalog entry for the same hardware: its peaks, bandwidth and
            powers are kept and only overhead and efficiencies are refitted
            (at ``precision``). Without it, the device is the profiled host
            itself: peak = its measured GEMM FLOP/s, bandwidth = its measured
            copy bandwidth (both recorded in the profile), powers unknown (0).
        precision: the precision the profile was measured at.
        description: one line naming the hardware (default: from the profile).
    """
    if precision not in PRECISIONS:
        raise TiercutError(f"precision {precision!r} is not known; use {', '.join(PRECISIONS)}")
    host = profile.host
    where = (
        f"profile of {profile.model!r} ({len(profile.nodes)} nodes, {profile.granularity} granularity) measured "
        f"{profile.created_utc or 'at an unknown time'} on {host.name} with the {profile.clock} clock"
    )
    if base is not None:
        resolved = base.resolve(precision)
        peak, bandwidth = resolved.peak_flops, resolved.memory_bandwidth_bps
        fallback = dict(resolved.efficiency or {})
        peak_source = f"from base entry {base.name!r}: {base.sources.get('peak_flops', '')}"
    else:
        if not host.has_roofline:
            raise TiercutError(
                "the profile has no measured GEMM FLOP/s and copy bandwidth of its host; re-profile with the "
                "host measurement on, or pass --base CATALOG_ENTRY"
            )
        peak, bandwidth = host.gemm_flops or host.peak_flops, host.memory_bandwidth_bps
        fallback = {}
        peak_source = (
            f"measured: {host.gemm_flops / 1e9:.1f} GFLOP/s GEMM on {host.name} at {host.cpu_mhz:.0f} MHz "
            f"({host.threads} threads, {profile.clock} clock)"
        )
    fit = fit_profile(profile, peak_flops=peak, memory_bandwidth_bps=bandwidth, precision=precision, fallback=fallback)
    fitted_note = (
        f"fitted by 'tiercut devices calibrate' on the {where}; node MdAPE {fit.node_mdape:.0%}, whole model "
        f"predicted/measured {next(iter(fit.residuals.values())):.2f}"
    )
    sources = {
        "dispatch_overhead_s": fitted_note,
        **{
            f"efficiency.{cls}": (
                fitted_note if cls in fit.fitted
                else (f"not measured by the profile: kept from base entry {base.name!r}" if base is not None and cls in fallback
                      else f"not measured by the profile: assumption {DEFAULT_RATIOS.get(cls, 1.0):g} x conv"
                      if cls != "memory" else f"not measured by the profile: assumption {DEFAULT_MEMORY_EFFICIENCY:g}")
            )
            for cls in OP_CLASSES
        },
    }
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    if base is not None:
        stack = f"as profiled ({profile.clock} clock, {host.threads} threads)"
        keep = {k: v for k, v in base.sources.items() if not k.startswith("efficiency.")}
        description = description or f"{base.description} (calibrated {stamp})"
        if precision == "fp32" or base.efficiency is None:
            spec = replace(base, name=name, efficiency=dict(fit.efficiency), dispatch_overhead_s=fit.dispatch_overhead_s,
                           stack=stack, description=description, default_precision=precision)
            return replace(spec, sources={**keep, **sources})
        own = base.precisions[precision]
        precisions = {**base.precisions, precision: replace(
            own, efficiency=dict(fit.efficiency), dispatch_overhead_s=fit.dispatch_overhead_s, stack=stack)}
        keep[f"precisions.{precision}"] = (
            f"{base.sources.get(f'precisions.{precision}', 'peak from the base entry')}; efficiency and overhead {fitted_note}"
        )
        keep.update({k: v for k, v in base.sources.items() if k.startswith("efficiency.")})
        return replace(base, name=name, precisions=precisions, description=description, default_precision=precision,
                       sources=keep)
    kind = "gpu" if getattr(host, "torch_device", "cpu").startswith("cuda") else "cpu"
    return DeviceSpec(
        name=name,
        kind=kind,
        peak_flops=peak,
        memory_bandwidth_bps=bandwidth,
        power_compute_w=0.0,
        power_idle_w=0.0,
        dispatch_overhead_s=fit.dispatch_overhead_s,
        description=description or f"{host.name}, calibrated {stamp}",
        efficiency=fit.efficiency,
        stack=f"PyTorch eager as profiled ({profile.clock} clock, {host.threads} threads)",
        sources={
            "peak_flops": peak_source,
            "memory_bandwidth_bps": f"measured: {bandwidth / 1e9:.1f} GB/s copy bandwidth on {host.name}",
            "power_compute_w": "not measured: 0 (give power_compute_w in the environment file)",
            "power_idle_w": "not measured: 0 (give power_idle_w in the environment file)",
            **sources,
        },
    )


def spec_with_precision(spec: DeviceSpec, precision: str, peak_flops: float, **fields: Any) -> DeviceSpec:
    """``spec`` with a (new or replaced) precision entry."""
    return replace(spec, precisions={**spec.precisions, precision: PrecisionSpec(peak_flops=peak_flops, **fields)})


__all__ = [
    "DEFAULT_MEMORY_EFFICIENCY",
    "DEFAULT_RATIOS",
    "FitResult",
    "Workload",
    "calibrate_from_profile",
    "fit_profile",
    "fit_whole_models",
    "spec_with_precision",
]
