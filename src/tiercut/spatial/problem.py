"""A problem whose graph has fused stacks a planner may split into tiles, and a plan that does.

:class:`SpatialProblem` is a :class:`~tiercut.problem.Problem` plus the
geometry of the fused stacks of its graph (``problem.spatial_stacks`` in
JSON); :class:`TiledPlan` is a :class:`~tiercut.problem.Plan` plus its tiled
stages (``plan.tiled_stages``): for each stage the stack, the ``home``
device that scatters the tiles' inputs and gathers their outputs, and each
tile's device and output region. The plan's ``placement`` puts the stack's
nodes on the home device (so a reader that knows nothing of tiles still sees
a whole placement); its figures are the tiled cost model's
(:func:`tiercut.cost.tiled.evaluate_tiled`) and anyone can recompute them
from the problem JSON alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from tiercut.errors import TiercutError
from tiercut.problem import SCHEMA_VERSION, Plan, Problem
from tiercut.serialization import json_contract
from tiercut.spatial.geometry import Region
from tiercut.spatial.stack import StackGeometry


@dataclass(frozen=True)
class SpatialProblem(Problem):
    """A problem plus the fused stacks of its graph (candidates for tiling).

    Requires every stack's layers and input to be nodes of the graph and
    the stacks' layers to be disjoint (a planner tiles sub-stacks of them).

    A subclass rather than a wrapper: every consumer of a :class:`Problem`
    (the cost model, every layer-only planner, the simulator) takes it as
    it is, and only the code that tiles reads :attr:`stacks`.
    """

    stacks: tuple[StackGeometry, ...] = field(default=())

    def __post_init__(self) -> None:
        super().__post_init__()
        names = {n.name for n in self.graph}
        taken: set[str] = set()
        for i, stack in enumerate(self.stacks):
            missing = [v for v in [stack.input_name, *stack.names] if v not in names]
            if missing:
                raise TiercutError(f"spatial stack {i} names {missing[0]!r}, which is not a node of the graph")
            if taken & set(stack.names):
                raise TiercutError(f"spatial stack {i} shares layers with an earlier stack; stacks must be disjoint")
            taken |= set(stack.names)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "spatial_stacks": [s.to_dict() for s in self.stacks]}

    @classmethod
    @json_contract("problem", version=SCHEMA_VERSION, hint="pass the 'problem' object of 'tiercut plan --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> SpatialProblem:
        base = Problem.from_dict(data)
        stacks = tuple(StackGeometry.from_dict(s) for s in data.get("spatial_stacks", ()))
        return cls.of(base, stacks)

    @classmethod
    def of(cls, problem: Problem, stacks: tuple[StackGeometry, ...]) -> SpatialProblem:
        """``problem`` with ``stacks`` attached."""
        return cls(**{f.name: getattr(problem, f.name) for f in fields(Problem) if f.init}, stacks=tuple(stacks))


@dataclass(frozen=True)
class Tile:
    """One tile of a stage: the device computing it and its region of the stack's output map."""

    device: str
    region: Region

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "region": self.region.to_list()}

    @classmethod
    @json_contract("tile", hint="give a device and a region [r0, r1, c0, c1]")
    def from_dict(cls, data: Mapping[str, Any]) -> Tile:
        try:
            return cls(str(data["device"]), Region.from_list(data["region"]))
        except (KeyError, TypeError):
            raise TiercutError(f"tile {dict(data)!r:.80} needs a device and a region [r0, r1, c0, c1]") from None


@dataclass(frozen=True)
class TiledStage:
    """One fused (sub-)stack run as tiles.

    Attributes:
        stack: index into ``SpatialProblem.stacks``.
        input, output: the sub-stack's first value read and last layer (cut
            points of that stack; :meth:`StackGeometry.segment`).
        home: the device that scatters the tiles' inputs and gathers their outputs.
        tiles: each tile's device and region of the sub-stack's output map.
    """

    stack: int
    input: str
    output: str
    home: str
    tiles: tuple[Tile, ...]

    @property
    def devices(self) -> list[str]:
        return list(dict.fromkeys(t.device for t in self.tiles))

    def geometry(self, problem: SpatialProblem) -> StackGeometry:
        if not 0 <= self.stack < len(problem.stacks):
            raise TiercutError(f"tiled stage names stack {self.stack}; the problem has {len(problem.stacks)} spatial stacks")
        return problem.stacks[self.stack].segment(self.input, self.output)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "input": self.input,
            "output": self.output,
            "home": self.home,
            "tiles": [t.to_dict() for t in self.tiles],
        }

    @classmethod
    @json_contract("tiled stage", hint="pass the 'plan' object of 'tiercut plan --spatial auto --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> TiledStage:
        try:
            return cls(
                int(data["stack"]),
                str(data["input"]),
                str(data["output"]),
                str(data["home"]),
                tuple(Tile.from_dict(t) for t in data["tiles"]),
            )
        except (KeyError, TypeError, ValueError):
            raise TiercutError(f"tiled stage {dict(data)!r:.80} needs stack, input, output, home and tiles") from None


@dataclass(frozen=True)
class TiledPlan(Plan):
    """A plan with tiled stages; its figures are the tiled cost model's."""

    stages: tuple[TiledStage, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "tiled_stages": [s.to_dict() for s in self.stages]}

    @classmethod
    @json_contract("plan", version=SCHEMA_VERSION, hint="pass the 'plan' object of 'tiercut plan --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> TiledPlan:
        return cls.of(Plan.from_dict(data), tuple(TiledStage.from_dict(s) for s in data.get("tiled_stages", ())))

    @classmethod
    def of(cls, plan: Plan, stages: tuple[TiledStage, ...]) -> TiledPlan:
        """``plan`` with ``stages`` attached (its figures must be the tiled cost model's for them)."""
        return cls(**{f.name: getattr(plan, f.name) for f in fields(Plan) if f.init}, stages=tuple(stages))
