"""Input-aware routing (AppealNet): accuracy vs fraction offloaded, expected cost, a measured routed run.

Li et al., "AppealNet: An Efficient and Highly-Accurate Edge/Cloud
Collaborative Architecture for DNN Inference", DAC 2021 (arXiv:2105.04104).

The device's two-head model (4x4-pooled digits, one feature layer) and the
cloud's digits CNN are trained on scikit-learn's digits
(:mod:`tiercut.appeal.train`, seeded); on the held-out split (450 digits)
the threshold sweeps from 0 to 1 and, at each point, the fraction of inputs
appealed and the accuracy of the routed answers are measured for:

- ``predictor``: AppealNet's predictor head (tiercut's formulation: trained
  to flag the inputs the small model gets wrong and the big one right);
- ``max_softmax``: the usual confidence baseline, ``1 - max softmax`` of the
  small model's answer;
- ``random``: appealing a random fraction (the straight line between the two
  models' accuracies, computed exactly);
- ``oracle``: appealing exactly the inputs the small model gets wrong and the
  big one right (the best any predictor can do).

Each point carries the cost model's expected latency and source energy in
``three-tier`` (the small model on the Jetson Nano end device, the big model
on the A100 cloud over LTE, :mod:`tiercut.cost.input_routing`). The summary
gives the accuracy at 10/20/30 % offloaded (interpolated) and the fraction
needed to come within 1 point of the big model's accuracy.

Measured: the held-out digits routed one by one at the threshold whose
fraction offloaded is nearest 20 %, the big model on a local gRPC worker
(this machine's shared cores; no link emulation): the answers compared with
the model that gave them, measured accuracy and fraction against the curve,
median latency of local and appealed inputs.

``run(quick)`` returns the result; ``main()`` writes
benchmarks/results/routing.json and routing.png and prints a table.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import numpy as np

from _common import RESULTS, write_result

THRESHOLDS = tuple(round(t, 3) for t in np.linspace(0.0, 1.0, 51))


def _interpolate(curve: list[dict[str, Any]], fraction: float) -> float:
    """Accuracy at ``fraction`` offloaded, linear between the measured points (the upper envelope per fraction)."""
    by_fraction: dict[float, float] = {}
    for p in curve:
        by_fraction[p["fraction_offloaded"]] = max(by_fraction.get(p["fraction_offloaded"], 0.0), p["accuracy"])
    xs = sorted(by_fraction)
    return float(np.interp(fraction, xs, [by_fraction[x] for x in xs]))


def _within(curve: list[dict[str, Any]], target: float) -> float | None:
    fractions = [p["fraction_offloaded"] for p in curve if p["accuracy"] >= target]
    return min(fractions) if fractions else None


def _seed_run(seed: int, quick: bool, small_problem: Any, big_problem: Any) -> dict[str, Any]:
    from tiercut.appeal.curve import RoutedAnswers, router_answers, routing_curve
    from tiercut.appeal.train import RouterSettings, train_router
    from tiercut.cost.input_routing import expected_routing

    begin = time.perf_counter()
    router = train_router(RouterSettings(seed=seed))
    train_s = time.perf_counter() - begin
    data = router.data()
    curves: dict[str, list[dict[str, Any]]] = {}
    for score in ("predictor", "max_softmax"):
        answers = router_answers(router, data.x_test, data.y_test, score)
        curves[score] = [p.to_dict() for p in routing_curve(answers, THRESHOLDS)]
    small_ok, big_ok = answers.small_correct, answers.big_correct
    worth = ~small_ok & big_ok
    oracle = RoutedAnswers(worth.astype(float), small_ok, big_ok).point(0.5)
    for points in curves.values():
        for p in points:
            e = expected_routing(small_problem, big_problem, "cloud", p["fraction_offloaded"])
            p["expected_latency_s"] = e.latency_s
            p["expected_energy_source_j"] = e.energy_source_j
    summary = {}
    for score, points in curves.items():
        summary[score] = {
            **{f"accuracy_at_{int(f * 100)}pct": _interpolate(points, f) for f in (0.1, 0.2, 0.3)},
            "fraction_within_1pt_of_big": _within(points, router.accuracy_big - 0.01),
        }
    summary["random"] = {
        f"accuracy_at_{int(f * 100)}pct": router.accuracy_small + f * (router.accuracy_big - router.accuracy_small)
        for f in (0.1, 0.2, 0.3)
    }
    summary["oracle"] = {"fraction_offloaded": oracle.fraction_offloaded, "accuracy": oracle.accuracy}
    return {
        "seed": seed,
        "train_s": train_s,
        "accuracy_small": router.accuracy_small,
        "accuracy_big": router.accuracy_big,
        "held_out": len(data.y_test),
        "curves": curves,
        "summary": summary,
        "router": router,
    }


def _measured(router: Any, curve: list[dict[str, Any]], queries: int) -> dict[str, Any]:
    import torch

    from tiercut.appeal.runtime import run_routed
    from tiercut.runtime.session import LocalCluster

    point = min(curve, key=lambda p: abs(p["fraction_offloaded"] - 0.2))
    data = router.data()
    x, y = data.x_test[:queries], data.y_test[:queries]
    with LocalCluster(["cloud"]) as cluster:
        run = run_routed(router, x, point["threshold"], cluster.addresses, credentials=cluster.credentials())
    with torch.no_grad():
        small, big = router.small(x)[0], router.big(x)
    matches = sum(bool(torch.allclose(q.answer, (big if q.appealed else small)[q.index], atol=1e-5)) for q in run.queries)
    local = [q.latency_s for q in run.queries if not q.appealed]
    remote = [q.latency_s for q in run.queries if q.appealed]
    return {
        "threshold": point["threshold"],
        "queries": len(run.queries),
        "fraction_offloaded": run.fraction_offloaded,
        "accuracy": run.accuracy(y.tolist()),
        "answers_equal_chosen_model": matches,
        "median_latency_local_s": statistics.median(local) if local else None,
        "median_latency_appealed_s": statistics.median(remote) if remote else None,
        "note": "one machine, shared cores, no link emulation: the execution path, not the cloud's speed",
    }


def _plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = result["seeds"][0]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for score, style in (("predictor", "o-"), ("max_softmax", "s--")):
        pts = sorted(first["curves"][score], key=lambda p: p["fraction_offloaded"])
        ax.plot([p["fraction_offloaded"] for p in pts], [p["accuracy"] for p in pts], style, markersize=3,
                label=f"{score} (AppealNet head)" if score == "predictor" else "1 - max softmax (baseline)")
        bx.plot([p["expected_latency_s"] * 1e3 for p in pts], [p["accuracy"] for p in pts], style, markersize=3, label=score)
    ax.plot([0, 1], [first["accuracy_small"], first["accuracy_big"]], ":", color="grey", label="random appeals")
    oracle = first["summary"]["oracle"]
    ax.plot([oracle["fraction_offloaded"]], [oracle["accuracy"]], "*", markersize=10, color="black", label="oracle")
    ax.set_xlabel("fraction of inputs sent to the cloud")
    ax.set_ylabel("accuracy (held-out digits)")
    ax.set_title(f"AppealNet routing on digits (seed {first['seed']})")
    ax.legend(fontsize=8)
    bx.set_xlabel("expected latency per input, three-tier (ms, cost model)")
    bx.set_ylabel("accuracy")
    bx.set_title("accuracy vs expected latency")
    bx.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "routing.png", dpi=110)
    plt.close(fig)


def run(quick: bool) -> dict[str, Any]:
    from tiercut.appeal.models import INPUT_SHAPE, appeal_big, appeal_small
    from tiercut.env import load_environment
    from tiercut.pipeline.problem import problem

    start = time.perf_counter()
    env = load_environment("three-tier")
    small_problem = problem(appeal_small(), env, source="end", input_shape=INPUT_SHAPE, memory=False)
    big_problem = problem(appeal_big(), env, source="end", input_shape=INPUT_SHAPE, memory=False)
    seeds = [_seed_run(s, quick, small_problem, big_problem) for s in ((0,) if quick else (0, 1, 2))]
    measured = _measured(seeds[0]["router"], seeds[0]["curves"]["predictor"], 40 if quick else 200)
    for s in seeds:
        del s["router"]
    agg = {}
    for score in ("predictor", "max_softmax", "random"):
        for key in ("accuracy_at_10pct", "accuracy_at_20pct", "accuracy_at_30pct"):
            agg.setdefault(score, {})[key] = statistics.median(s["summary"][score][key] for s in seeds)
    return {
        "setting": "digits (scikit-learn), two-head 4x4 model on the device, digits CNN in the cloud; three-tier costs",
        "quick": quick,
        "seeds": seeds,
        "median_over_seeds": agg,
        "measured": measured,
        "wall_s": time.perf_counter() - start,
    }


def main() -> None:
    quick = "--quick" in sys.argv
    result = run(quick)
    path = write_result("routing", result)
    report(result)
    print(f"wrote {path} and {RESULTS / 'routing.png'}")


def report(result: dict[str, Any]) -> None:
    """Draw routing.png and print the accuracy table of a :func:`run` result."""
    _plot(result)
    for s in result["seeds"]:
        print(f"seed {s['seed']}: small {s['accuracy_small']:.3f}, big {s['accuracy_big']:.3f} "
              f"(held-out {s['held_out']}; trained in {s['train_s']:.1f} s)")
        print(f"{'score':<12}{'acc@10%':>9}{'acc@20%':>9}{'acc@30%':>9}{'to big-1pt':>12}")
        for score in ("predictor", "max_softmax", "random"):
            row = s["summary"][score]
            within = row.get("fraction_within_1pt_of_big")
            print(f"{score:<12}{row['accuracy_at_10pct']:>9.3f}{row['accuracy_at_20pct']:>9.3f}{row['accuracy_at_30pct']:>9.3f}"
                  f"{'' if within is None else f'{within:.1%}':>12}")
        o = s["summary"]["oracle"]
        print(f"{'oracle':<12} {o['accuracy']:.3f} at {o['fraction_offloaded']:.1%} offloaded")
    m = result["measured"]
    print(f"measured: {m['queries']} inputs at threshold {m['threshold']}: {m['fraction_offloaded']:.1%} appealed, accuracy "
          f"{m['accuracy']:.3f}; answers equal the chosen model: {m['answers_equal_chosen_model']}/{m['queries']}; "
          f"median latency local {m['median_latency_local_s']}, appealed {m['median_latency_appealed_s']}")


if __name__ == "__main__":
    main()
