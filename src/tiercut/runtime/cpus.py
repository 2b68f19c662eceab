"""How many CPUs this process may really use: the default of ``tiercut serve --torch-threads``.

``os.cpu_count()`` counts the machine's cores; a container sees them all
while the kernel lets it run on fewer. Two limits apply, and the smaller wins:

- the CPU affinity (``os.sched_getaffinity``: ``docker run --cpuset-cpus``,
  Kubernetes' static CPU manager, ``taskset``);
- the CFS bandwidth quota of the process's cgroup and of every ancestor
  (cgroup v2 ``cpu.max`` = ``"QUOTA PERIOD"`` or ``"max PERIOD"``; cgroup v1
  ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, quota -1 = none): a
  Kubernetes CPU limit or ``docker run --cpus``. QUOTA / PERIOD CPUs may
  run per period; it is rounded down (at least 1), since torch's threads
  beyond it only get throttled together.

One torch intra-op thread per usable CPU then, not torch's default of one
per machine core (which oversubscribes a container), nor 1 (which leaves a
20-core server idle).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class CpuBudget:
    """What bounds this process's CPUs.

    Attributes:
        affinity: CPUs in its affinity mask.
        quota_cpus: the tightest cgroup quota in CPUs (QUOTA / PERIOD), None if unlimited.
        quota_file: the file that quota was read from, None if unlimited.
    """

    affinity: int
    quota_cpus: float | None = None
    quota_file: str | None = None

    @property
    def threads(self) -> int:
        """Usable CPUs: the affinity, capped by the quota rounded down, at least 1."""
        if self.quota_cpus is None:
            return max(1, self.affinity)
        return max(1, min(self.affinity, math.floor(self.quota_cpus)))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_paths(proc_self_cgroup: Path) -> tuple[str | None, str | None]:
    """This process's cgroup v2 path and cgroup v1 ``cpu`` controller path (None where absent)."""
    v2 = v1 = None
    for line in (_read(proc_self_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _ancestors(root: Path, relative: str) -> list[Path]:
    """``root/relative`` and each parent folder up to ``root``, innermost first."""
    folder = root
    chain = [root]
    for part in [p for p in relative.split("/") if p and p not in (".", "..")]:
        folder = folder / part
        chain.append(folder)
    return list(reversed(chain))


def _quota_v2(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")
    if not text:
        return None
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(folder: Path) -> float | None:
    quota_text, period_text = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        quota, period = int(quota_text or ""), int(period_text or "")
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cpu_budget(
    *,
    cgroup_root: Path | None = None,
    proc_self_cgroup: Path | None = None,
    affinity: int | None = None,
) -> CpuBudget:
    """The CPUs this process may use (module doc); None: :data:`CGROUP_ROOT`, :data:`PROC_SELF_CGROUP`, the affinity."""
    cgroup_root = CGROUP_ROOT if cgroup_root is None else cgroup_root
    proc_self_cgroup = PROC_SELF_CGROUP if proc_self_cgroup is None else proc_self_cgroup
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    v2, v1 = _cgroup_paths(proc_self_cgroup)
    candidates: list[tuple[float, Path]] = []
    if v2 is not None:
        for folder in _ancestors(cgroup_root, v2):
            quota = _quota_v2(folder)
            if quota is not None:
                candidates.append((quota, folder / "cpu.max"))
    if v1 is not None:
        for base in (cgroup_root / "cpu", cgroup_root / "cpu,cpuacct"):
            for folder in _ancestors(base, v1):
                quota = _quota_v1(folder)
                if quota is not None:
                    candidates.append((quota, folder / "cpu.cfs_quota_us"))
    if not candidates:
        return CpuBudget(affinity)
    quota, where = min(candidates, key=lambda c: c[0])
    return CpuBudget(affinity, quota, str(where))


def default_torch_threads() -> int:
    """Torch intra-op threads for a worker: one per CPU this process may use."""
    return cpu_budget().threads


__all__ = ["CpuBudget", "cpu_budget", "default_torch_threads"]
