"""Spatial partition: speed-up of a tiled conv stack over the best single edge, predicted and measured.

Run ``.venv/bin/python benchmarks/spatial.py`` (``--quick``: 2 and 3 devices, 3 queries).
Writes ``benchmarks/results/spatial.json`` and prints the tables.

Setting (DeepThings' and CoEdge's): a gateway holding a frame and ``n``
identical edge boards on one LAN; the gateway scatters each board its tile's
input region (halo included), the boards compute their tiles in parallel,
the gateway gathers and stitches. The stack is VGG-16's first three blocks
(``features[:17]``, 7 convolutions and 3 poolings) on a 1x3x64x64 frame,
random weights. The boards are the ``edge-cluster`` preset's Jetson Nanos
(catalog predictions) and its Gigabit LAN (1.25e8 B/s, 0.2 ms; an
assumption of that preset). Predictions are the cost model's tiled-stage
term (:func:`tiercut.cost.tiled.schedule_stage`) for ``n`` equal strips
(CoEdge's proportional shares for identical boards) against the whole stack
on one board, both scattered from and gathered to the gateway; measurements
run the same stages on real worker processes over gRPC
(:class:`tiercut.runtime.tiled.TiledExecutor`), each worker pinned to one
core (``taskset``), one intra-op thread each.

This machine has 2 cores, shared with other work (the load is in the JSON),
so two measurements, each predicted with the figures of the devices it
really emulates:

- **on two cores (real parallelism)**: 1 worker against 2 workers, each on
  its own core, no slowdown: the boards *are* this host's cores. Predicted
  with the Nano's per-layer times scaled to this host's single-thread time
  for the stack (one ratio for every layer: an approximation) and the
  preset's LAN (the scatter shaped to it; the gather returns over loopback,
  modelled as a 1e12 B/s reply direction);
- **time-dilated (2-6 boards)**: every worker runs with ``--compute-slowdown
  k`` (default 40), which sleeps ``k - 1`` times the *CPU time* of each run
  (not its wall time: waiting for a shared core is not counted, and a sleep
  leaves the core to the others), so a worker is ``s = k * host / nano``
  times slower than a Nano, and the scatter is shaped to the LAN dilated by
  the same ``s``; the speed-ups are then the Nano cluster's. With ``n``
  workers on 2 cores up to ``m = ceil(n / 2)`` share one core; a worker may
  then wait for the others' real compute, at most ``(m - 1) / k`` of its
  emulated time (the JSON's ``sharing_error_bound``); other processes on
  the machine delay it alike, by about ``(load / cores) / k`` (hence the
  default ``k = 40``: at load 10 on 2 cores about 12%). The gateway's crop,
  stitch and transport are not dilated.
- **redundant work**: the halo overlap as extra FLOPs over the whole stack,
  per tile count, for strips and square grids.

The issue's target is the side-by-side table: predicted and measured
speed-up over the best single edge on 2, 3, 4 and 6 devices, beside
DeepThings' reported "scalable CNN inference speedups of 1.7x-3.5x on 2-6
edge devices" (Zhao, Mirzazad Barijough, Gerstlauer, IEEE TCAD
37(11):2348-2359, 2018, abstract; YOLOv2's first 16 layers on Raspberry Pi
3 boards over Wi-Fi, with its work-stealing runtime): a different network,
devices and link, quoted for scale, not as a like-for-like target.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import host_description, write_result

DEEPTHINGS = {
    "speedup_range": [1.7, 3.5],
    "devices": [2, 6],
    "source": "Zhao, Mirzazad Barijough, Gerstlauer, DeepThings, IEEE TCAD 37(11):2348-2359, 2018, abstract "
    "(doi:10.1109/TCAD.2018.2858384): 'scalable CNN inference speedups of 1.7x-3.5x on 2-6 edge devices'",
}
LAN_BYTES_PER_S, LAN_LATENCY_S = 1.25e8, 2e-4  # edge-cluster preset (assumption stated there)
TOKEN = "spatial-benchmark"


def _stack_model():
    import torch
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    return make_layers(cfgs["D"])[:17].eval()


def _problem(captured, n_max: int, scale: float = 1.0):
    """Gateway + n_max edge boards on a LAN; compute times are the edge-cluster preset's Jetson Nano predictions
    times ``scale`` (boards ``scale`` times slower than a Nano)."""
    from tiercut.env import Link, load_environment
    from tiercut.problem import Problem, ProblemDevice, build_problem
    from tiercut.spatial.problem import SpatialProblem
    from tiercut.spatial.tiles import stacks_of_captured

    env_problem = build_problem(captured.graph, load_environment("edge-cluster"))
    nano = {n: row["edge0"] for n, row in env_problem.compute_s.items()}
    boards = [f"edge{i}" for i in range(n_max)]
    devices = (ProblemDevice("gateway", "edge"), *(ProblemDevice(b, "edge") for b in boards))
    links = tuple(
        Link("gateway", b, LAN_BYTES_PER_S, LAN_LATENCY_S, 0.0, bandwidth_bytes_per_s_ba=1e12, latency_s_ba=0.0)
        for b in boards
    )
    compute = {n: {d.name: s * scale for d in devices} for n, s in nano.items()}
    problem = Problem(captured.graph, devices, links, "gateway", compute, name="vgg16[:17]@lan")
    return SpatialProblem.of(problem, tuple(stacks_of_captured(captured))), nano


def _strips(geometry, devices):
    from tiercut.spatial.geometry import strip_tiles
    from tiercut.spatial.problem import Tile

    return [Tile(d, r) for d, r in zip(devices, strip_tiles(*geometry.output_hw, [1.0] * len(devices)), strict=True)]


def predicted(problem, counts):
    from tiercut.cost.tiled import schedule_stage
    from tiercut.spatial.problem import TiledStage

    geometry = problem.stacks[0]

    def stage_s(n: int) -> tuple[float, float]:
        tiles = _strips(geometry, [f"edge{i}" for i in range(n)])
        timing = schedule_stage(problem, TiledStage(0, geometry.input_name, geometry.output_name, "gateway", tuple(tiles)))
        return timing.stage_s, timing.work_fraction

    single, _ = stage_s(1)
    out = {}
    for n in counts:
        seconds, work = stage_s(n)
        out[n] = {"stage_s": seconds, "speedup": single / seconds, "work_fraction": work}
    return single, out


def host_seconds(model, x, repeats: int = 7) -> float:
    """This host's single-thread CPU seconds for the stack (CPU time, like the workers' slowdown: under load the
    wall time would count the time spent waiting for a core)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            model(x)
            times = []
            for _ in range(repeats):
                start = time.thread_time()
                model(x)
                times.append(time.thread_time() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def measured(model, x, counts, *, slowdown: float, dilation: float, queries: int, log_dir: Path, cores: list[int]):
    """Median stage times of 1 worker and of ``counts`` workers (strips), worker ``i`` pinned to
    ``cores[i % len(cores)]``, slowed by ``slowdown`` (CPU time), the scatter shaped to the LAN dilated by ``dilation``."""
    import shutil

    from tiercut.runtime.links import LinkShaper, LinkSpec
    from tiercut.runtime.processes import spawn_worker
    from tiercut.runtime.protocol import Connection, Credentials
    from tiercut.runtime.tiled import TiledExecutor
    from tiercut.spatial.tiles import fused_stack

    stack = fused_stack(model, x)
    n_max = max(counts)
    args = ["--compute-slowdown", f"{slowdown:.3f}", "--torch-threads", "1", "--threads", "2"]
    taskset = shutil.which("taskset")
    processes = []
    for i in range(n_max):
        prefix = [taskset, "-c", str(cores[i % len(cores)])] if taskset else []
        log = log_dir / f"edge{i}.log"
        processes.append(spawn_worker(f"edge{i}", token=TOKEN, extra_args=args, log_path=log, command_prefix=prefix))
    if not taskset:
        for i, p in enumerate(processes):  # the main thread only: threads started before this keep both cores
            os.sched_setaffinity(p.pid, {cores[i % len(cores)]})
    results = {}
    cpu_before = {p.device: _cpu_s(p.pid) for p in processes}
    try:

        async def run_all():
            uplink = LinkShaper(LinkSpec(LAN_BYTES_PER_S / dilation, LAN_LATENCY_S * dilation))  # the gateway's uplink
            connections = {p.device: Connection(p.device, p.address, Credentials(token=TOKEN), shaper=uplink) for p in processes}
            try:
                for n in [1, *counts]:
                    executor = TiledExecutor(stack, _strips(stack.geometry, [f"edge{i}" for i in range(n)]), connections,
                                             timeout_s=300, label=f"vgg-tiles-{n}-{slowdown:g}")  # fmt: skip
                    executor.build(x)
                    crs = await executor.upload()
                    if not all(cr.ok for cr in crs.values()):
                        raise RuntimeError(f"upload failed: {crs}")
                    await executor.run(x)  # warm-up
                    walls, loads = [], []
                    for _ in range(queries):
                        query = await executor.run(x)
                        if query.recomputed:
                            raise RuntimeError(f"a worker failed during the benchmark: {query.recomputed}")
                        walls.append(query.wall_s)
                        loads.append(os.getloadavg()[0])
                    results[n] = {"median_s": statistics.median(walls), "all_s": walls, "load_1min": loads}
            finally:
                for connection in connections.values():
                    await connection.close()

        asyncio.run(run_all())
        cpu = {p.device: _cpu_s(p.pid) - cpu_before[p.device] for p in processes}
    finally:
        for p in processes:
            p.stop(timeout_s=10)
    single = results.pop(1)
    per_core = {c: sum(1 for i in range(n_max) if cores[i % len(cores)] == c) for c in cores}
    return single, {n: {**r, "speedup": single["median_s"] / r["median_s"]} for n, r in results.items()}, {
        "workers_cpu_s": cpu,
        "cores": cores,
        "workers_per_core_at_most": {str(n): math.ceil(n / len(cores)) for n in counts},
        "pinning": "taskset -c" if taskset else "os.sched_setaffinity of the main thread",
        "per_core": per_core,
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (its threads included), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def redundant(problem, captured) -> list[dict]:
    from tiercut.spatial.geometry import grid_tiles, strip_tiles
    from tiercut.spatial.stack import redundant_work

    geometry = problem.stacks[0]
    flops = {n.name: float(n.flops) for n in captured.graph}
    h, w = geometry.output_hw
    rows = []
    for n in (n for n in (1, 2, 3, 4, 6, 8) if n <= h):
        extra = redundant_work(geometry, strip_tiles(h, w, [1.0] * n), flops)
        rows.append({"layout": "strips", "tiles": n, "extra_flops": extra})
    for k in (k for k in (2, 3, 4) if k <= min(h, w)):
        rows.append({"layout": "grid", "tiles": k * k, "extra_flops": redundant_work(geometry, grid_tiles(h, w, k, k), flops)})
    return rows


def main(argv: list[str] | None = None) -> int:
    import tempfile

    import torch

    from tiercut.graph.capture import capture

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 and 3 devices, 3 queries")
    parser.add_argument("--slowdown", type=float, default=40.0, help="the dilated workers' --compute-slowdown")
    args = parser.parse_args(argv)
    counts = [2, 3] if args.quick else [2, 3, 4, 6]
    queries = 3 if args.quick else 7
    load_before = host_description()["load_average"]
    cores = sorted(os.sched_getaffinity(0))[:2]

    model = _stack_model()
    x = torch.randn(1, 3, 64, 64)
    captured = capture(model, (x,), label="vgg16-features-17")
    problem, nano = _problem(captured, max(counts))
    nano_s = sum(nano[v] for v in problem.stacks[0].names)
    host_s = host_seconds(model, x)
    slowdown = args.slowdown
    dilation = slowdown * host_s / nano_s  # a slowed worker is this many times slower than a Nano
    single_pred, pred = predicted(problem, counts)
    host_problem, _ = _problem(captured, 2, scale=host_s / nano_s)  # the boards are this host's cores
    single_host_pred, host_pred = predicted(host_problem, [2])
    extra = redundant(problem, captured)
    with tempfile.TemporaryDirectory() as logs:
        single_core, core_meas, core_info = measured(model, x, [2], slowdown=1.0, dilation=1.0, queries=queries,
                                                     log_dir=Path(logs), cores=cores)  # fmt: skip
        single_meas, meas, dilated_info = measured(model, x, counts, slowdown=slowdown, dilation=dilation, queries=queries,
                                                   log_dir=Path(logs), cores=cores)  # fmt: skip
    load_after = list(os.getloadavg())
    bound = {str(n): (math.ceil(n / len(cores)) - 1) / slowdown for n in counts}

    payload = {
        "setting": {
            "stack": "VGG-16 features[:17] (7 conv, 3 max-pool), 1x3x64x64, random weights",
            "boards": "edge-cluster preset's Jetson Nano (catalog prediction)",
            "lan": {"bandwidth_bytes_per_s": LAN_BYTES_PER_S, "latency_s": LAN_LATENCY_S,
                    "source": "edge-cluster preset (assumption)"},
            "tiles": "n equal strips (CoEdge proportional shares for identical boards)",
            "nano_stack_s": nano_s,
            "host_stack_cpu_s_one_thread": host_s,
            "queries": queries,
            "gather": "loopback, unshaped (modelled as a 1e12 B/s reply direction)",
            "pinning": "each worker on one core (taskset), 1 torch thread; the gateway (this process) unpinned",
        },
        "two_cores": {
            "what": "1 vs 2 workers, each on its own core, no slowdown; predicted with host-scaled Nano figures",
            "predicted_single_s": single_host_pred,
            "measured_single_median_s": single_core["median_s"],
            "predicted_speedup": host_pred[2]["speedup"],
            "measured_speedup": core_meas[2]["speedup"],
            "measured_median_s": core_meas[2]["median_s"],
            "measured_all_s": core_meas[2]["all_s"],
            "single_all_s": single_core["all_s"],
            "load_1min_during": core_meas[2]["load_1min"] + single_core["load_1min"],
            **core_info,
        },
        "dilated": {
            "what": "Nano cluster emulated: workers slowed by CPU time, LAN dilated alike",
            "compute_slowdown": slowdown,
            "time_dilation": dilation,
            "measured_lan": {"bandwidth_bytes_per_s": LAN_BYTES_PER_S / dilation, "latency_s": LAN_LATENCY_S * dilation},
            "sharing_error_bound": bound,
            "load_error_estimate": "other processes delay a run's compute by about (load / cores) / k of its emulated "
                                   f"time: {max(load_before[0], load_after[0]) / len(cores) / slowdown:.0%} at the "
                                   "higher 1-minute load seen",
            "single_edge": {"predicted_s": single_pred, "measured_median_s": single_meas["median_s"],
                            "measured_undilated_s": single_meas["median_s"] / dilation},
            **dilated_info,
        },
        "speedup": {
            str(n): {
                "predicted": pred[n]["speedup"],
                "measured": meas[n]["speedup"],
                "predicted_stage_s": pred[n]["stage_s"],
                "measured_median_s": meas[n]["median_s"],
                "measured_undilated_s": meas[n]["median_s"] / dilation,
                "measured_all_s": meas[n]["all_s"],
                "load_1min_during": meas[n]["load_1min"],
                "work_fraction": pred[n]["work_fraction"],
            }
            for n in counts
        },
        "redundant_flops": extra,
        "deepthings_reported": DEEPTHINGS,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    path = write_result("spatial", payload)
    print(f"load average before {load_before}, after {load_after} (2 cores shared with other work)")
    print(f"two cores, real parallelism (1 vs 2 workers, one core each, no slowdown): predicted "
          f"{host_pred[2]['speedup']:.2f}x, measured {core_meas[2]['speedup']:.2f}x "
          f"({single_core['median_s'] * 1e3:.1f} -> {core_meas[2]['median_s'] * 1e3:.1f} ms)")  # fmt: skip
    print(f"dilated Nano cluster (k={slowdown:g} by CPU time, dilation {dilation:.2f}): single board predicted "
          f"{single_pred * 1e3:.1f} ms, measured {single_meas['median_s'] / dilation * 1e3:.1f} ms undilated")  # fmt: skip
    print(f"{'devices':>8} {'predicted':>10} {'measured':>10} {'pred stage':>11} {'meas (undil.)':>14} {'work':>6} "
          f"{'share err':>9}")  # fmt: skip
    for n in counts:
        undilated_ms = meas[n]["median_s"] / dilation * 1e3
        print(f"{n:>8} {pred[n]['speedup']:>9.2f}x {meas[n]['speedup']:>9.2f}x {pred[n]['stage_s'] * 1e3:>9.1f}ms "
              f"{undilated_ms:>12.1f}ms {pred[n]['work_fraction']:>6.2f} {bound[str(n)]:>8.0%}")  # fmt: skip
    print(f"DeepThings (TCAD 2018) reports {DEEPTHINGS['speedup_range'][0]}-{DEEPTHINGS['speedup_range'][1]}x on 2-6 devices "
          "(YOLOv2, Raspberry Pi 3, Wi-Fi)")  # fmt: skip
    print(f"{'layout':>8} {'tiles':>6} {'extra FLOPs':>12}")
    for row in extra:
        print(f"{row['layout']:>8} {row['tiles']:>6} {100 * row['extra_flops']:>11.1f}%")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
