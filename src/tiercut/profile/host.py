"""This host: what it is (CPU, cores, torch, threads) and its measured roofline.

A profile records the machine it was measured on, so its numbers are never
mistaken for another machine's. Besides the description, three figures are
measured by small microbenchmarks and stored with the host; they are the
host's side of the roofline transfer (:mod:`tiercut.profile.transfer`):

- ``gemm_flops``: FP32 FLOP/s of a 1024x1024x1024 ``torch.mm`` at the
  profile's thread count -- the *best* of its repeats (the rate the host
  reaches when nothing interrupts it), recorded with the CPU clock read
  during the measurement, the thread count, the timer and the load
  average. This is the host's reference peak (``peak_flops``): the
  ``conv_flops`` of oneDNN's convolution is kept as a second figure but no
  longer mixed in (taking the larger of the two, at whatever thread count,
  made the "peak" drift 100-227 GFLOP/s between runs);
- ``conv_flops``: sustained FP32 FLOP/s of a 3x3 convolution, 256 -> 256
  channels on 28x28 (ResNet-50's ``layer3`` shape);
- ``memory_bandwidth_bps``: sustained bytes/s of copying a 128 MiB tensor
  (read + write counted), well beyond the last-level cache;
- ``dispatch_overhead_s``: seconds per call of a one-node fx ``GraphModule``
  (``relu`` of a one-element tensor): the fixed cost every profiled node pays.

These are *sustained* figures (what this host achieves), while the catalog
holds vendor *peaks*; see :mod:`tiercut.profile.transfer` for what that
implies. ``llc_bytes`` is the last-level cache size from sysfs: weights and
activations beyond it stream from DRAM, which the predictor uses.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tiercut.serialization import json_contract


@dataclass(frozen=True)
class HostInfo:
    """A machine that was profiled, and its measured roofline figures.

    Attributes:
        cpu_model: ``model name`` from ``/proc/cpuinfo`` (or ``platform.processor()``).
        logical_cpus: ``os.cpu_count()``.
        physical_cores: ``cpu cores`` from ``/proc/cpuinfo`` (0 when unknown).
        cpu_mhz: nominal clock from ``/proc/cpuinfo`` (0 when unknown).
        threads: ``torch.get_num_threads()`` during the measurement.
        torch_version: ``torch.__version__``.
        python_version: ``platform.python_version()``.
        platform: ``platform.platform()``.
        gemm_flops: measured sustained FP32 ``torch.mm`` FLOP/s (0 when not measured).
        conv_flops: measured sustained FP32 3x3-convolution FLOP/s (0 when not measured).
        memory_bandwidth_bps: measured sustained copy bandwidth, B/s (0 when not measured).
        dispatch_overhead_s: measured seconds per one-node GraphModule call.
        llc_bytes: last-level cache size in bytes (0 when unknown).
        torch_device: where the profile ran (``cpu``, ``cuda:0``).
        accelerator: the GPU's name when ``torch_device`` is CUDA.
        timer: the clock the GEMM was timed with (``wall``, ``cpu``, ``cuda``).
        load_avg_1m: the 1-minute load average when the host was measured (-1: unknown).
        gemm_median_flops: the GEMM's median rate (its spread against ``gemm_flops``
            shows how disturbed the measurement was; 0 when not measured).
    """

    cpu_model: str
    logical_cpus: int
    physical_cores: int
    cpu_mhz: float
    threads: int
    torch_version: str
    python_version: str
    platform: str
    gemm_flops: float = 0.0
    conv_flops: float = 0.0
    memory_bandwidth_bps: float = 0.0
    dispatch_overhead_s: float = 0.0
    llc_bytes: int = 0
    torch_device: str = "cpu"
    accelerator: str = ""
    timer: str = "wall"
    load_avg_1m: float = -1.0
    gemm_median_flops: float = 0.0

    @property
    def peak_flops(self) -> float:
        """The reference peak: the measured GEMM's FLOP/s (the convolution's when no GEMM was measured)."""
        return self.gemm_flops if self.gemm_flops > 0 else self.conv_flops

    @property
    def name(self) -> str:
        if self.torch_device.startswith("cuda"):
            return f"{self.accelerator or self.torch_device} (host {self.cpu_model})"
        return f"{self.cpu_model} ({self.threads} threads)"

    @property
    def aggregate_ghz(self) -> float:
        """Clock x threads in GHz: the seed paper's "CPU processing capacity" of this host."""
        mhz = self.cpu_mhz if self.cpu_mhz > 0 else 1000.0
        return mhz / 1000.0 * max(self.threads, 1)

    @property
    def has_roofline(self) -> bool:
        return self.peak_flops > 0 and self.memory_bandwidth_bps > 0

    def same_machine(self, other: HostInfo) -> bool:
        """Same CPU model, thread count, torch version and device (timings comparable)."""
        mine = (self.cpu_model, self.threads, self.torch_version, self.torch_device, self.accelerator)
        return mine == (other.cpu_model, other.threads, other.torch_version, other.torch_device, other.accelerator)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak_flops": self.peak_flops}

    @classmethod
    @json_contract("host description", hint="re-profile with this tiercut")
    def from_dict(cls, data: Mapping[str, Any]) -> HostInfo:
        return cls(
            cpu_model=str(data["cpu_model"]),
            logical_cpus=int(data.get("logical_cpus", 0)),
            physical_cores=int(data.get("physical_cores", 0)),
            cpu_mhz=float(data.get("cpu_mhz", 0.0)),
            threads=int(data["threads"]),
            torch_version=str(data.get("torch_version", "")),
            python_version=str(data.get("python_version", "")),
            platform=str(data.get("platform", "")),
            gemm_flops=float(data.get("gemm_flops", 0.0)),
            conv_flops=float(data.get("conv_flops", 0.0)),
            memory_bandwidth_bps=float(data.get("memory_bandwidth_bps", 0.0)),
            dispatch_overhead_s=float(data.get("dispatch_overhead_s", 0.0)),
            llc_bytes=int(data.get("llc_bytes", 0)),
            torch_device=str(data.get("torch_device", "cpu")),
            accelerator=str(data.get("accelerator", "")),
            timer=str(data.get("timer", "wall")),
            load_avg_1m=float(data.get("load_avg_1m", -1.0)),
            gemm_median_flops=float(data.get("gemm_median_flops", 0.0)),
        )


def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key not in fields:
            fields[key] = value.strip()
    return fields


def _llc_bytes() -> int:
    """Size of the highest-level cache of CPU 0 (sysfs), 0 when unknown."""
    best_level, best_size = 0, 0
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        multiplier = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
        try:
            size = int(text.rstrip("KMG")) * multiplier
        except ValueError:
            continue
        if level > best_level or (level == best_level and size > best_size):
            best_level, best_size = level, size
    return best_size


def load_average() -> float:
    """The 1-minute load average (-1 where the OS has none)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return -1.0


def current_cpu_mhz() -> float:
    """The mean clock of the CPUs right now (``/proc/cpuinfo``; 0 when unknown)."""
    try:
        values = [float(line.split(":", 1)[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("cpu MHz")]
    except (OSError, ValueError):
        return 0.0
    return sum(values) / len(values) if values else 0.0


def describe_host(threads: int | None = None, torch_device: str = "cpu") -> HostInfo:
    """This machine's description (no measurement): CPU model, cores, torch, threads, device."""
    import torch

    info = _cpuinfo()
    try:
        mhz = float(info.get("cpu MHz", "0") or 0)
    except ValueError:
        mhz = 0.0
    try:
        cores = int(info.get("cpu cores", "0") or 0)
    except ValueError:
        cores = 0
    return HostInfo(
        cpu_model=info.get("model name") or platform.processor() or platform.machine() or "unknown CPU",
        logical_cpus=os.cpu_count() or 0,
        physical_cores=cores,
        cpu_mhz=mhz,
        threads=int(threads if threads is not None else torch.get_num_threads()),
        torch_version=str(torch.__version__),
        python_version=platform.python_version(),
        platform=platform.platform(),
        llc_bytes=_llc_bytes(),
        torch_device=torch_device,
        accelerator=torch.cuda.get_device_name(torch.device(torch_device)) if torch_device.startswith("cuda") else "",
        load_avg_1m=load_average(),
    )


def measure_host(
    threads: int | None = None, *, rule: Any = None, timer: Any = None, torch_device: str = "cpu", timer_name: str = "wall"
) -> HostInfo:
    """:func:`describe_host` plus the measured GEMM and convolution FLOP/s, copy bandwidth and dispatch overhead.

    Takes a few seconds. Runs at ``threads`` torch threads (restored after)
    on ``torch_device``, timed by ``timer`` (default: the wall clock; on
    CUDA, CUDA events), whose name ``timer_name`` is recorded. The GEMM's
    reference rate is the best of at least 15 samples, so a time slice lost
    to another process does not lower the peak; the load average and the
    CPU clock are read around it.
    """
    import torch
    import torch.fx

    from tiercut.profile.measure import StoppingRule, repeat_until_stable, thread_count

    rule = rule or StoppingRule(min_repeats=5, max_repeats=15, rel_tolerance=0.05, max_seconds=1.0)
    gemm_rule = StoppingRule(min_repeats=15, max_repeats=30, rel_tolerance=0.02, max_seconds=3.0, min_sample_s=0.02)
    device = torch.device(torch_device)
    load = load_average()
    with thread_count(threads) as used, torch.no_grad():
        n = 1024
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=generator).to(device)
        b = torch.randn(n, n, generator=generator).to(device)
        mhz_before = current_cpu_mhz()
        gemm = repeat_until_stable(lambda: torch.mm(a, b), gemm_rule, timer)
        mhz = (mhz_before + current_cpu_mhz()) / 2.0
        image = torch.randn(1, 256, 28, 28, generator=generator).to(device)
        conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval().to(device)
        conv_s = repeat_until_stable(lambda: conv(image), rule, timer)
        conv_flop = 2.0 * 256 * 28 * 28 * 256 * 9
        src = torch.randn(32 * 1024 * 1024, generator=generator).to(device)
        dst = torch.empty_like(src)
        copy = repeat_until_stable(lambda: dst.copy_(src), rule, timer)
        src = dst = torch.empty(0)  # free the 256 MiB now

        class _Relu(torch.nn.Module):
            def forward(self, x):
                return torch.relu(x)

        one_node = torch.fx.symbolic_trace(_Relu())
        scalar = torch.ones(1).to(device)
        dispatch = repeat_until_stable(lambda: one_node(scalar), rule, timer)
        base = describe_host(used, torch_device=str(device) if device.type == "cuda" else "cpu")
    fields = {k: v for k, v in base.to_dict().items() if k != "peak_flops"}
    return HostInfo(
        **{
            **fields,
            "cpu_mhz": mhz or base.cpu_mhz,
            "gemm_flops": 2.0 * n**3 / min(gemm.samples_s),
            "gemm_median_flops": 2.0 * n**3 / gemm.median_s,
            "conv_flops": conv_flop / conv_s.median_s,
            "memory_bandwidth_bps": 2.0 * 32 * 1024 * 1024 * 4 / copy.median_s,
            "dispatch_overhead_s": dispatch.median_s,
            "timer": timer_name,
            "load_avg_1m": load,
        }
    )


__all__ = ["HostInfo", "current_cpu_mhz", "describe_host", "load_average", "measure_host"]
