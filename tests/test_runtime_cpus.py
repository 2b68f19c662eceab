"""The worker's default torch threads: affinity and cgroup CPU quota, read from fake cgroup files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiercut.runtime.cpus import cpu_budget


def _cgroup(tmp_path: Path, proc_line: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(proc_line)
    return root, proc


@pytest.mark.parametrize(
    "proc_line, files, affinity, threads, quota",
    [
        # cgroup v2, a Kubernetes CPU limit of 2 on a 20-CPU node
        ("0::/kubepods/pod1/c1\n", {"kubepods/pod1/c1/cpu.max": "200000 100000\n"}, 20, 2, 2.0),
        # fractional quota rounds down; never below one thread
        ("0::/c\n", {"c/cpu.max": "150000 100000"}, 8, 1, 1.5),
        ("0::/c\n", {"c/cpu.max": "50000 100000"}, 8, 1, 0.5),
        # no quota: the affinity decides
        ("0::/c\n", {"c/cpu.max": "max 100000"}, 6, 6, None),
        ("0::/\n", {}, 3, 3, None),
        # a parent's tighter quota binds the child
        ("0::/a/b\n", {"a/cpu.max": "300000 100000", "a/b/cpu.max": "800000 100000"}, 16, 3, 3.0),
        # the affinity below the quota wins (docker --cpuset-cpus=0,1 --cpus=4)
        ("0::/c\n", {"c/cpu.max": "400000 100000"}, 2, 2, 4.0),
        # cgroup v1: cfs quota and period of the cpu controller (-1: none)
        ("4:cpu,cpuacct:/docker/abc\n", {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "400000",
                                         "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"}, 12, 4, 4.0),
        ("4:cpu,cpuacct:/docker/abc\n", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, 12, 12, None),
        # v1 seen from inside a container: /proc names the host's path, the mount is the container's own cgroup
        ("3:cpu:/docker/abc\n", {"cpu/cpu.cfs_quota_us": "250000", "cpu/cpu.cfs_period_us": "100000"}, 12, 2, 2.5),
        # unreadable or malformed files are ignored
        ("0::/c\n", {"c/cpu.max": "lots"}, 4, 4, None),
    ],
)
def test_threads_follow_the_affinity_and_the_tightest_cgroup_quota(tmp_path, proc_line, files, affinity, threads, quota):
    root, proc = _cgroup(tmp_path, proc_line, files)
    budget = cpu_budget(cgroup_root=root, proc_self_cgroup=proc, affinity=affinity)
    assert budget.threads == threads
    assert budget.quota_cpus == quota
    assert (budget.quota_file is None) == (quota is None)


def test_serve_uses_the_cgroup_default_unless_told(tmp_path, monkeypatch):
    from tiercut.cli import serve_cmd
    from tiercut.runtime import cpus

    root, proc = _cgroup(tmp_path, "0::/w\n", {"w/cpu.max": "300000 100000"})
    monkeypatch.setattr(cpus, "CGROUP_ROOT", root)
    monkeypatch.setattr(cpus, "PROC_SELF_CGROUP", proc)
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: set(range(20)))
    threads, why = serve_cmd.torch_threads_default(None)
    assert threads == 3 and "quota 3 CPUs" in why
    assert serve_cmd.torch_threads_default(7) == (7, "--torch-threads")
