"""Does tiercut predict real devices? Published batch-1 latencies vs the device catalog.

Every figure of ``benchmarks/data/published_latencies.yaml`` (device, model,
precision, software stack, latency, source) is predicted from the catalog
data alone (``src/tiercut/profile/data/devices.yaml``): the model's layer
graph, the device's peaks and its achieved per-class efficiencies and
per-node overhead (:mod:`tiercut.profile.device_model`). Nothing is timed.

The figures have a ``role``:

- ``holdout``: never used to fit the catalog. The target is scored on these
  only: median absolute error under 25 %, none off by more than 1.6x, at
  least 12 figures over at least 5 devices.
- ``fit``: the catalog's efficiency and overhead for that device and
  precision were fitted on them (``--fit`` prints that fit); their error is
  reported, not scored.
- ``listed``: the same device and model with another software stack than
  the catalog entry describes; shown with the prediction (the figures
  disagree with each other by up to 4x), never scored.

For contrast each figure also gets the previous device model's prediction
(the roofline transfer of the shipped predictor's host times with vendor
peaks, :func:`tiercut.profile.roofline_scaled_seconds`), which ignored achieved
efficiency and precision.

Writes benchmarks/results/device_transfer.json and device_transfer.png.

    PYTHONPATH=src python benchmarks/device_transfer.py [--fit | --calibrate-host]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_result

warnings.filterwarnings("ignore", category=FutureWarning)

FIGURES = Path(__file__).resolve().parent / "data" / "published_latencies.yaml"
TARGET_MDAPE = 0.25
TARGET_MAX_RATIO = 1.6
MIN_FIGURES = 12
MIN_DEVICES = 5


@dataclass(frozen=True)
class Figure:
    """One published latency."""

    device: str
    model: str
    precision: str
    stack: str
    latency_ms: float
    statistic: str
    role: str
    source: str
    input: tuple[int, ...] | None = None
    clock_fraction: float = 1.0
    drop_ops: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.device}/{self.model.split(':')[-1]}/{self.precision}/{self.stack}"


def load_figures(path: Path = FIGURES) -> list[Figure]:
    import yaml

    data = yaml.safe_load(path.read_text())
    out = []
    for item in data["figures"]:
        out.append(
            Figure(
                device=item["device"], model=item["model"], precision=item["precision"], stack=item["stack"],
                latency_ms=float(item["latency_ms"]), statistic=item["statistic"], role=item["role"],
                source=item["source"], input=tuple(item["input"]) if item.get("input") else None,
                clock_fraction=float(item.get("clock_fraction", 1.0)),
                drop_ops=tuple(item.get("drop_ops", ())),
            )
        )
    return out


@functools.cache
def graph_of(model: str, shape: tuple[int, ...] | None) -> Any:
    from tiercut.graph import extract_graph

    return extract_graph(model, shape)


def features_of(figure: Figure) -> list[Any]:
    from tiercut.profile import graph_features

    feats = graph_features(graph_of(figure.model, figure.input)).values()
    return [f for f in feats if f.op not in figure.drop_ops]  # layers the published model does not have


def spec_for(figure: Figure) -> Any:
    from tiercut.profile import get_device_spec

    spec = get_device_spec(figure.device)
    if figure.clock_fraction != 1.0:
        spec = spec.at_clock(figure.clock_fraction, f"{figure.clock_fraction:.3f} of the data-sheet clock (as measured)")
    return spec


def predict_s(figure: Figure) -> float:
    from tiercut.profile.device_model import device_seconds

    return float(device_seconds(features_of(figure), spec_for(figure), figure.precision).sum())


def previous_model_s(figure: Figure) -> float:
    """The previous device model: the shipped predictor's host times moved by roofline to the FP32 peaks."""
    from tiercut.profile import load_default_predictor, roofline_scaled_seconds

    predictor = load_default_predictor()
    graph = graph_of(figure.model, figure.input)
    feats = features_of(figure)
    host_s = predictor.predict_many(feats) + predictor.context(graph.granularity).weights(feats)
    return float(roofline_scaled_seconds(host_s, feats, predictor.host, spec_for(figure)).sum())


def fit_catalog(figures: list[Figure]) -> list[dict[str, Any]]:
    """Fit overhead and conv efficiency per (device, precision) on the ``fit`` figures (prints YAML-ready values)."""
    from tiercut.profile.calibrate import Workload, fit_whole_models

    groups: dict[tuple[str, str], list[Figure]] = {}
    for f in figures:
        if f.role == "fit":
            groups.setdefault((f.device, f.precision), []).append(f)
    rows = []
    for (device, precision), members in groups.items():
        spec = spec_for(members[0])
        resolved = spec.resolve(precision)
        workloads = [Workload(m.label, tuple(features_of(m)), m.latency_ms / 1e3) for m in members]
        overhead = None if len(members) >= 2 else resolved.dispatch_overhead_s
        memory = (spec.efficiency or {}).get("memory", 0.7)
        fit = fit_whole_models(workloads, peak_flops=resolved.peak_flops, memory_bandwidth_bps=resolved.memory_bandwidth_bps,
                               precision=precision, memory_efficiency=memory, overhead_s=overhead)
        row = {"device": device, "precision": precision, "fitted": list(fit.fitted), "fitted_on": [m.label for m in members],
               "dispatch_overhead_s": fit.dispatch_overhead_s, "efficiency": dict(fit.efficiency),
               "predicted_over_published": dict(fit.residuals)}
        rows.append(row)
        print(f"{device:18s} {precision:5s} overhead {fit.dispatch_overhead_s * 1e6:7.1f} us  conv {fit.efficiency['conv']:.3f} "
              f"(memory {memory:.2f}; fitted {', '.join(fit.fitted)} on {len(members)}: "
              + ", ".join(f"{k.split('/')[1]} x{v:.2f}" for k, v in fit.residuals.items()) + ")")
    return rows


HOST_PROFILES = Path(__file__).resolve().parent / "results" / "prediction_accuracy.profiles"
HOST_MODELS = ("resnet50", "vgg16", "mobilenet_v2", "densenet121", "vit_b_16")


def calibrate_host(folder: Path = HOST_PROFILES) -> dict[str, Any]:
    """The per-class efficiencies of this project's host (its prediction-accuracy profiles), as the catalog's Xeon uses.

    Fits :func:`tiercut.profile.fit_profile` on each model's module-level profile (peak = the host's measured
    GEMM) and prints the medians; the matrix-product efficiency comes from vit_b_16 alone (the other models'
    linear layers are memory-bound vectors).
    """
    from tiercut.profile import fit_profile, load_profile

    fits = {}
    for model in HOST_MODELS:
        profile = load_profile(folder / f"{model}.module.json")
        host = profile.host
        fits[model] = fit_profile(profile, peak_flops=host.peak_flops, memory_bandwidth_bps=host.memory_bandwidth_bps)
        fit = fits[model]
        print(f"{model:14s} on {host.name} at {host.cpu_mhz:.0f} MHz: overhead {fit.dispatch_overhead_s * 1e6:5.1f} us, "
              + ", ".join(f"{c} {fit.efficiency[c]:.3f}" for c in ("conv", "depthwise", "matmul", "memory"))
              + f" (node MdAPE {fit.node_mdape:.0%})")
    medians = {
        "dispatch_overhead_s": statistics.median(f.dispatch_overhead_s for f in fits.values()),
        "conv": statistics.median(f.efficiency["conv"] for f in fits.values()),
        "depthwise": statistics.median(f.efficiency["depthwise"] for f in fits.values()),
        "matmul": fits["vit_b_16"].efficiency["matmul"],
    }
    print("medians: " + ", ".join(f"{k} {v:.4g}" for k, v in medians.items()))
    return medians


def summarise(rows: list[dict[str, Any]], role: str) -> dict[str, Any]:
    chosen = [r for r in rows if r["role"] == role]
    if not chosen:
        return {"figures": 0}
    ape = [abs(r["ratio"] - 1.0) for r in chosen]
    worst = max(chosen, key=lambda r: max(r["ratio"], 1 / r["ratio"]))
    return {
        "figures": len(chosen),
        "devices": sorted({r["device"] for r in chosen}),
        "median_abs_error": statistics.median(ape),
        "max_factor": max(max(r["ratio"], 1 / r["ratio"]) for r in chosen),
        "worst": worst["label"],
        "previous_model_median_abs_error": statistics.median(abs(r["previous_ratio"] - 1.0) for r in chosen),
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    markers = {"holdout": "o", "fit": "s", "listed": "x"}
    devices = sorted({r["device"] for r in rows})
    cmap = plt.get_cmap("tab10")
    for i, device in enumerate(devices):
        for role, marker in markers.items():
            pts = [(r["published_ms"], r["predicted_ms"]) for r in rows if r["device"] == device and r["role"] == role]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.scatter(xs, ys, marker=marker, color=cmap(i % 10), label=f"{device} ({role})", s=36)
    lo, hi = 0.3, 3000
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    for factor, style in ((1.25, ":"), (1.6, "--")):
        ax.plot([lo, hi], [lo * factor, hi * factor], "k" + style, lw=0.6)
        ax.plot([lo, hi], [lo / factor, hi / factor], "k" + style, lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("published batch-1 latency (ms)")
    ax.set_ylabel("tiercut prediction from the catalog (ms)")
    ax.set_title("device model vs published latencies (o: held out, s: fitted on, x: other stack)")
    ax.legend(fontsize=6, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="print the per-device fit on the 'fit' figures and exit")
    parser.add_argument("--calibrate-host", action="store_true",
                        help="print this host's per-class efficiencies from its prediction-accuracy profiles and exit")
    args = parser.parse_args()
    figures = load_figures()
    if args.fit:
        fit_catalog(figures)
        return 0
    if args.calibrate_host:
        calibrate_host()
        return 0
    rows = []
    for f in figures:
        predicted = predict_s(f) * 1e3
        previous = previous_model_s(f) * 1e3
        rows.append({
            "label": f.label, "device": f.device, "model": f.model, "precision": f.precision, "stack": f.stack,
            "role": f.role, "published_ms": f.latency_ms, "statistic": f.statistic, "predicted_ms": predicted,
            "ratio": predicted / f.latency_ms, "previous_model_ms": previous, "previous_ratio": previous / f.latency_ms,
            "clock_fraction": f.clock_fraction, "source": f.source,
        })
    summary = {role: summarise(rows, role) for role in ("holdout", "fit", "listed")}
    held = summary["holdout"]
    held["target"] = {"median_abs_error_below": TARGET_MDAPE, "max_factor_below": TARGET_MAX_RATIO,
                      "min_figures": MIN_FIGURES, "min_devices": MIN_DEVICES}
    held["met"] = bool(held["figures"] >= MIN_FIGURES and len(held["devices"]) >= MIN_DEVICES
                       and held["median_abs_error"] < TARGET_MDAPE and held["max_factor"] < TARGET_MAX_RATIO)
    misses = [r["label"] for r in rows if r["role"] == "holdout" and max(r["ratio"], 1 / r["ratio"]) >= TARGET_MAX_RATIO]
    held["misses_over_max_factor"] = misses

    print(f"{'device':18s} {'model':20s} {'prec':5s} {'stack':26s} {'role':8s} {'published':>10s} {'tiercut':>9s} "
          f"{'ratio':>6s} {'previous':>9s}")
    for r in rows:
        print(f"{r['device']:18s} {r['model'].split(':')[-1]:20s} {r['precision']:5s} {r['stack'][:26]:26s} {r['role']:8s} "
              f"{r['published_ms']:10.2f} {r['predicted_ms']:9.2f} {r['ratio']:6.2f} {r['previous_model_ms']:9.2f}")
    for role in ("holdout", "fit", "listed"):
        s = summary[role]
        if s["figures"]:
            print(f"{role:8s}: {s['figures']} figures on {len(s['devices'])} devices, median |error| "
                  f"{s['median_abs_error']:.1%}, worst x{s['max_factor']:.2f} ({s['worst']}); previous model's "
                  f"median |error| {s['previous_model_median_abs_error']:.1%}")
    print(f"target on held-out figures (>= {MIN_FIGURES} over >= {MIN_DEVICES} devices, median < {TARGET_MDAPE:.0%}, "
          f"none >= x{TARGET_MAX_RATIO}): {'met' if held['met'] else 'MISSED'}"
          + (f"; misses: {', '.join(misses)}" if misses else ""))
    png = RESULTS / "device_transfer.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(rows, png)
    path = write_result("device_transfer", {"summary": summary, "rows": rows,
                                            "note": "predictions from the catalog alone; nothing is timed"})
    print(f"wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
