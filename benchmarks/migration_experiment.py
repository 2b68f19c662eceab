"""The migration seed's Figure 5: Direct vs IONN vs (Recursive) Efficiency uploading, multi-user.

The seed (dnn-migration-in-iots, "Experimental Comparison"): 12 devices
(2 clients, 5 edge, 5 cloud servers, the ``migration-12`` preset), a PSO
partition-offloading plan over all of them for two users -- AlexNet on
client1 and VGG on client2 -- then each (user, server) pair's partition P1
divided into partitions P3 and uploaded by Direct, IONN, Efficiency and
Recursive Efficiency while each client issues queries back to back.

The seed's model sizes were 223 MB (AlexNet) and 548 MB (VGG): sizes in
MiB, as the 548 is VGG-19's 143.7 M float32 parameters (548.0 MiB); the
preset's second user runs torchvision's VGG-19 (random weights) and
AlexNet is 233.1 MiB. Sizes are compared in MiB. Per method and user it
reports:

- analytic (the IONN model of DESIGN.md under the equal-share multi-user
  model of the PSO plan): every query's delay while uploading (the curves of
  Figure 5), time to finish the ``n`` queries issued during a direct upload
  of the user's targets (the same ``n`` for every method: the seed's "total
  time to finish the queries issued during upload"), queries done by the end
  of the upload, mean delay while uploading;
- simulated (``tiercut.sim``: both users at once, uploads sharing the links
  with query tensors, processor-sharing servers): the same figures measured
  on the trace.

The PSO offloading plan is random: the whole comparison runs for several
PSO seeds (``--seeds``), and the seed's ordering (recursive efficiency
before IONN before Direct, in time to finish the queries issued during the
upload) is reported per seed with its margins, including the seeds and
variants where it does not hold. The figures and the dedicated-channel
simulation are made for the first seed.

Writes benchmarks/results/migration_experiment.json and
migration_figure5_alexnet.png / migration_figure5_vgg19.png (analytic) and
migration_figure5_simulated.png.

    .venv/bin/python benchmarks/migration_experiment.py [--iterations 300] [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_result

warnings.filterwarnings("ignore", category=FutureWarning)

METHODS = ("direct", "ionn", "efficiency", "recursive-efficiency")
#: the seed's model sizes, read as MiB (548 MiB is VGG-19's float32 weights exactly)
SEED_SIZES_MIB = {"alexnet": 223, "vgg19": 548}
ORDER = ("recursive-efficiency", "ionn", "direct")


def short(model: str) -> str:
    return model.split(":")[-1]


def offloading_plan(mproblem: Any, iterations: int, seed: int) -> tuple[Any, str]:
    """The PSO multi-user plan: through the registry if 'pso' is registered, else the PSO class itself."""
    from tiercut.plan import PLANNERS

    if "pso" in PLANNERS:
        from tiercut.plan import get_planner

        return get_planner("pso", seed=seed, iterations=iterations).solve_multi(mproblem), "pso (registry)"
    from tiercut.plan.pso import PSOPlanner

    plan = PSOPlanner(seed=seed, iterations=iterations).solve_multi(mproblem)
    return plan, "pso (tiercut.plan.pso.PSOPlanner, not yet registered)"


def simulate_method(mproblem: Any, plan: Any, shares_link: bool) -> Any:
    """Both users at once, back to back, until well after every upload and every user's n queries."""
    from tiercut.sim import SimConfig, SimUser, simulate

    users = [SimUser(name, mproblem.user(name).problem, plan=up) for name, up in plan.users.items()]
    horizon = max(max(up.metrics.upload_end_s, up.metrics.time_for_n_queries_s) for up in plan.users.values())
    return simulate(users, SimConfig(duration_s=4.0 * horizon, upload_shares_link=shares_link, execution="sequential"))


def measured(sim: Any, user: str, n: int) -> dict[str, Any]:
    m = sim.upload_metrics(user, n)
    return {
        "time_for_n_queries_s": m.time_for_n_queries_s,
        "queries_done_by_upload_end": m.queries_done_by_upload_end,
        "mean_latency_during_upload_s": m.mean_latency_during_upload_s,
        "upload_end_s": m.upload_end_s,
    }


def _segments(problem: Any, placement: dict[str, str]) -> list[str]:
    out: list[list] = []
    for node in problem.graph:
        if node.is_input:
            continue
        device = placement[node.name]
        if out and out[-1][1] == device:
            out[-1][2] += 1
        else:
            out.append([node.name, device, 1])
    return [f"{first}..({count})@{device}" for first, device, count in out]


def run_seed(mproblem: Any, models: dict[str, str], seed: int, iterations: int, dedicated_too: bool) -> dict[str, Any]:
    """Offloading plan for one PSO seed, then every upload method, analytic and simulated."""
    from tiercut.upload import curve, plan_multi_upload

    start = time.perf_counter()
    offload, how = offloading_plan(mproblem, iterations, seed)
    offload_s = time.perf_counter() - start
    table: dict[str, Any] = {}
    plans: dict[str, Any] = {}
    sims: dict[str, Any] = {}
    for method in METHODS:
        start = time.perf_counter()
        plans[method] = plan_multi_upload(mproblem, method, offloading=offload)
        plan_s = time.perf_counter() - start
        sims[method] = simulate_method(mproblem, plans[method], shares_link=True)
        dedicated = simulate_method(mproblem, plans[method], shares_link=False) if dedicated_too else None
        for user, user_plan in plans[method].users.items():
            m = user_plan.metrics
            issued = [q for q in curve(user_plan.stages, m.upload_end_s) if q.start_s < m.upload_end_s]
            row = table.setdefault(user, {"model": short(models[user]), "methods": {}})
            row["methods"][method] = {
                "partitions": {s: len(p.partitions) for s, p in user_plan.servers.items()},
                "upload_end_s": m.upload_end_s,
                "n": m.n,
                "time_for_n_queries_s": m.time_for_n_queries_s,
                "queries_done_by_upload_end": m.queries_done_by_upload_end,
                "mean_latency_during_upload_s": m.mean_latency_during_upload_s,
                "own_queries_issued_during_upload": len(issued),
                "own_total_delay_during_upload_s": sum(q.latency_s for q in issued),
                "final_latency_s": user_plan.stages[-1].latency_s,
                "simulated": measured(sims[method], user, m.n),
                "simulated_dedicated_upload_channel": measured(dedicated, user, m.n) if dedicated is not None else None,
                "plan_s": plan_s,
                "notes": {srv: sp.note for srv, sp in user_plan.servers.items()},
            }
    orderings = {}
    for user, row in table.items():
        variants = {"analytic": lambda r: r["time_for_n_queries_s"],
                    "simulated, shared link": lambda r: r["simulated"]["time_for_n_queries_s"]}
        if dedicated_too:
            variants["simulated, own upload channel"] = lambda r: r["simulated_dedicated_upload_channel"]["time_for_n_queries_s"]
        orderings[user] = {}
        for label, get in variants.items():
            t = {m: get(row["methods"][m]) for m in METHODS}
            rec, ionn, direct = (t[m] for m in ORDER)
            orderings[user][label] = {
                "times_s": t,
                "holds_strict": rec < ionn < direct,
                "holds": rec <= ionn <= direct,
                "ionn_over_recursive": ionn / rec - 1.0,
                "direct_over_ionn": direct / ionn - 1.0,
                "direct_over_recursive": direct / rec - 1.0,
                "efficiency_over_recursive": t["efficiency"] / rec - 1.0,
            }
    return {
        "seed": seed,
        "offloading": {
            "planner": how,
            "solve_s": offload_s,
            "latency_mean_s": offload.latency_mean_s,
            "placements": {u: _segments(mproblem.user(u).problem, p) for u, p in offload.placements.items()},
        },
        "users": table,
        "orderings": orderings,
        "_plans": plans,
        "_sims": sims,
    }


def notes_for(row: dict[str, Any], ordering: dict[str, Any]) -> list[str]:
    notes = []
    methods = row["methods"]
    if methods["ionn"]["partitions"] == methods["direct"]["partitions"] and (
        methods["ionn"]["time_for_n_queries_s"] == methods["direct"]["time_for_n_queries_s"]
    ):
        levels = "; ".join(methods["ionn"]["notes"].values())
        notes.append(
            f"IONN uploads the target in one piece here ({levels}): at every larger penalty the heavy layers' "
            "upload time outweighs what they save per query, and the first level that moves any of them moves "
            "them all; IONN equals Direct (the seed's own remark that IONN's P3 are often very large)"
        )
    shared = ordering.get("simulated, shared link")
    if shared is not None and not shared["holds"]:
        notes.append(
            "with uploads sharing the client-server link with query tensors (simulated), a plan that offloads "
            "queries earlier sends their tensors during the upload: each query's transfer halves the upload's "
            "bandwidth and vice versa, so finer partitions pay back less than the IONN model (which ignores this "
            "interference) predicts"
        )
    return notes


def plot_figures(mproblem: Any, graphs: dict[str, Any], first: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tiercut.upload import curve

    plans, sims, table = first["_plans"], first["_sims"], first["users"]
    figures = []
    for user, row in table.items():
        fig, ax = plt.subplots(figsize=(8, 4.5))
        until = max(plans[m].users[user].metrics.upload_end_s for m in METHODS)
        for method in METHODS:
            up = plans[method].users[user]
            slots = curve(up.stages, until * 1.05, up.metrics.n)
            ax.plot([q.start_s for q in slots], [q.latency_s * 1e3 for q in slots], drawstyle="steps-post", label=method)
        size = graphs[user].total_param_bytes / 2**20
        ax.set_title(f"{row['model']} ({size:.0f} MiB; seed: {SEED_SIZES_MIB.get(row['model'], '?')} MiB) on "
                     f"{mproblem.user(user).problem.source}, migration-12, PSO offloading (seed {first['seed']})")
        ax.set_xlabel("time since the upload started (s)")
        ax.set_ylabel("system delay of each query (ms)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        fig.tight_layout()
        path = RESULTS / f"migration_figure5_{row['model']}.png"
        RESULTS.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        figures.append(path.name)

    fig, axes = plt.subplots(1, len(table), figsize=(7 * len(table), 4.5), squeeze=False)
    for ax, (user, row) in zip(axes[0], table.items(), strict=True):
        for method in METHODS:
            queries = sims[method].user_queries(user)
            until = max(plans[m].users[user].metrics.upload_end_s for m in METHODS) * 1.05
            queries = [q for q in queries if q.start_s <= until]
            ax.plot([q.start_s for q in queries], [q.latency_s * 1e3 for q in queries], drawstyle="steps-post", label=method)
        ax.set_title(f"{row['model']}: simulated (both users, shared links and servers)")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("system delay of each query (ms)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "migration_figure5_simulated.png", dpi=120)
    plt.close(fig)
    figures.append("migration_figure5_simulated.png")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300, help="PSO iterations")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="PSO seeds, comma-separated")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]

    from tiercut.env import load_environment
    from tiercut.graph import extract_graph
    from tiercut.problem import build_multi_user_problem

    env = load_environment("migration-12")
    graphs = {u.name: extract_graph(u.model, u.input_shape) for u in env.users}
    models = {u.name: u.model for u in env.users}
    mproblem = build_multi_user_problem(env, graphs)
    runs = []
    for i, seed in enumerate(seeds):
        print(f"PSO seed {seed}...", flush=True)
        runs.append(run_seed(mproblem, models, seed, args.iterations, dedicated_too=(i == 0)))
    first = runs[0]
    figures = plot_figures(mproblem, graphs, first)
    for user, row in first["users"].items():
        row["notes"] = notes_for(row, first["orderings"][user])

    summary: dict[str, Any] = {}
    for user in first["users"]:
        for label in ("analytic", "simulated, shared link"):
            per_seed = [r["orderings"][user][label] for r in runs]
            summary.setdefault(user, {})[label] = {
                "seeds": seeds,
                "holds": sum(o["holds"] for o in per_seed),
                "holds_strict": sum(o["holds_strict"] for o in per_seed),
                "fails_on_seeds": [s for s, o in zip(seeds, per_seed, strict=True) if not o["holds"]],
                "ionn_over_recursive": [o["ionn_over_recursive"] for o in per_seed],
                "direct_over_ionn": [o["direct_over_ionn"] for o in per_seed],
                "efficiency_over_recursive": [o["efficiency_over_recursive"] for o in per_seed],
                "min_direct_over_recursive": min(o["direct_over_recursive"] for o in per_seed),
                "median_direct_over_recursive": statistics.median(o["direct_over_recursive"] for o in per_seed),
            }
    placements = [json.dumps(r["offloading"]["placements"], sort_keys=True) for r in runs]
    offloading_summary = {
        "latency_mean_s_per_seed": {r["seed"]: r["offloading"]["latency_mean_s"] for r in runs},
        "distinct_placements": len(set(placements)),
    }
    payload = {
        "environment": "migration-12",
        "offloading_across_seeds": offloading_summary,
        "settings": {"iterations": args.iterations, "seeds": seeds},
        "models": {
            short(models[u]): {
                "user": u,
                "client": mproblem.user(u).problem.source,
                "param_bytes": graphs[u].total_param_bytes,
                "param_mib": graphs[u].total_param_bytes / 2**20,
                "seed_paper_mib": SEED_SIZES_MIB.get(short(models[u])),
                "nodes": len(graphs[u]),
            }
            for u in graphs
        },
        "ordering_summary": summary,
        "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
        "figures": figures,
    }
    path = write_result("migration_experiment", payload)

    for u, info in payload["models"].items():
        print(f"{u}: {info['param_mib']:.1f} MiB (seed paper: {info['seed_paper_mib']} MiB)")
    header = f"{'seed':>4} {'user':6} {'model':8} {'method':21} {'parts':>6} {'upload s':>9} {'n':>5} {'t(n) s':>9} "
    header += f"{'sim t(n)':>9}"
    print(header)
    for r in runs:
        for user, row in r["users"].items():
            for method, m in row["methods"].items():
                parts = sum(m["partitions"].values())
                print(f"{r['seed']:4d} {user:6} {row['model']:8} {method:21} {parts:6d} {m['upload_end_s']:9.2f} {m['n']:5d} "
                      f"{m['time_for_n_queries_s']:9.2f} {m['simulated']['time_for_n_queries_s']:9.2f}")
    print(f"PSO offloading over seeds {seeds}: {offloading_summary['distinct_placements']} distinct placement(s), mean "
          "latency " + ", ".join(f"{v * 1e3:.1f}" for v in offloading_summary["latency_mean_s_per_seed"].values()) + " ms")
    for user, by_label in summary.items():
        for label, s in by_label.items():
            margins = ", ".join(f"seed {sd}: ionn +{a:.1%} over rec., direct +{b:.1%} over ionn"
                                for sd, a, b in zip(s["seeds"], s["ionn_over_recursive"], s["direct_over_ionn"], strict=True))
            effs = ", ".join(f"{v:+.1%}" for v in s["efficiency_over_recursive"])
            print(f"{user} {label}: recursive-efficiency <= ionn <= direct on {s['holds']}/{len(seeds)} seeds "
                  f"(strict {s['holds_strict']}); fails on {s['fails_on_seeds'] or 'none'}; {margins}; "
                  f"efficiency vs recursive-efficiency {effs}")
    for user, row in first["users"].items():
        for note in row["notes"]:
            print(f"  note ({user}): {note}")
    print(f"wrote {path} and {', '.join(figures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
