"""Mobility and hand-over strategies in the simulator (issue 17): static, reactive, proactive (PerDNN), oracle.

Setting: ``examples/mobility-env.yaml`` (the DNN-migration seed's CPU and
link figures: phones at 1.1 GHz, edge servers at 4.2-11.25 GHz, 10 MB/s
edge-edge backhaul), here with 256 MB of weight memory per server
(assumed: two ResNet-50 server parts of 102 MB fit, three do not), three
edge sites 300 m apart along a road, ResNet-50 users querying back to back
(Poisson 4/s in the random scenario). Link rates follow the distance law
of :mod:`tiercut.sim.mobility` (Shannon capacity over the 3GPP macro path
loss), so a hand-over changes both the server and the rate.

Strategies: static, reactive, proactive (PerDNN, the whole server part
ahead), proactive-25% (PerDNN migrating a fraction: at most a quarter of
the server part's bytes ahead, the rest after the hand-over) and oracle.

Scenarios:

- ``road-1`` / ``road`` (the next server is predictable): one user, then
  several, drive along the road at 8-15 m/s from staggered starts; the
  heading predictor is right;
- ``road-gbe``: ``road`` with the edge-edge backhaul at Gigabit Ethernet
  (1 Gbit/s = 1.25e8 B/s, 0.2 ms, the figures of tiercut's edge-cluster
  preset) instead of the seed's 10 MB/s: whether the backhaul can carry
  the prefetched bytes before the hand-over;
- ``random-waypoint`` (it is not): users move by the seeded random waypoint
  model at 5-15 m/s in the 700 m x 150 m area; predictions can be wrong
  (wasted bytes);
- ``commute`` (attachment traces, Markov predictor): users go back and
  forth e1 -> e2 -> e3 -> e2 -> e1 ...; the predictor learns the
  successors after the first pass.

Each scenario is simulated under every strategy with the same movements,
arrivals and seeds (quick: one seed; full: three), and the figures of
:class:`tiercut.sim.mobile.StrategyFigures` are reported, medians over seeds:
latency of queries started within ``window_s`` (10 s) after a hand-over
(mean, p95, max), mean latency, MB uploaded and wasted, peak memory of the
fullest site, evictions/refusals, and whether memory was ever exceeded.
Simulated figures: the machine's load changes only the wall time (recorded).

    .venv/bin/python benchmarks/dynamic_mobility.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_result

warnings.filterwarnings("ignore", category=FutureWarning)

ROOT = Path(__file__).resolve().parent.parent
STRATEGY_NAMES = ("static", "reactive", "proactive", "proactive-25%", "oracle")
SITES = (("edge1", 0.0), ("edge2", 300.0), ("edge3", 600.0))
MODEL = "resnet50"
SITE_MEMORY_BYTES = 256_000_000  # assumed (module docstring)


def strategy(label: str) -> Any:
    from tiercut.sim.strategies import Proactive, get_strategy

    return Proactive(prefetch_fraction=0.25) if label == "proactive-25%" else get_strategy(label)


def template() -> Any:
    """ResNet-50 from client1 over the three edge servers of examples/mobility-env.yaml (256 MB each)."""
    from dataclasses import replace

    from tiercut.env import load_environment
    from tiercut.graph import extract_graph
    from tiercut.problem import build_problem

    env = load_environment(str(ROOT / "examples" / "mobility-env.yaml"))
    problem = build_problem(extract_graph(MODEL), env, source="client1", devices=["client1", *(s for s, _ in SITES)])
    devices = tuple(replace(d, memory_bytes=SITE_MEMORY_BYTES) if d.tier == "edge" else d for d in problem.devices)
    return replace(problem, devices=devices)


def with_gigabit_backhaul(problem: Any) -> Any:
    """``problem`` with every edge-edge link at 1 Gbit/s, 0.2 ms (edge-cluster preset's Gigabit Ethernet)."""
    from dataclasses import replace

    edges = {d.name for d in problem.devices if d.tier == "edge"}
    links = tuple(replace(k, bandwidth_bytes_per_s=1.25e8, latency_s=0.0002) if {k.a, k.b} <= edges else k
                  for k in problem.links)  # fmt: skip
    return replace(problem, links=links)


def users_and_mobility(problem: Any, scenario: str, n_users: int, seed: int) -> tuple[list[Any], Any, float]:
    """The scenario's users (renamed copies of ``problem``), its :class:`Mobility` and its duration."""
    import random

    from tiercut.sim import BackToBack, Poisson, SimUser
    from tiercut.sim.mobility import AttachmentTrace, Mobility, RandomWaypoint, Site, WaypointPath
    from tiercut.sim.replicate import rename_devices

    rng = random.Random(seed)
    sites = tuple(Site(s, x, 0.0) for s, x in SITES)
    users, movements = [], {}
    duration = {"road": 80.0, "random-waypoint": 120.0, "commute": 120.0}[scenario]
    predictor = "markov" if scenario == "commute" else "heading"
    for i in range(n_users):
        name = f"user{i}"
        phone = rename_devices(problem, {"client1": f"phone{i}"}, name=f"{MODEL}@phone{i}")
        if scenario == "road":
            speed = rng.uniform(8.0, 15.0)
            start = rng.uniform(0.0, 10.0)
            x0, x1 = -50.0, 750.0
            movements[name] = WaypointPath(((start, x0, 20.0), (start + (x1 - x0) / speed, x1, 20.0)))
            arrivals: Any = BackToBack()
        elif scenario == "random-waypoint":
            movements[name] = RandomWaypoint(700.0, 150.0, speed_mps=(5.0, 15.0), pause_s=(0.0, 5.0), seed=seed * 100 + i)
            arrivals = Poisson(4.0)
        else:
            dwell = rng.uniform(12.0, 20.0)
            order = ["edge1", "edge2", "edge3", "edge2"]
            points, t, k = [], 0.0, rng.randrange(len(order))
            while t < duration:
                points.append((t, order[k % len(order)], rng.uniform(5e6, 2e7)))
                t += dwell
                k += 1
            movements[name] = AttachmentTrace(tuple(points))
            arrivals = BackToBack()
        users.append(SimUser(name, phone, arrivals=arrivals, seed=seed * 100 + i))
    mobility = Mobility(sites=sites, users=movements, step_s=1.0, window_s=10.0, lookahead_s=15.0, predictor=predictor)
    return users, mobility, duration


def run_scenario(problem: Any, scenario: str, n_users: int, seed: int) -> dict[str, Any]:
    from tiercut.sim import SimConfig
    from tiercut.sim.mobile import MobileSimulation

    users, mobility, duration = users_and_mobility(problem, scenario, n_users, seed)
    out: dict[str, Any] = {}
    for name in STRATEGY_NAMES:
        cpu = time.process_time()
        res = MobileSimulation(users, SimConfig(duration_s=duration), mobility, strategy(name)).run()
        fig = res.figures().to_dict()
        fig["strategy"] = name
        fig["cpu_s"] = time.process_time() - cpu
        fig["wall_s"] = res.result.wall_s
        fig["events"] = res.result.events
        out[name] = {"figures": fig, "_result": res}
    return out


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per strategy: the medians over seeds of each figure."""
    keys = ("mean_latency_s", "handover_mean_latency_s", "handover_p95_latency_s", "handover_max_latency_s",
            "uploaded_bytes", "wasted_bytes", "handovers", "queries", "evictions", "refusals", "cpu_s")  # fmt: skip
    table: dict[str, Any] = {}
    for name in STRATEGY_NAMES:
        figs = [r[name]["figures"] for r in runs]
        row = {k: _median([f[k] for f in figs]) for k in keys}
        row["peak_memory_bytes_max_site"] = max(max(f["peak_memory_bytes"].values()) for f in figs)
        row["memory_bytes"] = figs[0]["memory_bytes"]
        row["memory_exceeded"] = any(f["memory_exceeded"] for f in figs)
        table[name] = row
    ratios = {}
    for variant in ("proactive", "proactive-25%"):
        r, p = table["reactive"], table[variant]
        for k in ("handover_mean_latency_s", "handover_p95_latency_s", "handover_max_latency_s"):
            if r[k] and p[k]:
                ratios[f"{variant}/reactive {k}"] = p[k] / r[k]
    return {"strategies": table, "ratios": ratios}


def plot(res_by_strategy: dict[str, Any], path: Path, user: str = "user0") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    for name in STRATEGY_NAMES:
        res = res_by_strategy[name]["_result"]
        qs = sorted((q for q in res.result.queries if q.user == user), key=lambda q: q.start_s)
        style = {"proactive": dict(ls="--", lw=2.2), "oracle": dict(ls=":", lw=1.6)}.get(name, dict(lw=1.2))
        ax.plot([q.start_s for q in qs], [q.latency_s * 1e3 for q in qs], label=name, **style)
    for h in res_by_strategy["reactive"]["_result"].handovers:
        if h.user == user:
            ax.axvline(h.t_s, color="grey", ls=":", lw=1)
            ax.text(h.t_s, ax.get_ylim()[1] * 0.95, f" {h.old}->{h.new}", fontsize=7, color="grey")
    ax.set_xlabel("query start (simulated s)")
    ax.set_ylabel("query latency (ms)")
    ax.set_title(f"{MODEL}, one user driving past three edge servers: latency around hand-overs (dotted)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(quick: bool) -> dict[str, Any]:
    """Every scenario under every strategy; medians over seeds; a plot of the road scenario."""
    load_start = list(os.getloadavg())
    start = time.perf_counter()
    problem = template()
    seeds = [0] if quick else [0, 1, 2]
    many = 2 if quick else 4
    cases = [("road-1", "road", 1), ("road", "road", many), ("road-gbe", "road", many),
             ("random-waypoint", "random-waypoint", many)]  # fmt: skip
    if not quick:
        cases.append(("commute", "commute", many))
    scenarios: dict[str, Any] = {}
    road0 = None
    gigabit = with_gigabit_backhaul(problem)
    for label, scenario, n_users in cases:
        runs = []
        for seed in seeds:
            by_strategy = run_scenario(gigabit if label == "road-gbe" else problem, scenario, n_users, seed)
            if label == "road-1" and seed == seeds[0]:
                road0 = by_strategy
            runs.append(by_strategy)
        scenarios[label] = {
            "users": n_users, "seeds": seeds, **summarise(runs),
            "per_seed": [{k: v["figures"] for k, v in r.items()} for r in runs],
        }  # fmt: skip
    png = RESULTS / "dynamic_mobility.png"
    if road0 is not None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        plot(road0, png)
    return {
        "benchmark": "dynamic_mobility",
        "quick": quick,
        "model": MODEL,
        "environment": "examples/mobility-env.yaml",
        "site_memory_bytes": SITE_MEMORY_BYTES,
        "window_s": 10.0,
        "scenarios": scenarios,
        "plot": str(png.relative_to(ROOT)),
        "wall_s": time.perf_counter() - start,
        "load_average_start": load_start,
        "load_average_end": list(os.getloadavg()),
        "note": "simulated latencies (the cost model's times, event by event); load changes only wall/cpu times",
    }


def table(result: dict[str, Any]) -> str:
    lines = []
    for scenario, data in result["scenarios"].items():
        lines.append(f"{scenario} ({data['users']} users, seeds {data['seeds']}; medians; 'near' = started within "
                     f"{result['window_s']:g} s after a hand-over)")  # fmt: skip
        lines.append(f"  {'strategy':13} {'mean':>9} {'near mean':>10} {'near p95':>9} {'near max':>9} {'uploaded':>10} "
                     f"{'wasted':>9} {'peak site':>10} {'mem ok':>7}")  # fmt: skip
        for name, row in data["strategies"].items():
            def ms(v: float | None) -> str:
                return "-" if v is None else f"{v * 1e3:.1f} ms"

            lines.append(
                f"  {name:13} {ms(row['mean_latency_s']):>9} {ms(row['handover_mean_latency_s']):>10} "
                f"{ms(row['handover_p95_latency_s']):>9} {ms(row['handover_max_latency_s']):>9} "
                f"{row['uploaded_bytes'] / 1e6:>7.1f} MB {row['wasted_bytes'] / 1e6:>6.1f} MB "
                f"{row['peak_memory_bytes_max_site'] / 1e6:>7.1f} MB {'no' if row['memory_exceeded'] else 'yes':>7}"
            )
        for k, v in data["ratios"].items():
            lines.append(f"  {k}: {v:.2f}")
    lines.append(f"load average {result['load_average_start']} -> {result['load_average_end']}, wall {result['wall_s']:.1f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, two users in the shared scenarios, no commute")
    args = parser.parse_args()
    result = run(args.quick)
    path = write_result("dynamic_mobility", result)
    report(result)
    print(f"wrote {path.relative_to(ROOT)} and {result['plot']}")


def report(result: dict[str, Any]) -> None:
    """Print the strategies table of a :func:`run` result."""
    print(table(result))


if __name__ == "__main__":
    main()
