"""Simulator speed: events per second, and a 1,000-user, 100-server, 10-minute scenario.

The scenario: AlexNet users on phone-class clients (the ``migration-12``
client1 figures, 1.1 GHz) each linked to one of 100 edge servers (edge3's
figures, 10 MB/s links); every user joins in the first minute, uploads its
partition P1 (the fully-connected tail, 230 MB) in the recursive-efficiency
order while issuing Poisson queries (1 per second), and a fifth of them
leave before the end; a tenth of the links follow a bandwidth trace
(dropping to 2 MB/s for two minutes). Uploads share the links with query
tensors; servers are processor-sharing. One plan is made for the template
user and renamed for each user (:mod:`tiercut.sim.replicate`).

Both scenarios run on two event loops: the simulator's own
(:class:`tiercut.sim.core.SimEnvironment`) and an adapter over SimPy's
public API (``benchmarks/_simpy_loop.py``; skipped when SimPy is not
installed). Both count the same events, so events/s compares speed alone;
the figures decided the core (see :mod:`tiercut.sim.core`).

Targets (issue 13): >= 250,000 events/s, and the 1,000-user scenario under 15 s wall.

    .venv/bin/python benchmarks/simulator.py [--users 1000] [--servers 100] [--duration 600] [--rate 1.0]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result

warnings.filterwarnings("ignore", category=FutureWarning)

TARGET_EVENTS_PER_S = 250_000
TARGET_WALL_S = 15.0


def template() -> tuple[Any, Any]:
    """AlexNet from client1 to edge3 of migration-12, and its recursive-efficiency upload plan."""
    from tiercut.env import load_environment
    from tiercut.graph import extract_graph
    from tiercut.problem import build_problem
    from tiercut.upload import plan_upload, user_plan_from_upload

    env = load_environment("migration-12")
    problem = build_problem(extract_graph("alexnet"), env, source="client1", devices=["client1", "edge3"])
    plan = plan_upload(problem, "recursive-efficiency")
    return problem, user_plan_from_upload("template", plan)


def scenario(problem: Any, plan: Any, users: int, servers: int, duration: float, rate: float, seed: int) -> tuple[list, Any]:
    from tiercut.sim import BandwidthTrace, Poisson, SimConfig, SimUser
    from tiercut.sim.replicate import rename_devices, rename_user_plan

    rng = random.Random(seed)
    bandwidth = problem.link("client1", "edge3").bandwidth_bytes_per_s
    out, traces = [], []
    for i in range(users):
        mapping = {"client1": f"phone{i}", "edge3": f"edge{i % servers}"}
        leave = rng.uniform(0.5 * duration, duration) if rng.random() < 0.2 else None
        out.append(
            SimUser(
                f"user{i}", rename_devices(problem, mapping, name=f"alexnet@phone{i}"),
                plan=rename_user_plan(plan, mapping, f"user{i}"), arrivals=Poisson(rate),
                join_s=rng.uniform(0.0, min(60.0, duration / 2)), leave_s=leave, seed=seed + i,
            )
        )
        if i % 10 == 0:
            start = rng.uniform(0.1, 0.6) * duration
            traces.append(BandwidthTrace(f"phone{i}", f"edge{i % servers}",
                                         ((start, 2e6), (start + min(120.0, duration / 5), bandwidth))))
    return out, SimConfig(duration_s=duration, upload_shares_link=True, traces=tuple(traces))


def event_loops() -> dict[str, Any]:
    """The event loops to compare: the simulator's own, and SimPy's public API when SimPy is installed."""
    from tiercut.sim.core import SimEnvironment

    loops: dict[str, Any] = {"tiercut": SimEnvironment}
    try:
        from _simpy_loop import SimPyLoop
    except ImportError:
        print("simpy is not installed: the SimPy public-API alternative is not measured")
    else:
        loops["simpy-public-api"] = SimPyLoop
    return loops


def run(problem: Any, plan: Any, users: int, servers: int, duration: float, rate: float, seed: int = 0,
        event_loop: Any = None) -> dict[str, Any]:
    from tiercut.sim import Simulation
    from tiercut.sim.core import SimEnvironment

    start = time.perf_counter()
    sim_users, config = scenario(problem, plan, users, servers, duration, rate, seed)
    build_s = time.perf_counter() - start
    load_before = os.getloadavg()[0]
    cpu_start = time.process_time()
    result = Simulation(sim_users, config, event_loop=event_loop or SimEnvironment).run()
    cpu_s = time.process_time() - cpu_start
    latencies = sorted(q.latency_s for q in result.queries)
    summaries = result.summaries()
    return {
        "users": users,
        "servers": servers,
        "duration_s": duration,
        "query_rate_hz": rate,
        "build_s": build_s,
        "wall_s": result.wall_s,
        "events": result.events,
        "events_per_s": result.events_per_s,
        "cpu_s": cpu_s,  # this process's CPU time: less sensitive than wall to other work on the machine
        "events_per_cpu_s": result.events / cpu_s if cpu_s > 0 else None,
        "queries": len(result.queries),
        "partitions_arrived": len(result.arrivals),
        "uploads_finished": sum(1 for s in summaries if s.upload_end_s is not None),
        "mean_latency_s": sum(latencies) / len(latencies),
        "p95_latency_s": latencies[int(0.95 * (len(latencies) - 1))],
        "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
    }


def paired_cpu(problem: Any, plan: Any, loops: dict[str, Any], repeats: int = 4) -> dict[str, Any]:
    """CPU seconds of a 200-user, 20-server, 300 s scenario on each loop, runs interleaved (ABBA...).

    Interleaving and process CPU time make the ratio robust to other work on
    the machine, which the large scenario's wall time is not.
    """
    from tiercut.sim import Simulation

    cpu: dict[str, list[float]] = {name: [] for name in loops}
    events = 0
    names = list(loops)
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            sim_users, config = scenario(problem, plan, 200, 20, 300.0, 1.0, 0)
            start = time.process_time()
            result = Simulation(sim_users, config, event_loop=loops[name]).run()
            cpu[name].append(time.process_time() - start)
            events = result.events
    medians = {name: statistics.median(v) for name, v in cpu.items()}
    out: dict[str, Any] = {"users": 200, "servers": 20, "duration_s": 300.0, "events": events, "cpu_s": cpu,
                           "median_cpu_s": medians, "events_per_cpu_s": {n: events / m for n, m in medians.items()}}
    if "simpy-public-api" in medians:
        out["simpy_over_tiercut_cpu_ratio"] = medians["simpy-public-api"] / medians["tiercut"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=1.0, help="Poisson queries per second per user")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the small scenario per loop (median quoted)")
    args = parser.parse_args()

    problem, plan = template()
    loops = event_loops()
    results: dict[str, dict[str, Any]] = {}
    for name, loop in loops.items():
        smalls = sorted((run(problem, plan, 100, 10, 120.0, args.rate, event_loop=loop) for _ in range(args.repeats)),
                        key=lambda r: r["wall_s"])
        small = dict(smalls[len(smalls) // 2], wall_s_runs=[r["wall_s"] for r in smalls])
        big = run(problem, plan, args.users, args.servers, args.duration, args.rate, event_loop=loop)
        results[name] = {
            "small": small,
            "large": big,
            "events_per_s_met": min(small["events_per_s"], big["events_per_s"]) >= TARGET_EVENTS_PER_S,
            "large_wall_met": big["wall_s"] < TARGET_WALL_S,
        }
    own = results["tiercut"]
    paired = paired_cpu(problem, plan, loops)
    payload = {
        "paired_cpu": paired,
        "template": {
            "model": "alexnet",
            "client": "client1 of migration-12 (1.1 GHz)",
            "server": "edge3 of migration-12",
            "partitions": len(plan.servers["edge3"].partitions),
            "upload_end_s_alone": plan.metrics.upload_end_s,
            "latency_before_upload_s": plan.stages[0].latency_s,
            "latency_after_upload_s": plan.stages[-1].latency_s,
        },
        "small": own["small"],
        "large": own["large"],
        "event_loops": results,
        "targets": {
            "events_per_s": TARGET_EVENTS_PER_S,
            "large_wall_s": TARGET_WALL_S,
            "events_per_s_met": own["events_per_s_met"],
            "large_wall_met": own["large_wall_met"],
        },
    }
    if "simpy-public-api" in results:
        simpy_large = results["simpy-public-api"]["large"]
        payload["simpy_over_tiercut_wall_ratio"] = {
            "small": results["simpy-public-api"]["small"]["wall_s"] / own["small"]["wall_s"],
            "large": simpy_large["wall_s"] / own["large"]["wall_s"],
        }
        payload["same_outcome"] = all(
            simpy_large[k] == own["large"][k] for k in ("events", "queries", "partitions_arrived", "mean_latency_s")
        )
    path = write_result("simulator", payload)
    print(f"{'loop':17} {'scenario':34} {'events':>10} {'wall s':>8} {'events/s':>10} {'queries':>9} "
          f"{'mean ms':>8} {'p95 ms':>8}")
    for name, r in results.items():
        big = r["large"]
        big_label = f"{big['users']} users, {big['servers']} servers, {big['duration_s']:.0f} s"
        for label, row in (("100 users, 10 servers, 120 s", r["small"]), (big_label, big)):
            print(f"{name:17} {label:34} {row['events']:10,d} {row['wall_s']:8.2f} {row['events_per_s']:10,.0f} "
                  f"{row['queries']:9,d} {row['mean_latency_s'] * 1e3:8.1f} {row['p95_latency_s'] * 1e3:8.1f}")
        print(f"{name:17} targets: >= {TARGET_EVENTS_PER_S:,} events/s: {r['events_per_s_met']}; "
              f"large scenario < {TARGET_WALL_S:.0f} s: {r['large_wall_met']}")
    if "simpy_over_tiercut_cpu_ratio" in paired:
        print(f"paired CPU (200 users, 20 servers, 300 s, {paired['events']:,} events, interleaved): "
              + ", ".join(f"{n} {s:.2f} s" for n, s in paired["median_cpu_s"].items())
              + f"; SimPy/tiercut {paired['simpy_over_tiercut_cpu_ratio']:.2f}")
    if "same_outcome" in payload:
        print(f"same simulated outcome on both loops: {payload['same_outcome']}; "
              f"SimPy/tiercut wall ratio: {payload['simpy_over_tiercut_wall_ratio']['large']:.2f} (large)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
