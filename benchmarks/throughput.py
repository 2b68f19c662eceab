"""Throughput: the throughput-optimal plan vs the latency-optimal plan, DADS' heavy load, several DNNs jointly.

Run ``.venv/bin/python benchmarks/throughput.py`` (``--quick`` for a short
run). Writes ``benchmarks/results/throughput.json`` and prints short tables.

Sections (figures are the cost model's predictions, docs/cost-model.md
"Throughput" and "Several DNNs"; per-node times from the profiler, as
``tiercut plan`` builds them):

1. ``single``: per zoo model x preset, the latency-optimal plan (``ilp``,
   objective latency) and the throughput-optimal plan (``ilp``, objective
   throughput: the least bottleneck stage), each with its latency and its
   pipelined throughput (1 / bottleneck); the throughput-optimal plan under a
   latency bound of 1.2 x the optimal latency; DADS' heavy-load approximation
   (``throughput-mincut``) and, on chains, the exact ``throughput-dp``; and the
   all-local and all-on-cloud throughputs, the baselines DADS reports its
   throughput gains over.
2. ``dads_reported``: DADS' published heavy-load figures (Hu et al.,
   INFOCOM'19, abstract) beside our largest gains over local-only and
   cloud-only, with why they differ.
3. ``multi``: pairs of models with their own rates and sources (migration-12's
   two clients) sharing its two fastest edge and cloud servers:
   ``joint-ilp`` vs ``independent`` (each planned alone), max utilisation
   (throughput objective: how far the rates can grow together) and mean latency
   (latency objective: feasible only if no stage is overloaded; again at
   :data:`LATENCY_RATE_SCALE` x the rates, where the plans made alone
   overload a shared stage).

Measured (:func:`measured`, skipped with ``--no-measure``): the presets'
devices cannot run here, so the latency-optimal and the throughput-optimal
plan of benchmarks/pipelining.py's model are planned on a three-tier
environment calibrated to this host and run on local workers with 1..4
queries in flight (``tiercut run --in-flight``): measured throughput and
latency beside the prediction (``1 / B``, and ``min(1 / B, N / T)`` at N in
flight). Twice: ``uncalibrated`` (node medians of the profile, emulated links
alone: the runtime's per-message costs left out) and ``calibrated`` (the
figures :func:`pipelining.calibrate_runtime` measures first on placements that
are not the benchmarked ones: each executor's compute over the profile and the
per-message costs of docs/cost-model.md). The uncalibrated plans are also
predicted by the calibrated model (an independent check).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import host_description, write_result

#: the measured section: benchmarks/pipelining.py's model on a three-tier environment calibrated to this host
#: (every device this host, emulated MEASURED_SLOWDOWN times slower by sleeping, so stages sharing the 2 cores do
#: not slow each other), the end device's links sized so that sending the input takes a quarter of the local run
MEASURED_SLOWDOWN = 10.0

PRESETS_QUICK = ("neurosurgeon-wifi", "three-tier")
#: edge-cluster (7 devices) is left out: three MILPs per case without the dominated-device presolve ran into
#: their time limits on the shared 2-core machine (load ~9); neurosurgeon-3g/-lte give the same picture as wifi
PRESETS = ("neurosurgeon-wifi", "three-tier")
ZOO_QUICK = ("alexnet", "resnet18")
ZOO = ("alexnet", "vgg16", "resnet18", "mobilenet_v2", "resnet50")
#: several DNNs: (model, rate, source) pairs on migration-12's two clients sharing its fastest edge and cloud servers
PAIRS_QUICK = ((("alexnet", 10.0, "client1"), ("resnet18", 5.0, "client2")),)
PAIRS = (*PAIRS_QUICK, (("mobilenet_v2", 20.0, "client1"), ("vgg16", 2.0, "client2")))
JOINT_PRESET = "migration-12"
JOINT_DEVICES = ("client1", "client2", "edge4", "edge5", "cloud4", "cloud5")
#: the latency objective again at these times the rates: planned alone, the models overload a shared stage
LATENCY_RATE_SCALE = 6.0
LATENCY_SLACK = 1.2

DADS_REPORTED = {
    "throughput_gain_max_vs_edge_only": 8.31,
    "throughput_gain_max_vs_cloud_only": "14 (the stored abstract is cut after '14'; 14.01 from memory, unverified)",
    "latency_speedup_max_vs_edge_only": 6.45,
    "latency_speedup_max_vs_cloud_only": 8.08,
    "source": "Hu, Bao, Wang, Liu, 'Dynamic Adaptive DNN Surgery for Inference Acceleration on the Edge', INFOCOM "
    "2019, abstract (research.polyu.edu.hk publication page): 'improve latency up to 6.45 and 8.08 times "
    "respectively, and improve throughput up to 8.31 and 14...' vs executing the entire DNN on the edge and on "
    "the cloud; DSH is a 3-approximation of the NP-hard heavy-load problem",
    "why_different": "DADS measures a self-driving-car video stream on its own edge box and cloud, with 3 stages "
    "(edge compute, upload, cloud compute); here the figures are predictions of the stage model over tiercut's "
    "presets and profiled times, with a stage per device and per link direction (downlink included), and the "
    "'edge' of DADS is the source device",
}


def _problem(model: str, preset: str, objective: str, source: str | None = None) -> Any:
    from tiercut.env import load_environment
    from tiercut.graph import extract_graph
    from tiercut.problem import build_problem

    key = (model, preset, objective, source)
    if key not in _CACHE:
        graph = _GRAPHS.setdefault(model, extract_graph(model))
        _CACHE[key] = build_problem(graph, load_environment(preset), objective=objective, source=source)
    return _CACHE[key]


_CACHE: dict[tuple[str, str, str, str | None], Any] = {}
_GRAPHS: dict[str, Any] = {}


def _figures(plan: Any, problem: Any) -> dict[str, Any]:
    stage = max(plan.pipeline_stages, key=lambda k: plan.pipeline_stages[k]) if plan.pipeline_stages else ""
    return {
        "algorithm": plan.algorithm,
        "latency_s": plan.latency_s,
        "bottleneck_s": plan.bottleneck_s,
        "bottleneck_stage": stage,
        "throughput_qps": plan.throughput_qps,
        "optimal": plan.optimal,
        "feasible": plan.feasible,
        "solve_s": plan.solve_s,
        "devices": sorted(set(plan.placement.values())),
    }


def single(zoo: tuple[str, ...], presets: tuple[str, ...], time_limit_s: float) -> list[dict[str, Any]]:
    from tiercut.plan import get_planner, plan
    from tiercut.problem import Constraints

    rows = []
    for preset in presets:
        for model in zoo:
            by_latency_problem = _problem(model, preset, "latency")
            by_latency = plan(by_latency_problem, "ilp", time_limit_s=time_limit_s)
            problem = _problem(model, preset, "throughput")
            best = plan(problem, "ilp", time_limit_s=time_limit_s)
            bound = LATENCY_SLACK * by_latency.latency_s
            bounded_problem = problem.with_constraints(Constraints(memory=problem.constraints.memory,
                                                                   latency_budget_s=bound))
            bounded = plan(bounded_problem, "ilp", time_limit_s=time_limit_s)
            dsh = plan(problem, "throughput-mincut")
            dp = plan(problem, "throughput-dp") if get_planner("throughput-dp").applicable(problem) else None
            local = plan(problem, "local")
            cloud_name = next((d.name for d in problem.devices if d.tier == "cloud"), None)
            cloud = plan(problem, "all-on", device=cloud_name) if cloud_name else None
            row = {
                "model": model, "preset": preset, "nodes": len(problem.graph),
                "latency_optimal": _figures(by_latency, by_latency_problem),
                "throughput_optimal": _figures(best, problem),
                "throughput_optimal_latency_bounded": {**_figures(bounded, bounded_problem), "latency_bound_s": bound},
                "dads_heavy_load": _figures(dsh, problem),
                "throughput_dp": None if dp is None else _figures(dp, problem),
                "local": _figures(local, problem),
                "cloud_only": None if cloud is None else _figures(cloud, problem),
            }
            row["throughput_gain_over_latency_plan"] = best.throughput_qps / by_latency.throughput_qps
            row["latency_cost_of_throughput_plan"] = best.latency_s / by_latency.latency_s
            row["dads_over_optimal_bottleneck"] = dsh.bottleneck_s / best.bottleneck_s
            row["throughput_gain_over_local"] = best.throughput_qps / local.throughput_qps
            row["throughput_gain_over_cloud"] = (best.throughput_qps / cloud.throughput_qps
                                                 if cloud is not None and cloud.throughput_qps > 0 else None)
            rows.append(row)
            print(f"{preset:18s} {model:13s} latency-opt {by_latency.throughput_qps:8.2f}/s "
                  f"({by_latency.latency_s * 1e3:7.1f} ms) | throughput-opt {best.throughput_qps:8.2f}/s "
                  f"({best.latency_s * 1e3:7.1f} ms, {'opt' if best.optimal else 'not proven'}) | "
                  f"bounded {bounded.throughput_qps:8.2f}/s | DSH {dsh.throughput_qps:8.2f}/s", flush=True)
    return rows


def multi(pairs: tuple, preset: str, time_limit_s: float) -> list[dict[str, Any]]:
    from tiercut.plan import plan_joint
    from tiercut.problem import JointProblem, Objective, UserProblem

    rows = []
    for pair in pairs:
        for kind, scale in (("throughput", 1.0), ("latency", 1.0), ("latency", LATENCY_RATE_SCALE)):
            models = tuple(
                UserProblem(name, _problem(name, preset, kind, source).restricted_to(JOINT_DEVICES), rate * scale)
                for name, rate, source in pair
            )
            problem = JointProblem(models, Objective(kind), name=" + ".join(n for n, _, _ in pair))
            joint = plan_joint(problem, "joint-ilp", time_limit_s=time_limit_s)
            alone = plan_joint(problem, "independent")
            row = {"models": [{"model": n, "rate_hz": r * scale, "source": src} for n, r, src in pair], "preset": preset,
                   "devices": list(JOINT_DEVICES), "objective": kind}
            for label, p in (("joint", joint), ("independent", alone)):
                row[label] = {"max_utilisation": p.max_utilisation, "bottleneck_stage": p.bottleneck_stage,
                              "throughput_scale": p.throughput_scale, "latency_mean_s": p.latency_mean_s,
                              "latency_max_s": p.latency_max_s, "feasible": p.feasible, "optimal": p.optimal,
                              "solve_s": p.solve_s, "objective_value": p.objective_value}
            row["joint_over_independent_objective"] = (joint.objective_value / alone.objective_value
                                                       if alone.objective_value > 0 else None)
            rows.append(row)
            print(f"{problem.name:24s} {kind:10s} x{scale:g} joint U={joint.max_utilisation:.3f} "
                  f"mean {joint.latency_mean_s * 1e3:7.1f} ms ({'feasible' if joint.feasible else 'overloaded'}) | "
                  f"independent U={alone.max_utilisation:.3f} mean {alone.latency_mean_s * 1e3:7.1f} ms "
                  f"({'feasible' if alone.feasible else 'overloaded'})", flush=True)
    return rows


def measured_setup() -> tuple[Any, dict[str, dict[str, float]], dict[str, Any]]:
    """The measured section's model (captured), this host's node medians (one thread) and its three-tier
    environment: the end device's links sized so that sending the input takes a quarter of the local run."""
    import torch

    import pipelining
    from tiercut.graph import capture_model

    torch.set_num_threads(1)
    captured = capture_model(pipelining.MODEL, pipelining.INPUT_SHAPE)
    table = pipelining.host_table(captured, ["end", "edge", "cloud"])
    local_s = MEASURED_SLOWDOWN * sum(row["end"] for row in table.values())
    input_bytes = sum(n.out_bytes for n in captured.graph.nodes if n.is_input)
    return captured, table, pipelining.environment_spec(input_bytes / (local_s / 4), 1e9)


def measured(quick: bool) -> dict[str, Any]:
    """The latency-optimal and the throughput-optimal plan, predicted and measured with 1..4 queries in flight.

    The presets' devices (a Tegra K1, a K40 server...) cannot run here, so this runs
    benchmarks/pipelining.py's set-up instead: its model, every device this host emulated
    :data:`MEASURED_SLOWDOWN` times slower, each device one pipeline stage on local workers.

    Twice: ``uncalibrated``, the cost model given the profile's node medians and the emulated links (what the
    previous runs did); ``calibrated``, given what :func:`pipelining.calibrate_runtime` measured of the runtime
    on other placements first (each executor's compute over the profile, the busy seconds per message, the
    frame bytes per message and the per-message delay: docs/cost-model.md "Per-message costs"). Each plans
    its own latency- and throughput-optimal plans and predicts them; the workers emulate the same links.
    """
    import tempfile

    import pipelining
    from tiercut.cost import evaluate
    from tiercut.env import environment_from_mapping
    from tiercut.plan import plan as plan_with
    from tiercut.problem import Objective, build_problem
    from tiercut.runtime.migration import placement_plan, prepare_migration
    from tiercut.runtime.pipelining import pipeline_stages

    captured, table, env = measured_setup()
    levels, queries = ([1, 4], 12) if quick else ([1, 2, 4], 30)
    out: dict[str, Any] = {"model": pipelining.MODEL, "input_shape": list(pipelining.INPUT_SHAPE),
                           "compute_slowdown": MEASURED_SLOWDOWN, "environment": env}
    with tempfile.TemporaryDirectory(prefix="tiercut-throughput-") as folder:
        calibration = pipelining.calibrate_runtime(captured, table, env, MEASURED_SLOWDOWN, Path(folder),
                                                   queries=6 if quick else 10)
        out["calibration"] = calibration
        print(f"  calibration: compute x{', '.join(f'{d} {f:.2f}' for d, f in calibration['compute_factor'].items())}; "
              f"message_s {', '.join(f'{d} {s * 1e3:.2f} ms' for d, s in calibration['message_s'].items())}; "
              f"{calibration['message_overhead_bytes']:.0f} B and {calibration['message_latency_s'] * 1e3:.2f} ms "
              "per message", flush=True)
        models = {"uncalibrated": (env, table), "calibrated": pipelining.calibrated(env, table, calibration)}
        problems = {
            kind: build_problem(captured.graph, environment_from_mapping(model_env), source="end", compute_s={
                n: {d: t * MEASURED_SLOWDOWN for d, t in row.items()} for n, row in model_table.items()})
            for kind, (model_env, model_table) in models.items()
        }
        for kind, (model_env, model_table) in models.items():
            problem = problems[kind]
            plans = {
                "latency-optimal": plan_with(problem, "ilp"),
                "throughput-optimal": plan_with(problem.with_objective(Objective("throughput")), "ilp"),
            }
            out[kind] = {"model_environment": model_env, "plans": {}}
            for label, chosen in plans.items():
                placement = dict(chosen.placement)
                migration = prepare_migration(captured, placement_plan(placement, "end"))
                again = pipeline_stages(problems["calibrated"], placement)  # an independent check of the calibration
                out[kind]["plans"][label] = {
                    "figures": _figures(chosen, problem),
                    "placement": placement,
                    "transfers": len(evaluate(problem, placement).transfers),
                    "calibrated_model_prediction": {"throughput_qps": again.throughput_qps,
                                                    "bottleneck": again.bottleneck.name, "latency_s": again.latency_s},
                    **pipelining.measure_scenario(f"{kind[:5]} {label}", captured, migration, placement, table, env,
                                                  levels, queries, Path(folder), MEASURED_SLOWDOWN,
                                                  model=(model_env, model_table)),
                }
    return out


def summary(rows: list[dict[str, Any]], joint_rows: list[dict[str, Any]]) -> dict[str, Any]:
    gains = [r["throughput_gain_over_latency_plan"] for r in rows]
    local_gains = [r["throughput_gain_over_local"] for r in rows]
    cloud_gains = [r["throughput_gain_over_cloud"] for r in rows if r["throughput_gain_over_cloud"] is not None]
    dsh = [r["dads_over_optimal_bottleneck"] for r in rows if math.isfinite(r["dads_over_optimal_bottleneck"])]
    return {
        "cases": len(rows),
        "throughput_gain_over_latency_plan_median": statistics.median(gains),
        "throughput_gain_over_latency_plan_max": max(gains),
        "latency_cost_of_throughput_plan_median": statistics.median(r["latency_cost_of_throughput_plan"] for r in rows),
        "throughput_optimal_proven": sum(r["throughput_optimal"]["optimal"] for r in rows),
        "throughput_gain_over_local_max": max(local_gains),
        "throughput_gain_over_cloud_max": max(cloud_gains) if cloud_gains else None,
        "dads_heavy_load_over_optimal_median": statistics.median(dsh) if dsh else None,
        "dads_heavy_load_over_optimal_max": max(dsh) if dsh else None,
        "joint_over_independent": [
            {"pair": " + ".join(f"{m['model']}@{m['rate_hz']:g}/s" for m in r["models"]), "objective": r["objective"],
             "ratio": r["joint_over_independent_objective"], "joint_feasible": r["joint"]["feasible"],
             "independent_feasible": r["independent"]["feasible"]}
            for r in joint_rows
        ],
    }


def run(quick: bool, measure: bool = True) -> dict[str, Any]:
    start = time.perf_counter()
    zoo, presets = (ZOO_QUICK, PRESETS_QUICK) if quick else (ZOO, PRESETS)
    time_limit = 30.0 if quick else 60.0
    load_before = host_description()["load_average"]
    rows = single(zoo, presets, time_limit)
    joint_rows = multi(PAIRS_QUICK if quick else PAIRS, JOINT_PRESET, time_limit)
    return {
        "quick": quick,
        "load_average_before": load_before,
        "single": rows,
        "dads_reported": DADS_REPORTED,
        "multi": joint_rows,
        "summary": summary(rows, joint_rows),
        "measured": measured(quick) if measure else None,
        "wall_s": time.perf_counter() - start,
    }


def report_measured(m: dict[str, Any]) -> None:
    print(f"\nmeasured on local workers ({m['model']}, devices = this host x{m['compute_slowdown']:g}):")
    for kind in ("uncalibrated", "calibrated"):
        for label, entry in m[kind]["plans"].items():
            predicted = entry["predicted"]
            again = entry.get("calibrated_model_prediction")
            for row in entry["levels"]:
                print(f"  {kind:12s} {label:18s} in flight {row['in_flight']}: {row['throughput_qps']:6.2f} q/s "
                      f"measured, {predicted['throughput_qps']:6.2f} predicted ({row['ratio_to_predicted']:.2f}x; "
                      f"{row.get('ratio_to_bound_at_level', math.nan):.2f}x of min(1/B, N/T), "
                      f"bottleneck {predicted['bottleneck']}), p50 {row['latency_p50_s'] * 1e3:6.1f} ms "
                      f"(one query predicted {predicted['latency_s'] * 1e3:6.1f} ms, at this level >= "
                      f"{row.get('latency_bound_at_level_s', math.nan) * 1e3:6.1f} ms)")
            if again is not None and kind == "uncalibrated":
                print(f"  {'':12s} {label:18s} ({entry.get('transfers')} transfers) by the calibrated model: "
                      f"{again['throughput_qps']:6.2f} q/s, one query {again['latency_s'] * 1e3:6.1f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two models on two presets, one pair")
    parser.add_argument("--no-measure", action="store_true", help="predicted figures only (no local workers)")
    args = parser.parse_args(argv)
    result = run(args.quick, measure=not args.no_measure)
    path = write_result("throughput", result)
    s = result["summary"]
    print(f"\nthroughput-optimal over latency-optimal throughput: median {s['throughput_gain_over_latency_plan_median']:.2f}x,"
          f" max {s['throughput_gain_over_latency_plan_max']:.2f}x; their latency cost median "
          f"{s['latency_cost_of_throughput_plan_median']:.2f}x; proven {s['throughput_optimal_proven']}/{s['cases']}")
    print(f"gain over local-only max {s['throughput_gain_over_local_max']:.2f}x (DADS: up to 8.31x over edge-only); "
          f"over cloud-only max {s['throughput_gain_over_cloud_max'] or float('nan'):.2f}x (DADS: up to 14x)")
    if s["dads_heavy_load_over_optimal_median"] is not None:
        print(f"DADS heavy-load (DSH) bottleneck over the optimum: median {s['dads_heavy_load_over_optimal_median']:.3f}x, "
              f"max {s['dads_heavy_load_over_optimal_max']:.3f}x")
    for j in s["joint_over_independent"]:
        print(f"joint / independent {j['objective']:10s} {j['pair']}: {j['ratio']}")
    if result["measured"] is not None:
        report_measured(result["measured"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
