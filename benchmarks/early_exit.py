"""Early exits: accuracy vs latency over SLOs (Edgent, DDNN, no exits), planned vs measured exit behaviour.

The model is torchvision's ResNet architecture scaled to one BasicBlock per
stage (``tiercut.exits.models:digits_resnet``) on 3x32x32 digits, with
BranchyNet exits after layer1, layer2 and layer3, trained on scikit-learn's
digits (seeded) with BranchyNet's weighted loss and the side branches'
gradient kept out of the trunk (``trunk_gradient`` 0: the final exit is
then the network without exits); the same network without exits is
trained with the same settings as the reference, and the fully joint
training (gradient into the trunk) is trained too for comparison. For each
environment (the three Neurosurgeon presets and ``three-tier``; device
times predicted from the catalog):

- the accuracy-latency curve: each exit point's minimum latency (Edgent's
  right-sized model, exact ILP) and accuracy;
- an SLO sweep: Edgent's accuracy and latency at each SLO beside the no-exit
  plan (the final exit only: feasible or not);
- DDNN's plan (local exit on the end device, edge exit, cloud final) with its
  expected latency, accuracy and bytes sent per query, beside offloading the
  raw input to the cloud.

Then the DDNN plan of ``three-tier``: its threshold trade-off (accuracy
against expected latency over thresholds tuned for growing accuracy drops,
:mod:`tiercut.exits.tradeoff`) and the point chosen for an accuracy floor 2
points under the final exit (the fastest at least that accurate); it runs
in the split executor (:mod:`tiercut.exits.runtime`) and on real gRPC
workers (local processes, :func:`tiercut.exits.deploy.run_exit_plan`) on
held-out digits: exit rates, accuracy, latency and bytes sent, planned vs
measured; and in the SimPy simulation (per-query exits drawn from the
rates).

What the papers report (cited, not reproduced: other models, data and
hardware):

- BranchyNet (Teerapittayanon et al., ICPR 2016): early exits give 2x-6x
  inference speed-ups on CPU and GPU at about the final exit's accuracy
  (summary of the paper at https://study.space/p/BranchyNet%3A_Fast_inference_via_early_exiting_from_deep_neural_networks);
- DDNN (Teerapittayanon et al., ICDCS 2017, abstract): most sensor data
  processed locally on end devices while keeping high accuracy, communication
  cost reduced by a factor of over 20x against offloading raw sensor data to
  the cloud (https://deepai.org/publication/distributed-deep-neural-networks-over-the-cloud-the-edge-and-end-devices);
- Edgent (Li et al., IEEE TWC 2019 / MECOMM 2018): chooses exit and partition
  point to maximise accuracy under the latency requirement; its abstract
  (https://cs.paperswithcode.com/paper/edge-ai-on-demand-accelerating-deep-neural)
  gives no headline number, so the comparison is the shape: accuracy rises
  monotonically as the SLO loosens and every SLO a configuration can meet is met.

    .venv/bin/python benchmarks/early_exit.py [--epochs 3] [--queries 150]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_result

warnings.filterwarnings("ignore", category=FutureWarning)

ENVS = ("neurosurgeon-3g", "neurosurgeon-lte", "neurosurgeon-wifi", "three-tier")
MODEL = "tiercut.exits.models:digits_resnet"
AFTER = ["layer1_0_relu_1", "layer2_0_relu_1", "layer3_0_relu_1"]


def sent_bytes(ep: Any, plan: Any) -> float:
    """Expected payload bytes a query sends under ``plan`` (the cost model's transfers of each exit's query)."""
    from tiercut.exits.cost import evaluate_expected

    ev = evaluate_expected(ep, plan.placement, plan.active)
    return sum(p * sum(t.out_bytes for t in q.transfers) for p, q in zip(ev.exit_rates, ev.queries, strict=True))


def sweep(ep: Any) -> dict[str, Any]:
    from tiercut.plan import get_planner

    base = get_planner("edgent").solve(ep)
    curve = [{"exit": r["exit"], "accuracy": r["accuracy"], "min_latency_s": r["latency_s"]} for r in base.candidates]
    lats = [r["min_latency_s"] for r in curve]
    lo, hi = min(lats) * 0.8, max(lats) * 1.2
    slos = [lo * (hi / lo) ** (i / 11) for i in range(12)]
    rows = []
    final = next(r for r in curve if r["exit"] == "final")
    for slo in slos:
        plan = get_planner("edgent").solve(ep.with_limits(latency_slo_s=slo))
        rows.append({
            "slo_s": slo,
            "edgent_feasible": plan.feasible,
            "edgent_exit": plan.active[0],
            "edgent_accuracy": plan.accuracy if plan.feasible else None,
            "edgent_latency_s": plan.latency_s,
            "no_exit_feasible": final["min_latency_s"] <= slo,
            "no_exit_accuracy": final["accuracy"] if final["min_latency_s"] <= slo else None,
        })
    ddnn = get_planner("ddnn").solve(ep)
    from tiercut.exits.cost import evaluate_expected

    cloud = next(d.name for d in ep.problem.devices if d.tier == "cloud")
    cloud_only = {n.name: cloud for n in ep.problem.graph if not n.is_input}
    raw = evaluate_expected(ep, cloud_only, ["final"])
    return {
        "curve": curve,
        "sweep": rows,
        "ddnn": {"active": list(ddnn.active), "exit_rates": list(ddnn.exit_rates), "latency_s": ddnn.latency_s,
                 "worst_latency_s": ddnn.worst_latency_s, "accuracy": ddnn.accuracy,
                 "bytes_per_query": sent_bytes(ep, ddnn), "feasible": ddnn.feasible},
        "cloud_only": {"latency_s": raw.latency_s, "accuracy": raw.accuracy,
                       "bytes_per_query": sum(t.out_bytes for t in raw.queries[0].transfers)},
        "ddnn_plan": ddnn,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=150)
    args = parser.parse_args()

    import numpy as np
    import torch

    from tiercut.env import load_environment
    from tiercut.exits.build import build_exit_model
    from tiercut.exits.cost import ExitProblem, evaluate_expected
    from tiercut.exits.deploy import run_exit_plan
    from tiercut.exits.runtime import ExitExecutor
    from tiercut.exits.simulate import simulate_exits
    from tiercut.exits.tradeoff import choose_thresholds, threshold_tradeoff
    from tiercut.exits.train import TrainingSettings, load_digits_split
    from tiercut.graph import capture_model
    from tiercut.problem import build_problem

    load_at_start = list(os.getloadavg())
    t0 = time.perf_counter()
    detached = TrainingSettings(epochs=args.epochs, seed=0, trunk_gradient=(0.0,) * len(AFTER))
    exit_model, net = build_exit_model(MODEL, (1, 3, 32, 32), AFTER, settings=detached)
    train_s = time.perf_counter() - t0
    routing = exit_model.routing()
    joint_model, _ = build_exit_model(MODEL, (1, 3, 32, 32), AFTER, settings=TrainingSettings(epochs=args.epochs, seed=0),
                                      baseline=False)
    joint_routing = joint_model.routing()
    training = {
        "model": MODEL, "after": AFTER, "epochs": args.epochs, "train_s_both_nets": train_s,
        "settings": detached.to_dict(),
        "accuracy": {e.name: e.accuracy for e in exit_model.exits},
        "baseline_accuracy": exit_model.training["baseline_accuracy"],
        "final_minus_baseline": exit_model.exits[-1].accuracy - exit_model.training["baseline_accuracy"],
        "thresholds": dict(exit_model.thresholds), "rule": exit_model.rule,
        "accuracy_drop": exit_model.training["accuracy_drop"],
        "exit_rates_all_active": dict(zip((e.name for e in exit_model.exits), routing.exit_rates, strict=True)),
        "accuracy_all_active": routing.accuracy,
        "joint_training": {
            "note": "BranchyNet's joint training with every branch's gradient into the trunk, same seed and epochs",
            "accuracy": {e.name: e.accuracy for e in joint_model.exits},
            "final_minus_baseline": joint_model.exits[-1].accuracy - exit_model.training["baseline_accuracy"],
            "exit_rates_all_active": dict(zip((e.name for e in joint_model.exits), joint_routing.exit_rates,
                                              strict=True)),
            "accuracy_all_active": joint_routing.accuracy,
        },
    }
    print(f"trained in {train_s:.1f} s (branches detached from the trunk): exit accuracies "
          f"{ {k: round(v, 4) for k, v in training['accuracy'].items()} }, same net without exits "
          f"{training['baseline_accuracy']:.4f}; exit mix {[round(r, 3) for r in routing.exit_rates]}")
    print(f"joint training for comparison: { {k: round(v, 4) for k, v in training['joint_training']['accuracy'].items()} },"
          f" exit mix {[round(r, 3) for r in joint_routing.exit_rates]}")

    envs: dict[str, Any] = {}
    problems = {}
    for name in ENVS:
        problem = build_problem(exit_model.graph, load_environment(name))
        ep = ExitProblem.from_exit_model(problem, exit_model)
        problems[name] = ep
        envs[name] = sweep(ep)
        res = envs[name]
        print(f"\n{name}: accuracy-latency curve (min latency per exit point)")
        for r in res["curve"]:
            print(f"  {r['exit']:6} acc {r['accuracy']:.4f}  {r['min_latency_s'] * 1e3:9.3f} ms")
        print(f"  {'SLO':>10} {'edgent exit':>11} {'acc':>7} {'lat':>10} | {'no-exit acc':>11}")
        for r in res["sweep"]:
            acc = "-" if r["edgent_accuracy"] is None else f"{r['edgent_accuracy']:.4f}"
            ne = "-" if r["no_exit_accuracy"] is None else f"{r['no_exit_accuracy']:.4f}"
            print(f"  {r['slo_s'] * 1e3:8.3f}ms {r['edgent_exit'] if r['edgent_feasible'] else 'none':>11} {acc:>7} "
                  f"{r['edgent_latency_s'] * 1e3:8.3f}ms | {ne:>11}")
        d, c = res["ddnn"], res["cloud_only"]
        print(f"  DDNN {'+'.join(d['active'])}: rates {[round(x, 3) for x in d['exit_rates']]}, expected "
              f"{d['latency_s'] * 1e3:.3f} ms (worst {d['worst_latency_s'] * 1e3:.3f}), acc {d['accuracy']:.4f}, "
              f"{d['bytes_per_query']:.0f} B/query vs cloud-only {c['bytes_per_query']} B "
              f"({c['bytes_per_query'] / max(d['bytes_per_query'], 1e-9):.1f}x less), cloud-only {c['latency_s'] * 1e3:.3f} ms")

    # planned vs measured: the DDNN plan of three-tier in the split executor and the simulator
    ep = problems["three-tier"]
    plan = envs["three-tier"].pop("ddnn_plan")
    for e in envs.values():
        e.pop("ddnn_plan", None)
    data = load_digits_split((1, 3, 32, 32), 0)
    captured = capture_model(net, example_inputs=(data.x_test[:1],))
    executor = ExitExecutor(captured, exit_model.exits, plan.placement, plan.active, exit_model.rule,
                            exit_model.thresholds, ep.problem.source)
    n = min(args.queries, len(data.y_test))
    ev = evaluate_expected(ep, plan.placement, plan.active)
    exit_bytes = {a: sum(t.out_bytes for t in q.transfers) for a, q in zip(plan.active, ev.queries, strict=True)}
    mismatches = 0
    taken, right, payload, frame = [], 0, [], []
    t1 = time.perf_counter()
    for i in range(n):
        trace = executor.run(data.x_test[i:i + 1])
        taken.append(trace.exit)
        right += int(trace.answer.argmax(1).item() == int(data.y_test[i]))
        payload.append(trace.payload_bytes)
        frame.append(trace.frame_bytes)
        mismatches += int(trace.payload_bytes != exit_bytes[trace.exit])
    run_s = time.perf_counter() - t1
    measured_rates = [taken.count(a) / n for a in plan.active]
    tradeoff = threshold_tradeoff(ep, plan.placement, plan.active)
    floor = exit_model.exits[-1].accuracy - 0.02
    chosen = choose_thresholds(tradeoff, accuracy_min=floor)
    print(f"\nthree-tier DDNN ({'+'.join(plan.active)}): accuracy against expected latency over thresholds")
    for q in tradeoff:
        print(f"  drop {q.accuracy_drop:6.4f}: rates {[round(r, 3) for r in q.exit_rates]}, acc {q.accuracy:.4f}, "
              f"{q.latency_s * 1e3:.3f} ms")
    if chosen is not None:
        print(f"  chosen for accuracy >= {floor:.4f}: drop {chosen.accuracy_drop}, rates "
              f"{[round(r, 3) for r in chosen.exit_rates]}, acc {chosen.accuracy:.4f}, {chosen.latency_s * 1e3:.3f} ms")
    print(f"\nthree-tier DDNN on gRPC workers (local processes, {n} held-out digits):")
    worker_report, _ = run_exit_plan(exit_model, net, ep, plan, queries=n, env_spec="three-tier",
                                     environment=load_environment("three-tier"))
    for line in worker_report.lines():
        print("  " + line)
    sim = simulate_exits(ep, plan.placement, plan.active, n_queries=5000, seed=0)
    sim_rates = [sum(q.exit == a for q in sim) / len(sim) for a in plan.active]
    runtime = {
        "env": "three-tier", "active": list(plan.active), "queries": n, "run_s": run_s,
        "planned_exit_rates": list(ev.exit_rates), "measured_exit_rates": measured_rates,
        "standard_error": [math.sqrt(p * (1 - p) / n) for p in ev.exit_rates],
        "planned_accuracy": ev.accuracy, "measured_accuracy": right / n,
        "planned_bytes_per_query": sent_bytes(ep, plan), "measured_payload_bytes_per_query": float(np.mean(payload)),
        "measured_frame_bytes_per_query": float(np.mean(frame)),
        "planned_bytes_per_exit": exit_bytes,
        "queries_whose_bytes_differ_from_their_exits_plan": mismatches,
        "simulated_exit_rates": sim_rates, "simulated_mean_latency_s": float(np.mean([q.latency_s for q in sim])),
        "planned_expected_latency_s": ev.latency_s,
        "note": "measured on the first held-out digits; the plan's rates are over all 450 (sampling error applies)",
        "workers": {**worker_report.to_dict(),
                    "note": "gRPC worker processes on this host (edge, cloud) with three-tier's links emulated; "
                            "compute is this host's CPU, not the preset devices', so measured latency differs from "
                            "the plan's predicted device times"},
    }
    threshold_choice = {
        "env": "three-tier", "active": list(plan.active),
        "curve": [q.to_dict() for q in tradeoff],
        "accuracy_min": floor,
        "chosen": None if chosen is None else chosen.to_dict(),
        "tuned_with_fixed_drop": {"accuracy_drop": exit_model.training["accuracy_drop"],
                                  "exit_rates": list(ev.exit_rates), "accuracy": ev.accuracy,
                                  "latency_s": ev.latency_s},
    }
    print(f"\nthree-tier DDNN in the split executor ({n} held-out digits, {run_s:.1f} s):")
    for a, p, m, s in zip(plan.active, ev.exit_rates, measured_rates, sim_rates, strict=True):
        print(f"  {a:6} planned {p:.3f}  measured {m:.3f}  simulated {s:.3f}")
    print(f"  accuracy planned {ev.accuracy:.4f} measured {right / n:.4f}; bytes/query planned "
          f"{runtime['planned_bytes_per_query']:.0f} measured {runtime['measured_payload_bytes_per_query']:.0f} payload "
          f"({runtime['measured_frame_bytes_per_query']:.0f} framed); simulated mean latency "
          f"{runtime['simulated_mean_latency_s'] * 1e3:.3f} ms vs expected {ev.latency_s * 1e3:.3f} ms")
    print(f"  bytes per exit (cost model) {exit_bytes}; queries whose sent bytes differ from their exit's: {mismatches}")

    path = write_result("early_exit", {
        "load_average_at_start": load_at_start, "load_average_at_end": list(os.getloadavg()),
        "training": training, "envs": envs, "runtime": runtime, "threshold_choice": threshold_choice,
        "reported": {
            "branchynet": "2x-6x speed-up on CPU and GPU at about the final exit's accuracy (ICPR 2016)",
            "ddnn": "communication cost reduced by over 20x vs offloading raw sensor data to the cloud (ICDCS 2017)",
            "edgent": "max accuracy under the latency requirement by exit x partition enumeration (TWC 2019); "
                      "no headline figure in the sources found",
        },
    })
    _plot(envs)
    print(f"\nwrote {path}")
    del torch


def _plot(envs: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(envs), figsize=(4 * len(envs), 3.4), squeeze=False)
    for ax, (name, res) in zip(axes[0], envs.items(), strict=True):
        slo = [r["slo_s"] * 1e3 for r in res["sweep"]]
        ax.step(slo, [r["edgent_accuracy"] or 0 for r in res["sweep"]], where="post", label="Edgent (exits)")
        ax.step(slo, [r["no_exit_accuracy"] or 0 for r in res["sweep"]], where="post", linestyle="--", label="no exits")
        ax.scatter([r["min_latency_s"] * 1e3 for r in res["curve"]], [r["accuracy"] for r in res["curve"]], s=12,
                   color="k", label="exit points")
        d = res["ddnn"]
        ax.scatter([d["latency_s"] * 1e3], [d["accuracy"]], marker="*", s=80, color="C3", label="DDNN (expected)")
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("latency SLO / latency (ms)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(RESULTS / "early_exit.png", dpi=110)


if __name__ == "__main__":
    main()
