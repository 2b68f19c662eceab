"""A node's seconds on a catalog device, from its work, its traffic and the device's achieved efficiency.

The roofline model (Williams, Waterman, Patterson, "Roofline: an insightful
visual performance model for multicore architectures", CACM 52(4), 2009)
bounds a kernel's time by ``max(flops / F, bytes / B)``. At batch 1 no
device reaches its data-sheet peak: a small convolution does not fill a GPU,
a depthwise convolution's short dot products starve the vector units, and
every layer pays a fixed framework and kernel-launch cost. So each device
entry (:class:`~tiercut.profile.catalog.DeviceSpec`) carries, per numeric
precision ``p``, the *achieved* fraction of its peak per op class and a
fixed per-node overhead ``o``, and a node's time is::

    compute = matmul_flops / (F_p * e[class]) + other_flops / (F_p * e["conv"])
    memory  = bytes_p / (B * e["memory"])
    t       = o_p * kernels + max(compute, memory)

- ``class`` (:func:`op_class`): ``conv`` (convolutions whose dot products
  are at least :data:`SHORT_REDUCTION` long), ``depthwise`` (shorter ones:
  depthwise and very thin convolutions), ``matmul`` (linear layers, matrix
  products, attention), ``memory`` (norms, activations, pooling,
  element-wise, concatenation; their FLOPs are charged at the ``conv``
  rate), and ``view`` (reshapes, flattens, getitems: no kernel, no cost
  beyond a 1 ns floor that keeps every table entry positive);
- ``bytes_p``: the node's compulsory traffic (inputs read, output written,
  weights read; counted in float32 by the graph) scaled to the precision's
  element size (``fp16``: half, ``int8``: a quarter);
- ``kernels``: 1 per node at module granularity; a block node pays the
  overhead once per member layer.

``e`` may exceed 1 for ``conv``: the graph counts direct-convolution FLOPs,
and Winograd or FFT kernels perform fewer multiplications (capped at
:data:`~tiercut.profile.catalog.MAX_EFFICIENCY`).

The efficiencies and overheads in the shipped catalog come from published
batch-1 whole-model latencies (fitted on a stated subset, validated on the
rest by ``benchmarks/device_transfer.py``) or are marked as assumptions; a
device can also be calibrated from a profile taken on it
(:mod:`tiercut.profile.calibrate`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tiercut.errors import TiercutError
from tiercut.profile.catalog import OP_CLASSES, DeviceSpec, ResolvedPrecision
from tiercut.profile.features import NodeFeatures

#: dot products shorter than this (a depthwise 3x3 convolution: 9) make a convolution "depthwise" class
SHORT_REDUCTION = 32.0
#: every class a node can fall in: the efficiency classes and ``view`` (free)
NODE_CLASSES = (*OP_CLASSES, "view")
#: seconds charged for a view node: nothing (a floor keeps every table entry positive)
VIEW_SECONDS = 1e-9
#: element bytes the graph counts traffic in (graphs are captured in float32)
GRAPH_ELEMENT_BYTES = 4


def op_class(features: NodeFeatures) -> str:
    """The efficiency class of a node (see the module docstring)."""
    group = features.group
    if group == "shape":
        return "view"
    if group == "conv":
        return "depthwise" if features.reduction < SHORT_REDUCTION else "conv"
    if group == "matmul":
        return "matmul"
    if features.matmul_flops > 0:  # a block of layers, or an unknown op doing products
        return "conv"
    return "memory"


def _compute_class(cls: str) -> str:
    return cls if cls in ("conv", "depthwise", "matmul") else "conv"


def class_arrays(features: Sequence[NodeFeatures]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(class per node, matmul FLOPs, other FLOPs, float32 bytes) as arrays."""
    classes = [op_class(f) for f in features]
    matmul = np.array([f.matmul_flops for f in features], dtype=float)
    other = np.array([f.other_flops for f in features], dtype=float)
    nbytes = np.array([f.bytes_total for f in features], dtype=float)
    return classes, matmul, other, nbytes


def seconds_with(
    classes: Sequence[str],
    matmul_flops: np.ndarray,
    other_flops: np.ndarray,
    nbytes: np.ndarray,
    resolved: ResolvedPrecision,
    efficiency: dict[str, float],
    kernels: np.ndarray | None = None,
) -> np.ndarray:
    """The model of the module docstring on arrays, with explicit efficiencies (used by the fits too)."""
    peak = resolved.peak_flops
    compute_eff = np.array([efficiency[_compute_class(c)] for c in classes])
    compute = matmul_flops / (peak * compute_eff) + other_flops / (peak * efficiency["conv"])
    memory = nbytes * (resolved.element_bytes / GRAPH_ELEMENT_BYTES) / (
        resolved.memory_bandwidth_bps * efficiency["memory"]
    )
    count = np.ones(len(classes)) if kernels is None else np.asarray(kernels, dtype=float)
    seconds = resolved.dispatch_overhead_s * count + np.maximum(compute, memory)
    is_view = np.array([c == "view" for c in classes], dtype=bool)
    return np.where(is_view, VIEW_SECONDS, seconds)


def device_seconds(
    features: Sequence[NodeFeatures],
    spec: DeviceSpec,
    precision: str | None = None,
    kernels: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Seconds of each node on ``spec`` at ``precision`` (default: the device's), batch 1.

    Args:
        features: the nodes' :class:`~tiercut.profile.features.NodeFeatures`.
        spec: a calibrated device (:attr:`DeviceSpec.is_calibrated`).
        precision: ``fp32``, ``fp16`` or ``int8`` (None: ``spec.default_precision``).
        kernels: per node, how many layers it stands for (block granularity);
            default 1 each.
    """
    resolved = spec.resolve(precision)
    if resolved.efficiency is None:
        raise TiercutError(
            f"device {spec.name!r} has no achieved efficiencies; calibrate it ('tiercut devices calibrate') "
            "or predict it by roofline transfer from this host"
        )
    if kernels is not None and len(kernels) != len(features):
        raise TiercutError(f"{len(kernels)} kernel counts for {len(features)} nodes; give one per node")
    classes, matmul, other, nbytes = class_arrays(features)
    counts = None if kernels is None else np.asarray(kernels)
    return seconds_with(classes, matmul, other, nbytes, resolved, dict(resolved.efficiency), counts)


def bound_by(features: Sequence[NodeFeatures], spec: DeviceSpec, precision: str | None = None) -> list[str]:
    """Per node, ``"compute"``, ``"memory"`` or ``"view"``: which term of the model is larger on ``spec``."""
    resolved = spec.resolve(precision)
    if resolved.efficiency is None:
        raise TiercutError(f"device {spec.name!r} has no achieved efficiencies; calibrate it first")
    eff = resolved.efficiency
    out = []
    for f in features:
        cls = op_class(f)
        if cls == "view":
            out.append("view")
            continue
        compute = f.matmul_flops / (resolved.peak_flops * eff[_compute_class(cls)]) + f.other_flops / (
            resolved.peak_flops * eff["conv"]
        )
        memory = f.bytes_total * resolved.element_bytes / GRAPH_ELEMENT_BYTES / (resolved.memory_bandwidth_bps * eff["memory"])
        out.append("compute" if compute >= memory else "memory")
    return out


__all__ = ["NODE_CLASSES", "SHORT_REDUCTION", "bound_by", "class_arrays", "device_seconds", "op_class", "seconds_with"]
