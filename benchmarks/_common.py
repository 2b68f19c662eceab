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
