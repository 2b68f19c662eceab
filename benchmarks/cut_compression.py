"""Cut compression (JALAD): how the zoo's cut tensors compress, what it costs in accuracy, what it gains in latency.

Run ``.venv/bin/python benchmarks/cut_compression.py`` (``--quick``: alexnet and resnet18 only).
Writes ``benchmarks/results/cut_compression.json`` and prints short tables.

Sections:

1. ``tensors``: for each zoo model (random weights, seeded random inputs), its
   single-tensor cut points (at most 12, evenly spread): raw bytes, the int8
   and int4 (linear quantization + zstd, :mod:`tiercut.runtime.cut_codec`)
   size reduction ``raw / wire``, the top-1 agreement of the model's output
   with the tensor compressed and its relative error; the codec's encode /
   decode seconds per raw byte on this host.
2. ``digits``: the digits CNN trained here on scikit-learn's digits (1,797
   images, 75/25 split, seed 0): top-1 test accuracy with each cut tensor
   compressed, against the uncompressed reference.
3. ``plans``: on Neurosurgeon's presets (3G, LTE, Wi-Fi; device times from
   the catalog predictor), the ILP's plan latency with cut compression off
   and auto (int8/int4 chosen per cut, accuracy-loss budget 1 point), the
   speed-up, the cut and the codecs chosen; and Neurosurgeon's single split
   with the post-pass, for a chain-cut planner like JALAD's own.
4. ``jalad``: what JALAD reports, for comparison (see the figures' notes).

Timings are taken on a shared machine: the load average is recorded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import host_description, write_result

PRESETS = ("neurosurgeon-3g", "neurosurgeon-lte", "neurosurgeon-wifi")
MODELS = ("alexnet", "resnet18", "mobilenet_v2", "googlenet")
QUICK_MODELS = ("alexnet", "resnet18")
BUDGET = 0.01

#: JALAD's reported gains. The abstract (Li et al., ICPADS 2018; arXiv 1812.10027, read at
#: https://ar5iv.arxiv.org/html/1812.10027 through the search tool) states that JALAD "speeds up the overall
#: inference execution with a guaranteed model accuracy loss" and gives no number; the evaluation section's
#: figures could not be retrieved through the search tool, so no number of theirs is quoted as verified.
JALAD_REPORTED = {
    "source": "Li et al., JALAD, ICPADS 2018, pp. 671-678 (arXiv:1812.10027)",
    "verified": "abstract only: speed-up of edge-cloud inference 'with a guaranteed model accuracy loss' (no figure)",
    "searched": (
        "2026-12-01, the search tool's pages/docs/code corpora ('JALAD ... speedup', '... latency reduction 3G 4G "
        "WiFi', '... Huffman ResNet VGG'): only the abstract is stored (https://deepai.org/publication/"
        "jalad-joint-accuracy-and-latency-aware-deep-structure-decoupling-for-edge-cloud-execution, arXiv "
        "1812.10027 listing, NTU record https://hdl.handle.net/10356/143195 giving ICPADS 2018 pp. 671-678); "
        "the evaluation section's figures were not reachable, so no speed-up of theirs is compared numerically"
    ),
    "survey": (
        "the partition survey (seed survey-dnn-partition-cloud-edge-end, its tables and Sec. on IP) lists JALAD as a "
        "cloud-end, two-part layer partition with an accuracy constraint, formulated as an integer linear program"
    ),
    "unverified_recollection": (
        "UNVERIFIED (recalled, not found through the search tool): 8-bit quantization plus Huffman coding of the "
        "cut feature map with an accuracy-loss budget of about 1 point, and latency speed-ups of about an order "
        "of magnitude over cloud-only execution on slow links"
    ),
}


def tensors_section(models: tuple[str, ...]) -> dict:
    from tiercut.graph import capture_model
    from tiercut.profile.cut_compression import measure_cut_compression

    out = {}
    for name in models:
        start = time.perf_counter()
        captured = capture_model(name)
        measured = measure_cut_compression(captured, samples=8, max_nodes=12)
        rows = [t.to_dict() for t in measured.tensors]
        summary = {}
        for codec in ("int8", "int4"):
            mine = [t for t in measured.tensors if t.codec == codec]
            summary[codec] = {
                "reduction_median": statistics.median(t.raw_bytes / t.wire_bytes for t in mine),
                "reduction_min": min(t.raw_bytes / t.wire_bytes for t in mine),
                "top1_agreement_mean": statistics.fmean(t.top1_agreement for t in mine),
                "relative_error_median": statistics.median(t.relative_error for t in mine),
                "encode_s_per_mb": measured.encode_s_per_byte[codec] * 1e6,
                "decode_s_per_mb": measured.decode_s_per_byte[codec] * 1e6,
            }
        out[name] = {
            "samples": measured.samples,
            "model_s_here": measured.model_s,
            "measure_s": time.perf_counter() - start,
            "summary": summary,
            "tensors": rows,
            "measurement": measured,
        }
    return out


def digits_section() -> dict:
    import torch

    from tiercut.exits.models import INPUT_SHAPES, digits_cnn
    from tiercut.exits.train import DATA_SOURCE, TrainingSettings, load_digits_split, train_jointly
    from tiercut.graph import capture_model
    from tiercut.profile.cut_compression import measure_cut_compression

    data = load_digits_split(INPUT_SHAPES["digits_cnn"], seed=0)
    torch.manual_seed(0)
    net = digits_cnn()
    train_jointly(net, data, TrainingSettings(epochs=8))
    captured = capture_model(net.eval(), example_inputs=(data.x_test[:1],))
    measured = measure_cut_compression(
        captured, (data.x_test,), labels=data.y_test, codecs=[("int8", 8, "tensor"), ("int4", 4, "tensor"),
                                                            ("int2", 2, "tensor")]
    )
    return {
        "data": DATA_SOURCE,
        "test_samples": len(data.y_test),
        "reference_accuracy": measured.reference_accuracy,
        "tensors": [t.to_dict() for t in measured.tensors],
    }


def plans_section(tensors: dict) -> dict:
    from tiercut.env import load_environment
    from tiercut.plan import plan
    from tiercut.problem import build_problem

    out = {}
    for name, entry in tensors.items():
        measured = entry["measurement"]
        graph = measured_graph(name)
        for preset in PRESETS:
            problem = build_problem(graph, load_environment(preset))
            with_options = problem.with_cut_compression(measured.for_problem(problem, BUDGET))
            row = {}
            for algorithm in ("ilp", "neurosurgeon"):
                off = plan(problem, algorithm)
                on = plan(with_options, algorithm)
                row[algorithm] = {
                    "latency_off_s": off.latency_s,
                    "latency_on_s": on.latency_s,
                    "speedup": off.latency_s / on.latency_s,
                    "cut_compression": dict(on.cut_compression),
                    "accuracy_loss": on.accuracy_loss,
                    "devices_off": off.devices_used(),
                    "devices_on": on.devices_used(),
                    "optimal_on": on.optimal,
                }
            out[f"{name}@{preset}"] = row
    return out


_GRAPHS: dict = {}


def measured_graph(name: str):
    from tiercut.graph import extract_graph

    if name not in _GRAPHS:
        _GRAPHS[name] = extract_graph(name)
    return _GRAPHS[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="alexnet and resnet18 only")
    args = parser.parse_args()
    load_before = host_description()["load_average"]
    models = QUICK_MODELS if args.quick else MODELS
    tensors = tensors_section(models)
    plans = plans_section(tensors)
    digits = digits_section()
    for entry in tensors.values():
        entry.pop("measurement")
    payload = {
        "load_average_before": load_before,
        "accuracy_loss_max": BUDGET,
        "tensors": tensors,
        "digits": digits,
        "plans": plans,
        "jalad": JALAD_REPORTED,
    }
    path = write_result("cut_compression", payload)

    print("cut tensors (random weights, 8 samples): raw/wire bytes, top-1 agreement")
    print(f"{'model':14s} {'codec':5s} {'median x':>9s} {'min x':>7s} {'agree':>6s} {'enc ms/MB':>10s} {'dec ms/MB':>10s}")
    for name, entry in tensors.items():
        for codec, s in entry["summary"].items():
            print(f"{name:14s} {codec:5s} {s['reduction_median']:9.2f} {s['reduction_min']:7.2f} "
                  f"{s['top1_agreement_mean']:6.3f} {s['encode_s_per_mb'] * 1e3:10.2f} {s['decode_s_per_mb'] * 1e3:10.2f}")
    print(f"\ndigits CNN: reference accuracy {digits['reference_accuracy']:.4f} on {digits['test_samples']} test images")
    worst: dict[str, float] = {}
    for t in digits["tensors"]:
        worst[t["codec"]] = min(worst.get(t["codec"], 1.0), t["accuracy"])
    for codec, acc in worst.items():
        print(f"  {codec}: worst accuracy over the cut points {acc:.4f}")
    print(f"\nplan latency, cut compression off -> auto (accuracy-loss budget {BUDGET})")
    print(f"{'model@preset':32s} {'planner':12s} {'off ms':>9s} {'on ms':>9s} {'speed-up':>8s}  codecs")
    for key, row in plans.items():
        for algorithm, r in row.items():
            codecs = ",".join(f"{n}:{c}" for n, c in r["cut_compression"].items()) or "-"
            print(f"{key:32s} {algorithm:12s} {r['latency_off_s'] * 1e3:9.2f} {r['latency_on_s'] * 1e3:9.2f} "
                  f"{r['speedup']:8.2f}  {codecs}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
