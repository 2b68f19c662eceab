"""``tiercut sweep`` wall time: serial vs a local Ray with 1 and 2 workers vs a multi-process cluster, same table.

The grid: zoo models x two environment presets x planners (min-cut, ILP, GA)
x two objectives, each plan simulated (20 back-to-back queries). The graph
cache is warmed first (its own temporary folder), so every mode plans from
cached graphs and the comparison is of the cells' execution. Each mode writes
to a fresh folder (nothing reused); Ray's start-up is timed apart from the
sweep (a cluster is started once and runs many sweeps). The tables of every
mode must be equal (wall-clock columns aside).

The cluster modes (``cluster-1``: a head node of 2 CPUs; ``cluster-2``: a
head of 1 CPU and a worker node of 1 CPU; :class:`tiercut.sweep.cluster.LocalRayCluster`,
``ray start`` processes) run ``tiercut sweep GRID --address`` as a separate
driver process, as a user would: ``wall_s`` is the sweep's own time
(connecting to the cluster included), ``process_wall_s`` the driver
process's (Python and imports included), ``cluster_startup_s`` the nodes'
start apart. Each mode runs ``repeats`` times (fresh folders) and reports
the median; ``nodes_used`` is how many of the cluster's nodes ran cells.

The machine is shared: the load average and the CPU time other processes
took during each mode are recorded beside the times (a cluster's processes
count as other processes).

    .venv/bin/python benchmarks/sweep.py [--quick] [--repeats N] [--no-cluster]

Writes benchmarks/results/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OthersCpuShare, write_result


def _grid(quick: bool) -> dict[str, Any]:
    models = [{"model": "resnet18", "input_shape": [1, 3, 224, 224]}, {"model": "alexnet", "input_shape": [1, 3, 224, 224]}]
    if not quick:
        models.append({"model": "mobilenet_v2", "input_shape": [1, 3, 224, 224]})
    return {
        "name": "bench",
        "models": models,
        "environments": ["three-tier", "neurosurgeon-wifi"],
        "planners": ["mincut", "ilp", {"name": "ga", "settings": {"seed": 0}}],
        "settings": {"objective": ["latency", "energy_source"]},
        "simulate": {"queries": 20},
    }


def _comparable(rows: Any) -> list[dict[str, Any]]:
    from tiercut.sweep import TIMING_COLUMNS

    return [
        {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items() if k not in TIMING_COLUMNS}
        for r in rows
    ]


def _in_process(grid: Any, folder: Path, mode: str, workers: int, repeats: int) -> tuple[dict[str, Any], Any]:
    """Serial (``workers`` 0) or an in-process local Ray of ``workers`` CPUs, ``repeats`` times."""
    import ray

    from tiercut.sweep import run_sweep

    walls, startups, shares, result = [], [], [], None
    load_before = list(os.getloadavg())
    for repeat in range(repeats):
        startup_s = 0.0
        if workers:
            begin = time.perf_counter()
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            startup_s = time.perf_counter() - begin
        try:
            with OthersCpuShare() as share:
                result = run_sweep(grid, folder / f"{mode}-{repeat}", serial=not workers)
        finally:
            if workers:
                ray.shutdown()
        walls.append(result.wall_s)
        startups.append(startup_s)
        shares.append(share.fraction)
    assert result is not None
    return {
        "wall_s": statistics.median(walls),
        "wall_s_runs": walls,
        "ray_startup_s": statistics.median(startups),
        "cells": len(result.rows),
        "computed": result.computed,
        "workers": result.workers,
        "cell_s_sum": sum(r["cell_s"] for r in result.rows),
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
        "others_cpu_share": _median_or_none(shares),
    }, result.rows


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _on_cluster(grid_path: Path, folder: Path, mode: str, head_cpus: int, worker_nodes: int,
                repeats: int) -> tuple[dict[str, Any], Any]:
    """``tiercut sweep GRID --address`` (a driver process) against a cluster of ``ray start`` processes."""
    import tiercut
    from tiercut.sweep import read_table
    from tiercut.sweep.cluster import LocalRayCluster

    src = str(Path(tiercut.__file__).resolve().parents[1])
    env = {"PYTHONPATH": src + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
           "TIERCUT_CACHE_DIR": os.environ["TIERCUT_CACHE_DIR"]}
    load_before = list(os.getloadavg())
    begin = time.perf_counter()
    cluster = LocalRayCluster(head_cpus=head_cpus, worker_nodes=worker_nodes, worker_cpus=1, env=env)
    cluster.start()
    startup_s = time.perf_counter() - begin
    walls, process_walls, shares, nodes_used, summary, rows = [], [], [], [], {}, None
    try:
        ids = cluster.ids
        for repeat in range(repeats):
            out = folder / f"{mode}-{repeat}"
            with OthersCpuShare() as share:
                begin = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "tiercut", "sweep", str(grid_path), "--address", cluster.address, "-q",
                     "--json", "-o", str(out)], capture_output=True, text=True,
                    env={**os.environ, **env, **cluster.driver_env}, timeout=1800,
                )
                process_walls.append(time.perf_counter() - begin)
            if done.returncode != 0:
                raise RuntimeError(f"{mode}: tiercut sweep exited {done.returncode}: {done.stderr.strip()[-500:]}")
            summary = json.loads(done.stdout)
            walls.append(summary["wall_s"])
            shares.append(share.fraction)
            nodes_used.append(len(set(summary["nodes"]) & set(ids)))
            rows = read_table(out / "results.parquet")
    finally:
        cluster.stop()
    return {
        "wall_s": statistics.median(walls),
        "wall_s_runs": walls,
        "process_wall_s": statistics.median(process_walls),
        "cluster_startup_s": startup_s,
        "ray_startup_s": 0.0,
        "cells": summary["cells"],
        "computed": summary["computed"],
        "workers": summary["workers"],
        "nodes": 1 + worker_nodes,
        "nodes_used": nodes_used,
        "cell_s_sum": sum(r["cell_s"] for r in rows),
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
        "others_cpu_share": _median_or_none(shares),
    }, rows


def run(quick: bool, repeats: int | None = None, cluster: bool = True) -> dict[str, Any]:
    import yaml

    from tiercut.sweep import grid_from_mapping

    repeats = repeats if repeats is not None else (1 if quick else 3)
    folder = Path(tempfile.mkdtemp(prefix="tiercut-sweep-bench-"))
    os.environ["TIERCUT_CACHE_DIR"] = str(folder / "cache")  # Ray's local workers inherit it (and the clusters get it)
    grid = grid_from_mapping(_grid(quick), label="benchmark grid")
    grid_path = folder / "grid.yaml"
    grid_path.write_text(yaml.safe_dump(_grid(quick)))
    started = time.perf_counter()
    for cell in {c.model.spec: c for c in _cells(grid)}.values():  # warm the graph cache
        from tiercut.sweep import extract_graph

        extract_graph(cell.model, grid.granularity)
    warm_s = time.perf_counter() - started
    modes: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    plan = [("serial", 0), ("ray-1", 1), ("ray-2", 2)]
    if cluster:
        plan += [("cluster-1", -1), ("cluster-2", -2)]
    for mode, workers in plan:
        if workers >= 0:
            modes[mode], rows = _in_process(grid, folder, mode, workers, repeats)
        else:  # cluster-1: one node of 2 CPUs; cluster-2: a head of 1 CPU and a worker node of 1 CPU
            nodes = -workers
            modes[mode], rows = _on_cluster(grid_path, folder, mode, 3 - nodes, nodes - 1, repeats)
        tables[mode] = _comparable(rows)
        row = modes[mode]
        share = row["others_cpu_share"]
        print(
            f"  {mode:9s}: median {row['wall_s']:6.1f} s for {row['cells']} cells over {repeats} run(s) "
            f"(Ray start-up {row.get('cluster_startup_s', row['ray_startup_s']):.1f} s), "
            f"load {row['load_before'][0]:.2f}, others' CPU share {share if share is not None else float('nan'):.2f}",
            flush=True,
        )
    serial = modes["serial"]["wall_s"]
    out = {
        "grid": _grid(quick),
        "cells": grid.size,
        "repeats": repeats,
        "graph_cache_warm_s": warm_s,
        "modes": modes,
        "speedup_ray1_vs_serial": serial / modes["ray-1"]["wall_s"],
        "speedup_ray2_vs_serial": serial / modes["ray-2"]["wall_s"],
        "speedup_ray2_vs_ray1": modes["ray-1"]["wall_s"] / modes["ray-2"]["wall_s"],
        "tables_equal": all(t == tables["serial"] for t in tables.values()),
        "quick": quick,
    }
    if cluster:
        out["speedup_cluster2_vs_serial"] = serial / modes["cluster-2"]["wall_s"]
        out["speedup_cluster1_vs_serial"] = serial / modes["cluster-1"]["wall_s"]
    return out


def report(result: dict[str, Any]) -> None:
    """Print the table of a :func:`run` result."""
    print(f"{'mode':10s} {'median s':>9s} {'driver s':>9s} {'start-up s':>11s} {'sum cells s':>12s} {'nodes':>6s} "
          f"{'load':>6s}")
    for mode, row in result["modes"].items():
        startup = row.get("cluster_startup_s", row["ray_startup_s"])
        driver = f"{row['process_wall_s']:9.1f}" if "process_wall_s" in row else f"{'-':>9s}"
        nodes = f"{max(row['nodes_used'])}/{row['nodes']}" if "nodes_used" in row else "-"
        print(f"{mode:10s} {row['wall_s']:9.1f} {driver} {startup:11.1f} {row['cell_s_sum']:12.1f} {nodes:>6s} "
              f"{row['load_before'][0]:6.2f}")
    line = (f"speed-up vs serial: Ray 1 worker {result['speedup_ray1_vs_serial']:.2f}x, "
            f"2 workers {result['speedup_ray2_vs_serial']:.2f}x")
    if "speedup_cluster2_vs_serial" in result:
        line += (f", cluster 1 node {result['speedup_cluster1_vs_serial']:.2f}x, "
                 f"2 nodes {result['speedup_cluster2_vs_serial']:.2f}x")
    print(f"{line}; tables equal: {result['tables_equal']}")


def _cells(grid: Any) -> list[Any]:
    from tiercut.sweep import expand

    return expand(grid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two models (24 cells) instead of three (36), one run")
    parser.add_argument("--repeats", type=int, default=None, help="runs per mode, median reported (default 3)")
    parser.add_argument("--no-cluster", action="store_true", help="skip the multi-process cluster modes")
    args = parser.parse_args(argv)
    result = run(args.quick, args.repeats, cluster=not args.no_cluster)
    path = write_result("sweep", result)
    report(result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
