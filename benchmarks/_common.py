"""Helpers shared by the benchmark scripts: host description and result files."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def host_description() -> dict[str, Any]:
    """CPU model, cores, load average (when written), torch version and threads of this machine."""
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": list(os.getloadavg()),  # 1, 5, 15 min: other work sharing the machine
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (with the host) to benchmarks/results/NAME.json atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"host": host_description(), **payload}, indent=1))
    tmp.replace(path)
    return path


def _busy_jiffies() -> tuple[float, float] | None:
    """(busy, total) CPU jiffies of the whole machine from /proc/stat, None where there is none."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class OthersCpuShare:
    """How much of the machine other processes used while the block ran.

    ``with OthersCpuShare() as share: ...`` then ``share.fraction``: the CPU
    seconds every process spent (``/proc/stat``) minus what this process and
    its children spent (``os.times``), over wall seconds x CPUs. A direct sign
    of contention during *this* run, where the load average lags a minute
    behind. ``None`` where ``/proc/stat`` is missing.
    """

    def __init__(self) -> None:
        self.fraction: float | None = None

    def __enter__(self) -> OthersCpuShare:
        import time

        self._start = (_busy_jiffies(), os.times(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        import time

        (jiffies0, times0, wall0), jiffies1, times1 = self._start, _busy_jiffies(), os.times()
        wall = time.perf_counter() - wall0
        if jiffies0 is None or jiffies1 is None or wall <= 0:
            return
        hz = os.sysconf("SC_CLK_TCK")
        everyone_s = (jiffies1[0] - jiffies0[0]) / hz
        mine_s = sum(times1[:4]) - sum(times0[:4])  # user, system, children's user, children's system
        self.fraction = max(0.0, everyone_s - mine_s) / (wall * (os.cpu_count() or 1))
