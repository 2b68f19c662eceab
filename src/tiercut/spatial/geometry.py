"""Halo arithmetic: which input rows and columns an output tile needs.

A sliding-window layer (convolution or pooling) with kernel ``k``, stride
``s``, padding ``p`` and dilation ``d`` over an axis of ``n`` input elements
makes ``floor((n + 2p - d(k-1) - 1) / s) + 1`` outputs. Output ``o`` reads
the padded inputs ``o*s .. o*s + d(k-1)``, i.e. the unpadded inputs
``o*s - p .. o*s - p + d(k-1)``. An output interval ``[a, b)`` therefore
reads ``[a*s - p, (b-1)*s - p + d(k-1) + 1)``; the part of it outside
``[0, n)`` is the layer's own padding, which a tile re-creates explicitly
(``pad_lo``, ``pad_hi``) so the tile computes exactly the numbers the whole
layer computes. This is the backward step of DeepThings' Fused Tile
Partitioning (Zhao, Mirzazad Barijough and Gerstlauer, "DeepThings:
Distributed Adaptive Deep Learning Inference on Resource-Constrained IoT
Edge Clusters", IEEE TCAD 37(11):2348-2359, 2018, Sec. IV-A), applied layer
by layer from the last layer of a fused stack to its first.

Intervals are half-open ``[start, stop)``; regions are a row and a column
interval of a feature map (NCHW: rows are H, columns are W).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tiercut.errors import TiercutError
from tiercut.serialization import json_contract


@dataclass(frozen=True)
class Interval:
    """Half-open ``[start, stop)`` along one axis."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return max(0, self.stop - self.start)

    def hull(self, other: Interval) -> Interval:
        return Interval(min(self.start, other.start), max(self.stop, other.stop))

    def contains(self, other: Interval) -> bool:
        return self.start <= other.start and other.stop <= self.stop


@dataclass(frozen=True)
class Region:
    """A rectangle of a feature map: rows (H) by columns (W)."""

    rows: Interval
    cols: Interval

    @classmethod
    def of(cls, r0: int, r1: int, c0: int, c1: int) -> Region:
        return cls(Interval(r0, r1), Interval(c0, c1))

    @classmethod
    def whole(cls, height: int, width: int) -> Region:
        return cls.of(0, height, 0, width)

    @property
    def area(self) -> int:
        return self.rows.size * self.cols.size

    def hull(self, other: Region) -> Region:
        return Region(self.rows.hull(other.rows), self.cols.hull(other.cols))

    def contains(self, other: Region) -> bool:
        return self.rows.contains(other.rows) and self.cols.contains(other.cols)

    def to_list(self) -> list[int]:
        return [self.rows.start, self.rows.stop, self.cols.start, self.cols.stop]

    @classmethod
    def from_list(cls, values: Sequence[int]) -> Region:
        if len(values) != 4:
            raise TiercutError(f"a tile region is [row_start, row_stop, col_start, col_stop], got {list(values)!r}")
        r0, r1, c0, c1 = (int(v) for v in values)
        if not (r0 < r1 and c0 < c1):
            raise TiercutError(f"tile region {list(values)!r} is empty; give start < stop on both axes")
        return cls.of(r0, r1, c0, c1)


@dataclass(frozen=True)
class AxisWindow:
    """A sliding window along one axis."""

    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1

    def __post_init__(self) -> None:
        if self.kernel < 1 or self.stride < 1 or self.dilation < 1 or self.padding < 0:
            raise TiercutError(
                f"window kernel={self.kernel} stride={self.stride} padding={self.padding} "
                f"dilation={self.dilation} is invalid; kernel, stride and dilation must be >= 1, padding >= 0"
            )

    @property
    def span(self) -> int:
        """Inputs one output reads: ``d(k-1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    def output_size(self, n: int) -> int:
        """Outputs over ``n`` inputs (PyTorch's floor rule, ceil_mode off)."""
        return (n + 2 * self.padding - self.span) // self.stride + 1

    def input_interval(self, out: Interval, n: int) -> tuple[Interval, int, int]:
        """The inputs ``out`` reads, clipped to ``[0, n)``, and the padding cut off each side.

        Requires ``0 <= out.start < out.stop <= output_size(n)``; ensures the
        clipped interval padded by ``(pad_lo, pad_hi)`` gives exactly
        ``out.size`` outputs with padding 0, and ``pad_lo, pad_hi <= padding``.
        """
        n_out = self.output_size(n)
        if not (0 <= out.start < out.stop <= n_out):
            raise TiercutError(f"output interval [{out.start}, {out.stop}) is outside the layer's {n_out} outputs")
        lo = out.start * self.stride - self.padding
        hi = (out.stop - 1) * self.stride - self.padding + self.span
        pad_lo, pad_hi = max(0, -lo), max(0, hi - n)
        return Interval(max(lo, 0), min(hi, n)), pad_lo, pad_hi


@dataclass(frozen=True)
class Window:
    """A 2-D sliding window (convolution or pooling): rows then columns."""

    rows: AxisWindow
    cols: AxisWindow

    @classmethod
    def square(cls, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> Window:
        axis = AxisWindow(kernel, stride, padding, dilation)
        return cls(axis, axis)

    @classmethod
    def of(cls, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]) -> Window:
        return cls(
            AxisWindow(int(kernel[0]), int(stride[0]), int(padding[0]), int(dilation[0])),
            AxisWindow(int(kernel[1]), int(stride[1]), int(padding[1]), int(dilation[1])),
        )

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        return self.rows.output_size(height), self.cols.output_size(width)

    def input_region(self, out: Region, height: int, width: int) -> tuple[Region, tuple[int, int, int, int]]:
        """Input region ``out`` reads (clipped) and the pads ``(left, right, top, bottom)``.

        The pads are in ``torch.nn.functional.pad``'s order for the last two
        dimensions.
        """
        rows, top, bottom = self.rows.input_interval(out.rows, height)
        cols, left, right = self.cols.input_interval(out.cols, width)
        return Region(rows, cols), (left, right, top, bottom)

    def to_dict(self) -> dict[str, list[int]]:
        return {
            "kernel": [self.rows.kernel, self.cols.kernel],
            "stride": [self.rows.stride, self.cols.stride],
            "padding": [self.rows.padding, self.cols.padding],
            "dilation": [self.rows.dilation, self.cols.dilation],
        }

    @classmethod
    @json_contract("spatial window", hint="give kernel, stride, padding and dilation as [rows, cols]")
    def from_dict(cls, data: dict) -> Window:
        try:
            return cls.of(data["kernel"], data["stride"], data["padding"], data["dilation"])
        except (KeyError, IndexError, TypeError, ValueError):
            raise TiercutError(
                f"spatial window {data!r:.80} needs kernel, stride, padding and dilation as [rows, cols]"
            ) from None


# --------------------------------------------------------------------- partitions of an output map
def split_sizes(total: int, shares: Sequence[float]) -> list[int]:
    """Split ``total`` elements into ``len(shares)`` parts proportional to ``shares``.

    Largest-remainder rounding; every part gets at least one element when
    ``total >= len(shares)`` (CoEdge's workload split is proportional; a
    part of zero rows would be a device doing nothing, so the caller drops
    zero shares first).
    """
    if not shares:
        raise TiercutError("a split needs at least one share")
    if any(s <= 0 for s in shares):
        raise TiercutError(f"shares {list(shares)!r} must all be positive; drop a device instead of giving it 0")
    if total < len(shares):
        raise TiercutError(f"{total} rows/columns cannot be split into {len(shares)} non-empty parts; use fewer tiles")
    weight = float(sum(shares))
    spare = total - len(shares)  # one element each first, the rest proportionally
    exact = [spare * s / weight for s in shares]
    sizes = [1 + int(e) for e in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    for i in order[: total - sum(sizes)]:
        sizes[i] += 1
    return sizes


def _bounds(sizes: Sequence[int]) -> list[Interval]:
    out, at = [], 0
    for size in sizes:
        out.append(Interval(at, at + size))
        at += size
    return out


def grid_tiles(height: int, width: int, rows: int, cols: int) -> list[Region]:
    """A ``rows x cols`` grid over an ``height x width`` map, row-major (DeepThings' FTP grid)."""
    return [
        Region(r, c)
        for r in _bounds(split_sizes(height, [1.0] * rows))
        for c in _bounds(split_sizes(width, [1.0] * cols))
    ]


def strip_tiles(height: int, width: int, shares: Sequence[float]) -> list[Region]:
    """Horizontal strips of rows proportional to ``shares`` (CoEdge's split along the height)."""
    return [Region(r, Interval(0, width)) for r in _bounds(split_sizes(height, shares))]
