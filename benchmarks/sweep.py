"""``tiercut sweep`` wall time: serial vs a local Ray with 1 and 2 workers, same grid, same table.

The grid: zoo models x two environment presets x planners (min-cut, ILP, GA)
x two objectives, each plan simulated (20 back-to-back queries). The graph
cache is warmed first (its own temporary folder), so every mode plans from
cached graphs and the comparison is of the cells' execution. Each mode writes
to a fresh folder (nothing reused); Ray's start-up is timed apart from the
sweep (a cluster is started once and runs many sweeps). The tables of every
mode must be equal (wall-clock columns aside).

The machine is shared: the load average and the CPU time other processes
took during each mode are recorded beside the times.

    .venv/bin/python benchmarks/sweep.py [--quick]

Writes benchmarks/results/sweep.json.
"""

from __future__ import annotations

import argparse
import math
import os
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


def run(quick: bool) -> dict[str, Any]:
    import ray

    from tiercut.sweep import grid_from_mapping, run_sweep

    folder = Path(tempfile.mkdtemp(prefix="tiercut-sweep-bench-"))
    os.environ["TIERCUT_CACHE_DIR"] = str(folder / "cache")  # Ray's local workers inherit it
    grid = grid_from_mapping(_grid(quick), label="benchmark grid")
    started = time.perf_counter()
    for cell in {c.model.spec: c for c in _cells(grid)}.values():  # warm the graph cache
        from tiercut.sweep import extract_graph

        extract_graph(cell.model, grid.granularity)
    warm_s = time.perf_counter() - started
    modes: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    for mode, workers in (("serial", 0), ("ray-1", 1), ("ray-2", 2)):
        load_before = list(os.getloadavg())
        startup_s = 0.0
        if workers:
            begin = time.perf_counter()
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            startup_s = time.perf_counter() - begin
        try:
            with OthersCpuShare() as share:
                result = run_sweep(grid, folder / mode, serial=not workers)
        finally:
            if workers:
                ray.shutdown()
        tables[mode] = _comparable(result.rows)
        modes[mode] = {
            "wall_s": result.wall_s,
            "ray_startup_s": startup_s,
            "cells": len(result.rows),
            "computed": result.computed,
            "workers": result.workers,
            "cell_s_sum": sum(r["cell_s"] for r in result.rows),
            "load_before": load_before,
            "load_after": list(os.getloadavg()),
            "others_cpu_share": share.fraction,
        }
        print(
            f"  {mode:7s}: {result.wall_s:6.1f} s for {len(result.rows)} cells (Ray start-up {startup_s:.1f} s), "
            f"load {load_before[0]:.2f}, others' CPU share {share.fraction if share.fraction is not None else float('nan'):.2f}",
            flush=True,
        )
    serial = modes["serial"]["wall_s"]
    return {
        "grid": _grid(quick),
        "cells": grid.size,
        "graph_cache_warm_s": warm_s,
        "modes": modes,
        "speedup_ray1_vs_serial": serial / modes["ray-1"]["wall_s"],
        "speedup_ray2_vs_serial": serial / modes["ray-2"]["wall_s"],
        "speedup_ray2_vs_ray1": modes["ray-1"]["wall_s"] / modes["ray-2"]["wall_s"],
        "tables_equal": tables["serial"] == tables["ray-1"] == tables["ray-2"],
        "quick": quick,
    }


def _cells(grid: Any) -> list[Any]:
    from tiercut.sweep import expand

    return expand(grid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two models (24 cells) instead of three (36)")
    args = parser.parse_args(argv)
    result = run(args.quick)
    path = write_result("sweep", result)
    print(f"{'mode':8s} {'wall s':>8s} {'Ray start s':>12s} {'sum of cells s':>15s} {'load':>6s}")
    for mode, row in result["modes"].items():
        print(
            f"{mode:8s} {row['wall_s']:8.1f} {row['ray_startup_s']:12.1f} {row['cell_s_sum']:15.1f} "
            f"{row['load_before'][0]:6.2f}"
        )
    print(
        f"speed-up vs serial: Ray 1 worker {result['speedup_ray1_vs_serial']:.2f}x, "
        f"2 workers {result['speedup_ray2_vs_serial']:.2f}x; "
        f"tables equal: {result['tables_equal']}"
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
