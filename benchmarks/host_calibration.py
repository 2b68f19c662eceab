"""Is the host's reference peak reproducible? Repeated host calibrations, each in a fresh process.

The host's reference peak (``HostInfo.peak_flops``) is the best of at least
15 timed 1024x1024x1024 ``torch.mm`` samples at a fixed thread count,
recorded with the CPU clock read around it, the thread count, the timer and
the load average (:func:`tiercut.profile.measure_host`). This script runs
that calibration ``--runs`` times per thread count, each in a new Python
process (a fresh allocator and thread pool, as a new ``tiercut profile``
would get), and reports the spread: target, on a quiet host, max / min
within 10 %. For contrast it also reports the previous definition -- the
larger of the GEMM's and a 3x3 convolution's *median* rates, at whatever
thread count -- which drifted 100-227 GFLOP/s between runs.

The machine is shared: every run records its load average, and the JSON
says which runs were taken on a quiet host (1-minute load below the CPUs
left free plus 0.5).

Writes benchmarks/results/host_calibration.json.

    PYTHONPATH=src python benchmarks/host_calibration.py [--runs 5] [--threads 1,2]
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

from _common import write_result

TARGET_SPREAD = 0.10
_CHILD = """
import json, sys
from tiercut.profile import measure_host
host = measure_host(int(sys.argv[1]))
print(json.dumps(host.to_dict()))
"""


def calibrate_once(threads: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent / "src"),
                                                                         os.environ.get("PYTHONPATH", "")]))}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(threads)], capture_output=True, text=True, env=env,
                          check=True, timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    out: dict[str, Any] = {"target_max_over_min": 1 + TARGET_SPREAD, "per_threads": {}}
    for threads in (int(t) for t in args.threads.split(",") if t.strip()):
        runs = [calibrate_once(threads) for _ in range(args.runs)]
        peaks = [r["gemm_flops"] for r in runs]
        old = [max(r["gemm_median_flops"], r["conv_flops"]) for r in runs]
        quiet = [r for r in runs if 0 <= r["load_avg_1m"] <= max(cpus - threads, 0) + 0.5]
        quiet_peaks = [r["gemm_flops"] for r in quiet]
        row = {
            "runs": [{k: r[k] for k in ("gemm_flops", "gemm_median_flops", "conv_flops", "cpu_mhz", "threads", "timer",
                                        "load_avg_1m")} for r in runs],
            "median_peak_gflops": statistics.median(peaks) / 1e9,
            "max_over_min": max(peaks) / min(peaks),
            "quiet_runs": len(quiet),
            "quiet_max_over_min": max(quiet_peaks) / min(quiet_peaks) if len(quiet_peaks) >= 2 else None,
            "previous_definition_max_over_min": max(old) / min(old),
            "previous_definition_gflops": [o / 1e9 for o in old],
        }
        row["met_on_quiet_runs"] = row["quiet_max_over_min"] is not None and row["quiet_max_over_min"] <= 1 + TARGET_SPREAD
        out["per_threads"][str(threads)] = row
        loads = ", ".join(f"{r['load_avg_1m']:.2f}" for r in runs)
        clocks = ", ".join(f"{r['cpu_mhz']:.0f}" for r in runs)
        print(f"{threads} thread(s): reference peak {', '.join(f'{p / 1e9:.1f}' for p in peaks)} GFLOP/s "
              f"(max/min {row['max_over_min']:.3f}; on the {len(quiet)} quiet runs "
              f"{row['quiet_max_over_min'] or float('nan'):.3f}); loads {loads}; "
              f"clock {clocks} MHz; previous definition max/min "
              f"{row['previous_definition_max_over_min']:.3f} ({', '.join(f'{o / 1e9:.0f}' for o in old)} GFLOP/s)",
              flush=True)
    path = write_result("host_calibration", {**out, "cpus": cpus,
                                             "note": "shared machine: each run's load average is recorded"})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
