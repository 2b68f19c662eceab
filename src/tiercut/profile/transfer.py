"""Roofline transfer: a node's seconds on this host -> its seconds on a catalog device.

A device that cannot be measured here is known by its peak FLOP/s ``F``,
memory bandwidth ``B`` and per-node dispatch overhead ``o``
(:class:`~tiercut.profile.catalog.DeviceSpec`). The roofline model
(Williams, Waterman, Patterson, "Roofline: an insightful visual performance
model for multicore architectures", CACM 52(4), 2009) bounds a node's time
on a device by ``max(flops / F, bytes / B)``, where ``bytes`` is its
compulsory traffic (inputs read + output written + weights read). The node
is *compute-bound* on that device when the first term is larger, else
*memory-bound*.

Transfer, per node (host figures: the host's measured sustained FLOP/s
-- the better of ``torch.mm`` and a 3x3 convolution --, copy bandwidth and
dispatch overhead, :class:`~tiercut.profile.host.HostInfo`)::

    paid   = min(1, t_host / host dispatch overhead)    # share of the fixed part paid
    work_h = t_host - paid * host dispatch overhead      # the rest
    ratio  = max(flops/F_d, bytes/B_d) / max(flops/F_h, bytes/B_h)
    t_d    = paid * o_d + work_h * ratio

i.e. the work runs at the same *fraction of the roofline bound* on the
device as it did on the host. The ratio differs per node: a convolution
compute-bound on both scales with the FLOP/s ratio, a ReLU memory-bound on
both with the bandwidth ratio, and a node compute-bound on the host but
memory-bound on a GPU with the mix -- never one flat factor for a whole
model. A node with no counted FLOPs or bytes (a ``size`` call) keeps only
the overhead part and scales its remaining work by the FLOP/s ratio.

Caveats, stated rather than hidden: the host figures are *sustained*
(measured) while catalog figures are vendor *peaks*, so the device is
assumed to reach its peak as well as this host reaches its best measured
rate -- optimistic for a GPU at batch 1, whose small kernels rarely fill
the device (the dispatch overhead ``o_d`` is the catalog's only allowance
for that). Devices described only by GHz
(:meth:`DeviceSpec.from_cpu_ghz`) scale every node by the same factor,
which is the seed paper's own model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from tiercut.errors import TiercutError
from tiercut.profile.features import NodeFeatures


class Roofline(Protocol):
    """Anything with roofline figures: a DeviceSpec or a measured HostInfo."""

    name: str
    peak_flops: float
    memory_bandwidth_bps: float
    dispatch_overhead_s: float


def _check(spec: Any, role: str) -> None:
    if not (getattr(spec, "peak_flops", 0) > 0 and getattr(spec, "memory_bandwidth_bps", 0) > 0):
        raise TiercutError(
            f"{role} {getattr(spec, 'name', spec)!r} has no roofline figures (peak FLOP/s and bandwidth); "
            "re-profile with the host measurement on, or give the device's figures"
        )


def roofline_bound_s(features: Sequence[NodeFeatures], spec: Roofline) -> np.ndarray:
    """``max(flops / F, bytes / B)`` per node on ``spec``."""
    flops = np.array([f.flops for f in features], dtype=float)
    nbytes = np.array([f.bytes_total for f in features], dtype=float)
    return np.maximum(flops / spec.peak_flops, nbytes / spec.memory_bandwidth_bps)


def bound_kinds(features: Sequence[NodeFeatures], spec: Roofline) -> list[str]:
    """``"compute"`` or ``"memory"`` per node: which roofline term is larger on ``spec``."""
    return [
        "compute" if f.flops / spec.peak_flops >= f.bytes_total / spec.memory_bandwidth_bps else "memory"
        for f in features
    ]


def roofline_scaled_seconds(
    host_seconds: Sequence[float] | np.ndarray,
    features: Sequence[NodeFeatures],
    source: Roofline,
    target: Roofline,
) -> np.ndarray:
    """Seconds on ``target`` of nodes that take ``host_seconds`` on ``source`` (see the module docstring)."""
    _check(source, "source host")
    _check(target, "device")
    t = np.asarray(host_seconds, dtype=float)
    if len(t) != len(features):
        raise TiercutError(f"{len(t)} times but {len(features)} nodes; pass one time per node")
    overhead = np.minimum(source.dispatch_overhead_s, t)
    work = t - overhead
    bound_source = roofline_bound_s(features, source)
    bound_target = roofline_bound_s(features, target)
    flat = source.peak_flops / target.peak_flops
    ratio = np.where(bound_source > 0, bound_target / np.where(bound_source > 0, bound_source, 1.0), flat)
    # a node quicker than the host's dispatch overhead pays the same fraction of the device's
    paid = overhead / source.dispatch_overhead_s if source.dispatch_overhead_s > 0 else np.zeros_like(t)
    return target.dispatch_overhead_s * paid + work * ratio


__all__ = ["Roofline", "bound_kinds", "roofline_bound_s", "roofline_scaled_seconds"]
