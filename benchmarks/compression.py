"""Model preprocessing and compression: size / FLOPs / latency / accuracy per method, and preprocessing's solve-time gain.

Sections (JSON in benchmarks/results/compression.json, a table on stdout):

1. ``digits``: a small CNN (``tiercut.exits.models:digits_cnn``) trained on
   scikit-learn's bundled digits (fixed seed, 12 epochs) is the reference;
   each method's weight bytes, FLOPs (tiercut's graph extraction), latency
   here (median, one torch thread) and top-1 on the held-out 25%.
2. ``zoo``: zoo models with random weights at 224x224; per method top-1
   agreement and relative output error against the uncompressed model on
   seeded N(0,1) inputs (random weights have flat singular value spectra,
   so low-rank at a given energy saves little there: the trained digits
   CNN shows what trained weights allow).
   fp16's agreement is taken twice: as run (fp16 compute; random-weight
   models such as mobilenet_v2 output ~1e-9, below fp16's smallest normal
   number, so their fp16 outputs flush to zero and agree by chance) and on
   the dequantised path (weights rounded to fp16, computed in float32), whose
   top-1 agreement and relative error are scale-invariant; ``output_rms``
   tells which case a row is.
3. ``preprocess``: solve time of the exact planners with and without
   ``merge`` (exact: the optimum must not change) and the loss of ``blocks``
   on every zoo graph (64x64 inputs, the synthetic mobile/cloud roofline of
   ``tiercut.plan.synthetic``) and on 10k-node synthetic DAGs.
4. ``cut``: plan latency with and without cut compression (JALAD, int8/int4
   per cut, accuracy-loss budget 1 point) on Neurosurgeon's presets (3G,
   LTE, Wi-Fi) for the ILP and Neurosurgeon's split + post-pass
   (:mod:`benchmarks.cut_compression`'s sections), beside what JALAD's paper
   reports (only its abstract was reachable: no figure to compare with).

The machine is shared (2 cores, other engineers' jobs): the JSON records
the load average before and after each section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

METHODS = (("lowrank", {"energy": 0.9}), ("prune", {"ratio": 0.5}), ("prune", {"ratio": 0.5, "pruning": "magnitude"}),
           ("int8", {}), ("fp16", {}))


#: how to read the zoo rows (random weights)
ZOO_NOTE = (
    "random-weight zoo models: top-1 agreement and relative error are scale-invariant (argmax; ||y-y_ref||/||y_ref|| "
    "in float64), but (1) a random-weight net's logits hardly depend on the input, so one class wins for nearly "
    "every input and agreement is close to 0% or 100% for a whole row: the relative error is the informative "
    "figure; (2) mobilenet_v2's outputs are ~1e-9 (output_rms), below fp16's smallest normal number and below the "
    "int8 flow's least output scale, so fp16 compute and int8 return zeros there (relative error 1): a property "
    "of the random weights, not of the weights' compression. For fp16 the dequantised path (weights rounded to "
    "fp16, computed in float32: agreement_fp32_path, relative_error_fp32_path) measures the storage error at any "
    "scale."
)


def _row(run: Any, label: str, settings: dict[str, Any]) -> dict[str, Any]:
    out = run.to_dict()
    out["model"] = label
    out["settings"] = settings
    return out


def digits_section(runs: int) -> list[dict[str, Any]]:
    import torch

    from tiercut.exits.models import digits_cnn
    from tiercut.preprocess.evaluation import run_compression

    rows = []
    cases = [(m, s, 0) for m, s in METHODS] + [("prune", {"ratio": 0.5}, 4), ("lowrank", {"energy": 0.8}, 4),
                                                ("prune", {"ratio": 0.5, "pruning": "magnitude"}, 4)]
    for method, settings, finetune in cases:
        torch.manual_seed(0)
        model = digits_cnn()
        x = torch.zeros(1, 1, 8, 8)
        run = run_compression(model, (x,), method, digits=True, finetune_epochs=finetune, runs=runs, **settings)
        row = _row(run, "digits_cnn", {**settings, "finetune_epochs": finetune})
        rows.append(row)
        ref, new = row["reference"], row["compressed"]
        print(f"  digits_cnn {method:8s} {settings!s:20s} ft={finetune}  bytes x{row['bytes_ratio']:.3f}  "
              f"stored x{row['stored_bytes_ratio'] or 1.0:.3f}  "
              f"FLOPs x{row['flops_ratio']:.3f}  latency {new['latency_s'] * 1e3:.3f} ms (ref {ref['latency_s'] * 1e3:.3f})  "
              f"top-1 {100 * new['accuracy']:.1f}% (ref {100 * ref['accuracy']:.1f}%)")
    return rows


def zoo_section(models: list[str], runs: int, batch: int) -> list[dict[str, Any]]:
    from tiercut.graph import load_model
    from tiercut.preprocess.evaluation import run_compression

    rows = []
    for name in models:
        for method, settings in METHODS:
            loaded = load_model(name, ["1x3x224x224"] if name != "inception_v3" else ["1x3x299x299"])
            try:
                run = run_compression(loaded.model, loaded.example_inputs, method, runs=runs, eval_batch=batch, **settings)
            except Exception as exc:  # a method that cannot handle this model: recorded, not fatal
                rows.append({"model": name, "method": method, "error": f"{type(exc).__name__}: {exc}"})
                print(f"  {name:14s} {method:8s} failed: {str(exc).splitlines()[0]}")
                continue
            row = _row(run, name, settings)
            rows.append(row)
            new = row["compressed"]
            fp32 = (f"  fp32-path agreement {100 * new['agreement_fp32_path']:.1f}% rel.err {new['relative_error_fp32_path']:.3g}"
                    if new.get("agreement_fp32_path") is not None else "")
            print(f"  {name:14s} {method:8s} bytes x{row['bytes_ratio']:.3f}  stored x{row['stored_bytes_ratio'] or 1.0:.3f}  "
                  f"FLOPs x{row['flops_ratio']:.3f}  speed-up {row['speedup']:.2f}x  agreement {100 * new['agreement']:.1f}%  "
                  f"rel.err {new['relative_error']:.3g}  output rms {row['reference']['output_rms']:.2g}{fp32}")
    return rows


def _timed(fn: Any, repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls after one untimed warm-up call (lazy imports, caches)."""
    times, out = [], fn()
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _solve_row(label: str, problem: Any, planners: tuple[str, ...], repeat: int) -> dict[str, Any]:
    from tiercut.plan import plan
    from tiercut.preprocess import preprocess

    pre_s, merged = _timed(lambda: preprocess(problem, "merge"), repeat)
    blocks = preprocess(problem, "merge,blocks")
    row: dict[str, Any] = {"graph": label, "nodes": len(problem.graph), "devices": len(problem.devices),
                           "merged_nodes": len(merged.graph), "blocks_nodes": len(blocks.graph),
                           "preprocess_s": pre_s, "planners": {}}
    for name in planners:
        try:
            t0, a = _timed(lambda name=name: plan(problem, name), repeat)
            t1, b = _timed(lambda name=name: plan(merged.problem, name), repeat)
            _, c = _timed(lambda name=name: plan(blocks.problem, name), 1)
        except Exception as exc:  # a planner that does not apply (e.g. dp's size limits)
            row["planners"][name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
            continue
        row["planners"][name] = {
            "solve_s": t0, "solve_merged_s": t1, "speedup": t0 / t1 if t1 else None,
            "speedup_with_preprocessing": t0 / (t1 + pre_s) if t1 + pre_s else None,
            "optimum": a.objective_value, "optimum_merged": b.objective_value,
            "same_optimum": abs(a.objective_value - b.objective_value) <= 1e-9 * max(1.0, abs(a.objective_value)),
            "optimum_blocks": c.objective_value,
            "blocks_loss_rel": (c.objective_value - a.objective_value) / a.objective_value if a.objective_value else 0.0,
        }
    cells = "  ".join(
        f"{k} {v['solve_s'] * 1e3:.1f}->{v['solve_merged_s'] * 1e3:.1f} ms ({v['speedup']:.1f}x, same={v['same_optimum']}, "
        f"blocks loss {100 * v['blocks_loss_rel']:.2f}%)" if "error" not in v else f"{k} n/a"
        for k, v in row["planners"].items()
    )
    print(f"  {label:18s} {row['nodes']:6d} -> {row['merged_nodes']:6d} nodes (blocks {row['blocks_nodes']}), "
          f"merge {pre_s * 1e3:.0f} ms; {cells}")
    return row


def preprocess_section(models: list[str], large: list[int], repeat: int) -> list[dict[str, Any]]:
    from tiercut.graph import capture_model
    from tiercut.plan.synthetic import synthetic_dag, synthetic_problem

    rows = []
    for name in models:
        graph = capture_model(name, (1, 3, 64, 64) if name not in ("inception_v3", "vit_b_16") else None).graph
        for devices in (2, 3):
            planners = ("mincut", "ilp") if devices == 2 else ("mincut",)
            rows.append(_solve_row(f"{name}/{devices}dev", synthetic_problem(graph, devices), planners, repeat))
    for size in large:
        graph = synthetic_dag(size)
        rows.append(_solve_row(f"synthetic-{size}/2dev", synthetic_problem(graph, 2), ("mincut", "ilp"), 1))
        rows.append(_solve_row(f"synthetic-{size}/3dev", synthetic_problem(graph, 3), ("mincut",), 2))
    return rows


def _cpu() -> str:
    from _common import host_description

    host = host_description()
    return f"{host.get('cpu', '?')} ({host.get('cores', os.cpu_count())} cores)"


def cut_section(quick: bool) -> dict[str, Any]:
    """Plan latency with and without cut compression on the Neurosurgeon presets (benchmarks/cut_compression.py)."""
    import cut_compression as cut

    tensors = cut.tensors_section(cut.QUICK_MODELS if quick else cut.MODELS)
    plans = cut.plans_section(tensors)
    print(f"  {'model@preset':32s} {'planner':12s} {'off ms':>9s} {'on ms':>9s} {'speed-up':>8s}  codecs")
    for key, row in plans.items():
        for algorithm, r in row.items():
            codecs = ",".join(f"{n}:{c}" for n, c in r["cut_compression"].items()) or "-"
            print(f"  {key:32s} {algorithm:12s} {r['latency_off_s'] * 1e3:9.2f} {r['latency_on_s'] * 1e3:9.2f} "
                  f"{r['speedup']:8.2f}  {codecs}")
    speedups = {preset: [r["ilp"]["speedup"] for k, r in plans.items() if k.endswith(preset)] for preset in cut.PRESETS}
    return {
        "accuracy_loss_max": cut.BUDGET,
        "codecs": {name: entry["summary"] for name, entry in tensors.items()},
        "plans": plans,
        "ilp_speedup_median_per_preset": {p: statistics.median(v) for p, v in speedups.items() if v},
        "jalad": cut.JALAD_REPORTED,
        "comparison": (
            "JALAD's own speed-ups could not be read (abstract only); the ILP's speed-up here is the cost model's, "
            "on Neurosurgeon's link figures with device times from the catalog predictor and codec times measured "
            "on this host and scaled per device (an assumption)"
        ),
    }


def run(quick: bool) -> dict[str, Any]:
    """Every section (the lead's front door composes benchmarks from ``run``)."""
    from _common import host_description

    out: dict[str, Any] = {"host": host_description()}
    runs = 5 if quick else 15
    out["digits"] = digits_section(runs)
    out["zoo"] = zoo_section(["resnet18", "mobilenet_v2"] if quick else ["resnet18", "mobilenet_v2", "vgg16", "googlenet"],
                             runs, 16 if quick else 32)
    out["cut"] = cut_section(quick)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer models and runs")
    parser.add_argument("--sections", default="digits,zoo,preprocess,cut",
                        help="comma list; the other sections are kept from the last results file")
    parser.add_argument("--zoo", default=None, help="comma list of zoo models (default: per --quick)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from _common import RESULTS
    from tiercut.graph.models import ZOO

    chosen = [m.strip() for m in args.zoo.split(",") if m.strip()] if args.zoo else None
    zoo_compress = chosen or (["resnet18", "mobilenet_v2"] if args.quick else ["resnet18", "mobilenet_v2", "vgg16", "googlenet"])
    zoo_graphs = chosen or (["resnet18", "googlenet", "mobilenet_v2"] if args.quick else sorted(ZOO))
    runs = 5 if args.quick else 15
    path = RESULTS / "compression.json"
    result: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    result.pop("host", None)
    result.setdefault("sections", {})
    written = path
    for section in [s.strip() for s in args.sections.split(",") if s.strip()]:
        load = list(os.getloadavg())
        start = time.perf_counter()
        print(f"{section}:")
        if section == "digits":
            result["digits"] = digits_section(runs)
        elif section == "zoo":
            result["zoo"] = zoo_section(zoo_compress, runs, 16 if args.quick else 32)
            result["zoo_note"] = ZOO_NOTE
        elif section == "preprocess":
            result["preprocess"] = preprocess_section(zoo_graphs, [10_000], 3 if args.quick else 5)
        elif section == "cut":
            result["cut"] = cut_section(args.quick)
        else:
            parser.error(f"unknown section {section!r}")
        result["sections"][section] = {"load_before": load, "load_after": list(os.getloadavg()), "cpu": _cpu(),
                                       "seconds": time.perf_counter() - start, "quick": args.quick,
                                       "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        written = write_result("compression", result)  # after every section: a long run keeps what it measured
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
