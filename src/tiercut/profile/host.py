"""This host: what it is (CPU, cores, torch, threads) and its measured roofline.

A profile records the machine it was measured on, so its numbers are never
mistaken for another machine's. Besides the description, three figures are
measured by small microbenchmarks and stored with the host; they are the
host's side of the roofline transfer (:mod:`tiercut.profile.transfer`):

- ``gemm_flops``: sustained FP32 FLOP/s of a 1024x1024x1024 ``torch.mm``
  (median of repeats), at the profile's thread count;
- ``conv_flops``: sustained FP32 FLOP/s of a 3x3 convolution, 256 -> 256
  channels on 28x28 (ResNet-50's ``layer3`` shape; oneDNN's direct
  convolution can beat ``torch.mm``); ``peak_flops`` is the larger of the two;
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

from tiercut.errors import TiercutError


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

    @property
    def peak_flops(self) -> float:
        """The best sustained FLOP/s measured (GEMM or convolution)."""
        return max(self.gemm_flops, self.conv_flops)

    @property
    def name(self) -> str:
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
        """Same CPU model, thread count and torch version (timings comparable)."""
        return (self.cpu_model, self.threads, self.torch_version) == (other.cpu_model, other.threads, other.torch_version)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak_flops": self.peak_flops}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostInfo:
        try:
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
            )
        except KeyError as exc:
            raise TiercutError(f"host description lacks the field {exc}; re-profile with this tiercut") from None
        except (TypeError, ValueError) as exc:
            raise TiercutError(f"host description has a malformed field ({exc}); re-profile with this tiercut") from None


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


def describe_host(threads: int | None = None) -> HostInfo:
    """This machine's description (no measurement): CPU model, cores, torch, threads."""
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
    )


def measure_host(threads: int | None = None, *, rule: Any = None, timer: Any = None) -> HostInfo:
    """:func:`describe_host` plus the measured GEMM FLOP/s, copy bandwidth and dispatch overhead.

    Takes about a second. Runs at ``threads`` torch threads (restored after),
    timed by ``timer`` (default: the wall clock).
    """
    import torch
    import torch.fx

    from tiercut.profile.measure import StoppingRule, repeat_until_stable, thread_count

    rule = rule or StoppingRule(min_repeats=5, max_repeats=15, rel_tolerance=0.05, max_seconds=1.0)
    with thread_count(threads) as used, torch.no_grad():
        n = 1024
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=generator)
        b = torch.randn(n, n, generator=generator)
        gemm = repeat_until_stable(lambda: torch.mm(a, b), rule, timer)
        image = torch.randn(1, 256, 28, 28, generator=generator)
        conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval()
        conv_s = repeat_until_stable(lambda: conv(image), rule, timer)
        conv_flop = 2.0 * 256 * 28 * 28 * 256 * 9
        src = torch.randn(32 * 1024 * 1024, generator=generator)
        dst = torch.empty_like(src)
        copy = repeat_until_stable(lambda: dst.copy_(src), rule, timer)
        src = dst = torch.empty(0)  # free the 256 MiB now

        class _Relu(torch.nn.Module):
            def forward(self, x):
                return torch.relu(x)

        one_node = torch.fx.symbolic_trace(_Relu())
        scalar = torch.ones(1)
        dispatch = repeat_until_stable(lambda: one_node(scalar), rule, timer)
        base = describe_host(used)
    fields = {k: v for k, v in base.to_dict().items() if k != "peak_flops"}
    return HostInfo(
        **{
            **fields,
            "gemm_flops": 2.0 * n**3 / gemm.median_s,
            "conv_flops": conv_flop / conv_s.median_s,
            "memory_bandwidth_bps": 2.0 * 32 * 1024 * 1024 * 4 / copy.median_s,
            "dispatch_overhead_s": dispatch.median_s,
        }
    )


__all__ = ["HostInfo", "describe_host", "measure_host"]
