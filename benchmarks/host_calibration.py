"""Is the host's reference peak reproducible? Repeated host calibrations, each in a fresh process.

The host's reference peak (``HostInfo.peak_flops``) is the best of at least
15 timed 1024x1024x1024 ``torch.mm`` samples at a fixed thread count,
recorded with the CPU clock read around it, the thread count, the timer and
the load average (:func:`tiercut.profile.measure_host`). This script runs
that calibration ``--runs`` times per series, each in a new Python process
(a fresh allocator and thread pool, as a new ``tiercut profile`` would get),
and reports the spread: target (issue 11), on a quiet host, max / min within
10 %. For contrast it also reports the previous definition -- the larger of
the GEMM's and a 3x3 convolution's *median* rates -- which drifted 100-227
GFLOP/s between runs.

Series: ``wall-1``, ``wall-2`` (the wall clock at 1 and 2 threads, what
``tiercut profile`` uses by default) and ``cpu-1`` (one thread timed by its
own CPU time, ``--clock cpu``: blind to the time slices other processes take,
the remedy the busy-host advice names).

Robustness to a shared machine:

- the series are *interleaved* (run 1 of every series, then run 2, ...), so
  a burst of other work lands on all of them rather than on one series;
- every run records the load average before and after and, from
  ``/proc/stat``, the share of the machine other processes used *during that
  run* (:class:`_common.OthersCpuShare`; the load average lags a minute);
- a run is *busy* when other processes used more than the CPUs its threads
  leave free (share x CPUs > CPUs - threads + 0.25). Busy runs are recorded
  but left out of the target: the verdict is ``met`` / ``missed`` over the
  quiet runs, or ``not measurable here`` when fewer than 3 runs were quiet --
  never a pass or a fail computed from contended samples.

Writes benchmarks/results/host_calibration.json.

``--runtime``: instead, measure the runtime's per-message constants on this
host (docs/cost-model.md "Per-message costs": each executor's compute over
the profile, ``message_s`` per device, ``message_overhead_bytes`` and the
per-message delay) on benchmarks/throughput.py's measured set-up
(:func:`pipelining.calibrate_runtime`, local workers); writes
benchmarks/results/runtime_calibration.json. benchmarks/throughput.py measures
them afresh before its own runs (they depend on the machine's load).

    PYTHONPATH=src python benchmarks/host_calibration.py [--runs 5] [--series wall-1,wall-2,cpu-1] [--runtime]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OthersCpuShare, write_result

TARGET_SPREAD = 0.10
MIN_QUIET_RUNS = 3
_CHILD = """
import json, sys
from tiercut.profile import measure_host
from tiercut.profile.measure import CLOCKS
clock, threads = sys.argv[1], int(sys.argv[2])
host = measure_host(threads, timer=CLOCKS[clock], timer_name=clock)
print(json.dumps(host.to_dict()))
"""


def parse_series(text: str) -> list[tuple[str, int]]:
    """``wall-1,cpu-1`` -> [("wall", 1), ("cpu", 1)]; the cpu clock only at one thread (it times one thread)."""
    series = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        clock, _, threads = item.partition("-")
        if clock not in ("wall", "cpu") or not threads.isdigit() or int(threads) < 1:
            raise SystemExit(f"bad series {item!r}: use CLOCK-THREADS with CLOCK wall or cpu, e.g. wall-2 or cpu-1")
        if clock == "cpu" and int(threads) != 1:
            raise SystemExit(f"bad series {item!r}: the cpu clock times one thread; use cpu-1")
        series.append((clock, int(threads)))
    return series


def calibrate_once(clock: str, threads: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent / "src"),
                                                                         os.environ.get("PYTHONPATH", "")]))}
    load_before = os.getloadavg()[0]
    with OthersCpuShare() as share:
        done = subprocess.run([sys.executable, "-c", _CHILD, clock, str(threads)], capture_output=True, text=True,
                              env=env, check=True, timeout=600)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {**row, "load_before": load_before, "load_after": os.getloadavg()[0], "others_cpu_share": share.fraction}


def is_busy(run: dict[str, Any], threads: int, cpus: int) -> bool:
    """Did other processes use more than the CPUs this run's threads left free (with a quarter-CPU margin)?"""
    share = run["others_cpu_share"]
    if share is None:  # no /proc/stat: fall back on the load average (which includes this run)
        return max(run["load_before"], run["load_after"]) > cpus + 0.5
    return share * cpus > max(cpus - threads, 0) + 0.25


def summarise(runs: list[dict[str, Any]], threads: int, cpus: int) -> dict[str, Any]:
    peaks = [r["gemm_flops"] for r in runs]
    old = [max(r["gemm_median_flops"], r["conv_flops"]) for r in runs]
    quiet = [r for r in runs if not is_busy(r, threads, cpus)]
    quiet_peaks = [r["gemm_flops"] for r in quiet]
    quiet_spread = max(quiet_peaks) / min(quiet_peaks) if len(quiet_peaks) >= 2 else None
    if len(quiet) < MIN_QUIET_RUNS:
        verdict = f"not measurable here: only {len(quiet)} of {len(runs)} runs were quiet (need {MIN_QUIET_RUNS})"
    else:
        verdict = "met" if quiet_spread <= 1 + TARGET_SPREAD else "missed"
    keys = ("gemm_flops", "gemm_median_flops", "conv_flops", "cpu_mhz", "threads", "timer", "load_avg_1m",
            "load_before", "load_after", "others_cpu_share")
    return {
        "runs": [{**{k: r[k] for k in keys}, "busy": is_busy(r, threads, cpus)} for r in runs],
        "median_peak_gflops": statistics.median(peaks) / 1e9,
        "max_over_min": max(peaks) / min(peaks),
        "quiet_runs": len(quiet),
        "quiet_median_peak_gflops": statistics.median(quiet_peaks) / 1e9 if quiet_peaks else None,
        "quiet_max_over_min": quiet_spread,
        "verdict": verdict,
        "previous_definition_max_over_min": max(old) / min(old),
        "previous_definition_gflops": [o / 1e9 for o in old],
    }


def runtime_constants() -> int:
    """The per-message constants of the runtime on this host (see the module docstring)."""
    import tempfile

    import pipelining
    import throughput

    captured, table, env = throughput.measured_setup()
    with tempfile.TemporaryDirectory(prefix="tiercut-calibration-") as folder:
        result = pipelining.calibrate_runtime(captured, table, env, throughput.MEASURED_SLOWDOWN, Path(folder))
    for key in ("compute_factor", "message_s"):
        print(f"{key}: " + ", ".join(f"{d} {v:.4g}" for d, v in result[key].items()))
    print(f"message_overhead_bytes {result['message_overhead_bytes']:.0f}, message latency "
          f"{result['message_latency_s'] * 1e3:.2f} ms, load {result['load_average'][0]:.2f}")
    print(f"wrote {write_result('runtime_calibration', {**result, 'environment': env})}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--series", default="wall-1,wall-2,cpu-1", help="comma-separated CLOCK-THREADS")
    parser.add_argument("--runtime", action="store_true", help="measure the runtime's per-message constants instead")
    args = parser.parse_args()
    if args.runtime:
        return runtime_constants()
    cpus = os.cpu_count() or 1
    series = parse_series(args.series)
    runs: dict[str, list[dict[str, Any]]] = {f"{c}-{t}": [] for c, t in series}
    for i in range(args.runs):  # interleaved: run i of every series before run i + 1 of any
        for clock, threads in series:
            run = calibrate_once(clock, threads)
            runs[f"{clock}-{threads}"].append(run)
            share = run["others_cpu_share"]
            print(f"  run {i + 1}/{args.runs} {clock}-{threads}: {run['gemm_flops'] / 1e9:6.1f} GFLOP/s, load "
                  f"{run['load_before']:.2f}->{run['load_after']:.2f}, others used "
                  f"{'n/a' if share is None else f'{100 * share:.0f}%'} of the machine"
                  f"{' (busy)' if is_busy(run, threads, cpus) else ''}", flush=True)
    out: dict[str, Any] = {"target_max_over_min": 1 + TARGET_SPREAD, "min_quiet_runs": MIN_QUIET_RUNS, "series": {}}
    for (_clock, threads), (name, rows) in zip(series, runs.items(), strict=True):
        row = summarise(rows, threads, cpus)
        out["series"][name] = row
        spread = row["quiet_max_over_min"]
        peaks = ", ".join(f"{r['gemm_flops'] / 1e9:.1f}" for r in rows)
        print(f"{name}: reference peak {peaks} GFLOP/s; "
              f"max/min {row['max_over_min']:.3f} over all runs, "
              f"{'n/a' if spread is None else f'{spread:.3f}'} over the {row['quiet_runs']} quiet ones: "
              f"{row['verdict']}; previous definition max/min {row['previous_definition_max_over_min']:.3f}",
              flush=True)
    path = write_result("host_calibration", {**out, "cpus": cpus, "note": (
        "shared machine: each run records its load average and the share of the machine other processes used "
        "during it; busy runs are left out of the target")})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
