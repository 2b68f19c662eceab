"""D2D collaboration (DCOSD2D): predicted speed-up with 1-4 helper phones, the gap to the exact optimum, a measured run.

Setting: the ``d2d-phones`` preset (tiercut/env/presets/d2d-phones.yaml,
figures cited there): a Raspberry Pi 4 camera and up to four Snapdragon 865
phones on a Wi-Fi Direct mesh (6.5 MB/s, Reis et al.), each phone lending
256 MB to a guest model (an assumption of the preset). With ``h`` helpers
the environment keeps the camera and phones 1..h. Device times are predicted
from the catalog (the devices are not here).

For each zoo model and ``h`` = 1..4:

- the ``d2d`` plan's latency (Kuhn-Munkres matching of segments to helpers,
  :mod:`tiercut.plan.d2d`) and its speed-up over running on the camera alone;
- the exact joint optimum (``ilp``, any placement over the same devices, 60 s
  limit: ``exact_optimal`` says whether it proved it) and the d2d plan's gap.

Each phone lends the preset's 256 MB, or less (16-64 MB) so that the model
does not fit on one phone. In the sequential cost model (one node or transfer at
a time) identical helpers add nothing once the model fits on one of them;
more helpers pay off when the model must be spread for memory.

Then the gap on random small problems (6 nodes, 3-4 devices, chain and DAG):
d2d vs ``brute-force`` (the exact optimum), and the matching step vs brute
force over all assignments (always equal: the KM step is exact).

Measured (full run only): a d2d plan of the digits CNN over two helper
phones that each lend 100 kB (the CNN does not fit on one) runs on local gRPC
workers, one process per helper; outputs are compared with the whole model
and the median query latency is recorded. It runs on this machine's shared
cores (no phone is here), so it checks the execution path, not the phones'
speed-up.

``run(quick)`` returns the result; ``main()`` writes
benchmarks/results/d2d.json and prints a table.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import sys
import time
from typing import Any

from _common import write_result

MB = 1_000_000
#: Wi-Fi Direct rates: Reis et al.'s measured 6.5 MB/s (the preset's) and Bertier et al.'s 320 Mbit/s goodput
#: upper bound within 20 m (MSWiM 2019) = 40 MB/s
MEASURED_RATE, UPPER_RATE = 6.5e6, 40e6
#: (model, memory each phone lends, D2D rate): 256 MB is the preset's; with less, the model must be spread over
#: several phones (MoDNN-style memory-driven distribution): VGG-16's conv stack (59 MB) needs two phones at
#: 32 MB and four at 16 MB, ResNet-50 (102 MB) two at 64 MB, DenseNet-121 (32 MB) two at 16 MB
CASES_QUICK = (
    ("alexnet", 256 * MB, MEASURED_RATE),
    ("vgg16", 256 * MB, MEASURED_RATE),
    ("vgg16", 32 * MB, MEASURED_RATE),
    ("resnet50", 64 * MB, MEASURED_RATE),
    ("resnet50", 64 * MB, UPPER_RATE),
)
CASES_FULL = (
    *CASES_QUICK,
    ("resnet18", 256 * MB, MEASURED_RATE),
    ("mobilenet_v2", 256 * MB, MEASURED_RATE),
    ("vgg16", 16 * MB, MEASURED_RATE),
    ("densenet121", 16 * MB, UPPER_RATE),
)


def _environment(helpers: int, memory_lent: int, rate: float) -> Any:
    from tiercut.env import load_environment

    env = load_environment("d2d-phones")
    keep = {"camera", *(f"phone{i}" for i in range(1, helpers + 1))}
    return dataclasses.replace(
        env,
        name=f"d2d-phones-{helpers}",
        devices=tuple(d if d.name == "camera" else dataclasses.replace(d, memory_bytes=memory_lent)
                      for d in env.devices if d.name in keep),
        links=tuple(dataclasses.replace(link, bandwidth_bytes_per_s=rate)
                    for link in env.links if link.a in keep and link.b in keep),
    )


def speedups(cases: tuple[tuple[str, int, float], ...]) -> list[dict[str, Any]]:
    from tiercut.cost import evaluate
    from tiercut.pipeline.problem import problem
    from tiercut.plan import plan

    rows = []
    for model, memory_lent, rate in cases:
        for helpers in range(1, 5):
            p = problem(model, _environment(helpers, memory_lent, rate))
            local = evaluate(p, {n.name: "camera" for n in p.graph})
            d2d = plan(p, "d2d")
            exact = plan(p, "ilp", time_limit_s=60.0)
            used = sorted({d for d in d2d.placement.values() if d != "camera"})
            rows.append({
                "model": model,
                "memory_lent_bytes": memory_lent,
                "d2d_bandwidth_bytes_per_s": rate,
                "helpers": helpers,
                "local_latency_s": local.latency_s,
                "d2d_latency_s": d2d.latency_s,
                "d2d_speedup": local.latency_s / d2d.latency_s,
                "d2d_helpers_used": used,
                "d2d_feasible": d2d.feasible,
                "d2d_solve_s": d2d.solve_s,
                "exact_latency_s": exact.latency_s,
                "exact_optimal": exact.optimal,
                "exact_speedup": local.latency_s / exact.latency_s,
                "gap_to_exact": d2d.latency_s / exact.latency_s - 1.0,
                "exact_solve_s": exact.solve_s,
            })
    return rows


def random_gaps(count: int, seed: int = 0) -> dict[str, Any]:
    from tiercut.cost import compile_problem, linear_form
    from tiercut.plan import plan
    from tiercut.plan.d2d import brute_force_matching, helper_devices, match_segments, segment_weights, segmentations
    from tiercut.plan.synthetic import random_problem

    rng = random.Random(seed)
    gaps, matchings_checked, matchings_equal = [], 0, 0
    for _ in range(count):
        p = random_problem(rng, n_nodes=6, n_devices=rng.choice([3, 4]), shape=rng.choice(["chain", "dag"]))
        if not helper_devices(p):
            continue
        d2d, exact = plan(p, "d2d"), plan(p, "brute-force")
        gaps.append(d2d.objective_value / exact.objective_value - 1.0)
        comp = compile_problem(p)
        form = linear_form(comp, p.objective)
        for k in (1, 2, 3):
            for segments in segmentations(comp, k, 4):
                W, _ = segment_weights(comp, segments, form.node, form.transfer)
                matchings_checked += 1
                km, brute = match_segments(W)[1], brute_force_matching(W)[1]
                matchings_equal += int(km == brute or abs(km - brute) <= 1e-9 * max(1.0, abs(brute)))
    gaps.sort()
    return {
        "problems": len(gaps),
        "exact_fraction": sum(g <= 1e-9 for g in gaps) / len(gaps),
        "gap_median": statistics.median(gaps),
        "gap_mean": statistics.fmean(gaps),
        "gap_p90": gaps[int(0.9 * (len(gaps) - 1))],
        "gap_max": gaps[-1],
        "matchings_checked": matchings_checked,
        "matchings_equal_to_brute_force": matchings_equal,
    }


def measured_run() -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    import torch
    import yaml

    from tiercut.env import environment_from_mapping, load_environment
    from tiercut.exits.models import digits_cnn
    from tiercut.graph import capture_model
    from tiercut.plan import plan
    from tiercut.problem import build_problem
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.migration import placement_plan, prepare_migration
    from tiercut.runtime.session import LocalCluster, run_migration

    helpers = ("phone1", "phone2", "phone3")
    spec = {
        "name": "d2d-small",
        "devices": [{"name": "camera", "tier": "end"},
                    *({"name": h, "tier": "end", "memory_bytes": 100_000} for h in helpers)],
        "links": [{"tiers": ["end", "end"], "bandwidth_bytes_per_s": 6.5e6, "latency_s": 0.005}],
    }
    torch.manual_seed(0)
    captured = capture_model(digits_cnn(), (1, 1, 8, 8))
    env = environment_from_mapping(spec)
    times = {n.name: {"camera": 0.02, **dict.fromkeys(helpers, 0.002)} for n in captured.graph if not n.is_input}
    problem = build_problem(captured.graph, env, source="camera", compute_s=times)
    d2d = plan(problem, "d2d")
    migration = prepare_migration(captured, placement_plan(dict(d2d.placement), "camera"), problem=problem)
    with tempfile.TemporaryDirectory() as tmp:
        env_file = Path(tmp) / "env.yaml"
        env_file.write_text(yaml.safe_dump(spec))
        settings = RunSettings(queries=20, verify_outputs=True, queries_after_upload=20, max_run_s=300)
        with LocalCluster(list(helpers), env=str(env_file)) as cluster:
            result = run_migration(migration, cluster.addresses, credentials=cluster.credentials(), settings=settings,
                                   environment=load_environment(env_file))
    remote = [q for q in result.queries if q.stage == 1 and not q.fallback]
    return {
        "model": "digits_cnn (1x1x8x8)",
        "helpers_used": sorted({d for d in d2d.placement.values() if d != "camera"}),
        "worker_processes": len(helpers),
        "queries": len(result.queries),
        "queries_on_helpers": len(remote),
        "outputs_equal_whole_model": sum(bool(q.output_matches) for q in result.queries),
        "median_latency_s_on_helpers": statistics.median(q.latency_s for q in remote) if remote else None,
        "predicted_latency_s": d2d.latency_s,
        "note": "measured on this host's shared cores with the links emulated; no phone is here",
    }


def run(quick: bool) -> dict[str, Any]:
    start = time.perf_counter()
    out: dict[str, Any] = {
        "setting": "d2d-phones: Raspberry Pi 4 camera + 1-4 Snapdragon 865 phones, Wi-Fi Direct 6.5 MB/s (Reis et al.)",
        "quick": quick,
        "speedups": speedups(CASES_QUICK if quick else CASES_FULL),
        "random_small_problems": random_gaps(60 if quick else 300),
    }
    if not quick:
        out["measured"] = measured_run()
    out["wall_s"] = time.perf_counter() - start
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    result = run(quick)
    path = write_result("d2d", result)
    report(result)
    print(f"wrote {path}")


def report(result: dict[str, Any]) -> None:
    """Print the speed-up table of a :func:`run` result."""
    head = ("model", "lent MB", "MB/s", "helpers", "local ms", "d2d ms", "speed-up", "exact ms", "gap", "used")
    print("".join(f"{h:>10}" for h in head))
    for r in result["speedups"]:
        cells = (
            r["model"], r["memory_lent_bytes"] // MB, f"{r['d2d_bandwidth_bytes_per_s'] / MB:.1f}", r["helpers"],
            f"{r['local_latency_s'] * 1e3:.1f}", f"{r['d2d_latency_s'] * 1e3:.1f}", f"{r['d2d_speedup']:.2f}x",
            f"{r['exact_latency_s'] * 1e3:.1f}", f"{r['gap_to_exact']:.1%}", ",".join(r["d2d_helpers_used"]) or "-",
        )
        print("".join(f"{c:>10}" for c in cells[:-1]) + f"  {cells[-1]}")
    g = result["random_small_problems"]
    print(f"random small problems: {g['problems']}, d2d exact on {g['exact_fraction']:.0%}, gap median {g['gap_median']:.1%}, "
          f"p90 {g['gap_p90']:.1%}, max {g['gap_max']:.1%}; KM = brute force on "
          f"{g['matchings_equal_to_brute_force']}/{g['matchings_checked']} matchings")
    if "measured" in result:
        m = result["measured"]
        print(f"measured: {m['outputs_equal_whole_model']}/{m['queries']} outputs equal the whole model; "
              f"helpers {','.join(m['helpers_used'])}; median latency on helpers {m['median_latency_s_on_helpers']}")


if __name__ == "__main__":
    main()
