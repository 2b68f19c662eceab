"""The geometry of a fused stack of spatially local layers (no torch needed).

A fused stack is a run of layers between one 4-D feature map coming in and
one going out in which every output position depends only on a window of
positions: convolutions and pooling (a :class:`~tiercut.spatial.geometry.Window`),
and pointwise layers (batch norm in eval mode, activations, residual adds,
channel concatenation). It may branch and join (ResNet's basic blocks): the
region a layer must compute is the hull of what all its consumers read.

:meth:`StackGeometry.regions` walks the stack backwards from an output tile
(DeepThings' Fused Tile Partitioning, Zhao et al., IEEE TCAD 2018): the
tile's own region at the output, then for each layer the region its
consumers need. A device given the input region of a tile computes the tile
with no exchange inside the stack. The geometry round-trips through JSON so
a plan's tiled figures are recomputable from the problem alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError
from tiercut.serialization import json_contract
from tiercut.spatial.geometry import Region, Window

WINDOW = "window"
POINTWISE = "pointwise"
KINDS = (WINDOW, POINTWISE)


@dataclass(frozen=True)
class StackStep:
    """One layer of a fused stack.

    Attributes:
        name: the layer's node name (the fx / layer-graph name).
        kind: ``"window"`` (convolution, pooling) or ``"pointwise"``.
        inputs: names of the stack values it reads (the stack input or earlier steps).
        out_hw: height and width of its output map.
        window: the sliding window of a ``"window"`` step.
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    out_hw: tuple[int, int]
    window: Window | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TiercutError(f"stack step {self.name!r} has kind {self.kind!r}; use one of {KINDS}")
        if (self.kind == WINDOW) != (self.window is not None):
            raise TiercutError(f"stack step {self.name!r}: a window step needs a window, a pointwise step none")
        if self.kind == WINDOW and len(self.inputs) != 1:
            raise TiercutError(f"stack step {self.name!r}: a window step reads exactly one input")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "kind": self.kind, "inputs": list(self.inputs), "out_hw": list(self.out_hw)}
        if self.window is not None:
            data["window"] = self.window.to_dict()
        return data

    @classmethod
    @json_contract("fused stack step", hint="write it with StackGeometry.to_dict of this tiercut")
    def from_dict(cls, data: Mapping[str, Any]) -> StackStep:
        try:
            window = data.get("window")
            return cls(
                name=str(data["name"]),
                kind=str(data["kind"]),
                inputs=tuple(str(i) for i in data["inputs"]),
                out_hw=(int(data["out_hw"][0]), int(data["out_hw"][1])),
                window=Window.from_dict(window) if window is not None else None,
            )
        except (KeyError, IndexError, TypeError, ValueError):
            raise TiercutError(f"stack step {dict(data)!r:.80} needs name, kind, inputs and out_hw") from None


@dataclass(frozen=True)
class StackGeometry:
    """A fused stack: its input map, its steps in topological order, its output step.

    Requires every step's inputs to be the stack input or an earlier step,
    and the output to be the last step.
    """

    input_name: str
    input_hw: tuple[int, int]
    steps: tuple[StackStep, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise TiercutError("a fused stack needs at least one layer")
        seen = {self.input_name: self.input_hw}
        for step in self.steps:
            for name in step.inputs:
                if name not in seen:
                    raise TiercutError(f"stack step {step.name!r} reads {name!r}, which is not earlier in the stack")
                if step.kind == POINTWISE and seen[name] != step.out_hw:
                    raise TiercutError(f"pointwise step {step.name!r} changes the map size {seen[name]} -> {step.out_hw}")
            if step.kind == WINDOW:
                expected = step.window.output_shape(*seen[step.inputs[0]])
                if expected != step.out_hw:
                    raise TiercutError(f"window step {step.name!r} makes {expected}, not the recorded {step.out_hw}")
            if step.name in seen:
                raise TiercutError(f"stack step name {step.name!r} is used twice")
            seen[step.name] = step.out_hw

    @property
    def output_name(self) -> str:
        return self.steps[-1].name

    @property
    def output_hw(self) -> tuple[int, int]:
        return self.steps[-1].out_hw

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def hw_of(self, name: str) -> tuple[int, int]:
        if name == self.input_name:
            return self.input_hw
        for step in self.steps:
            if step.name == name:
                return step.out_hw
        raise TiercutError(f"{name!r} is not a value of this fused stack")

    def regions(self, tile: Region) -> dict[str, Region]:
        """Region of every value (input included) needed to compute ``tile`` of the output.

        Ensures ``regions[output] == tile`` and every region lies inside its map.
        """
        height, width = self.output_hw
        if not Region.whole(height, width).contains(tile) or tile.area == 0:
            raise TiercutError(f"tile {tile.to_list()} is not a non-empty part of the {height}x{width} output")
        need: dict[str, Region] = {self.output_name: tile}
        for step in reversed(self.steps):
            if step.name not in need:
                continue  # nothing downstream reads it (cannot happen in a validated single-output stack)
            out = need[step.name]
            for name in step.inputs:
                if step.kind == WINDOW:
                    wanted, _ = step.window.input_region(out, *self.hw_of(name))
                else:
                    wanted = out
                need[name] = need[name].hull(wanted) if name in need else wanted
        return need

    def input_region(self, tile: Region) -> Region:
        return self.regions(tile)[self.input_name]

    def work_fractions(self, tile: Region) -> dict[str, float]:
        """Per step, the fraction of its whole-map output positions the tile computes.

        The cost model charges a tile ``fraction * c(v, d)`` for step ``v``;
        fractions over all tiles of a partition sum to more than 1 where
        halos overlap (the redundant work).
        """
        regions = self.regions(tile)
        out = {}
        for step in self.steps:
            h, w = step.out_hw
            out[step.name] = regions[step.name].area / float(h * w) if step.name in regions else 0.0
        return out

    def cut_points(self) -> list[str]:
        """Values a sub-stack may start after or end at: the input, and every step after which
        nothing earlier is read again (the only live value at that point), the output included."""
        position = {self.input_name: -1, **{s.name: i for i, s in enumerate(self.steps)}}
        last_use = {name: position[name] for name in position}
        for i, step in enumerate(self.steps):
            for name in step.inputs:
                last_use[name] = max(last_use[name], i)
        cuts, reach = [self.input_name], last_use[self.input_name]
        for i, step in enumerate(self.steps):
            if reach <= i:
                cuts.append(step.name)
            reach = max(reach, last_use[step.name])
        return cuts

    def segment(self, after: str, last: str) -> StackGeometry:
        """The sub-stack reading the value ``after`` and ending at step ``last`` (both cut points)."""
        cuts = self.cut_points()
        if after not in cuts or last not in cuts or cuts.index(after) >= cuts.index(last):
            raise TiercutError(
                f"sub-stack from {after!r} to {last!r} is not a run between two cut points of the stack; "
                f"cut points are {', '.join(cuts)}"
            )
        names = self.names
        lo = 0 if after == self.input_name else names.index(after) + 1
        hi = names.index(last) + 1
        if (after, last) == (self.input_name, self.output_name):
            return self
        return StackGeometry(after, self.hw_of(after), self.steps[lo:hi])

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input_name, "input_hw": list(self.input_hw), "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    @json_contract("fused stack", hint="pass the 'problem' object of 'tiercut plan --spatial auto --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> StackGeometry:
        try:
            return cls(
                input_name=str(data["input"]),
                input_hw=(int(data["input_hw"][0]), int(data["input_hw"][1])),
                steps=tuple(StackStep.from_dict(s) for s in data["steps"]),
            )
        except (KeyError, IndexError, TypeError, ValueError):
            raise TiercutError(f"fused stack {dict(data)!r:.80} needs input, input_hw and steps") from None


def redundant_work(geometry: StackGeometry, tiles: Sequence[Region], weights: Mapping[str, float] | None = None) -> float:
    """Extra work of computing ``tiles`` separately, as a fraction of the whole stack's work.

    ``weights`` gives each step's share of the work (e.g. its FLOPs); equal
    weights when absent. 0.0 means no halo overlap (e.g. pointwise-only
    stacks); it grows with the tile count (DeepThings, Sec. IV-A, weighs
    this overlap against the memory footprint).
    """
    weights = dict(weights) if weights is not None else {s.name: 1.0 for s in geometry.steps}
    whole = sum(weights.get(s.name, 0.0) for s in geometry.steps)
    if whole <= 0:
        return 0.0
    done = 0.0
    for tile in tiles:
        fractions = geometry.work_fractions(tile)
        done += sum(weights.get(name, 0.0) * f for name, f in fractions.items())
    return done / whole - 1.0
