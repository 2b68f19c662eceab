"""Tiled stages on real workers: scatter, parallel compute, gather, stitch; lost tiles recomputed.

A tiled stage (:class:`tiercut.spatial.problem.TiledStage`) runs one fused
stack as several tiles at once. Each tile's computation is an ordinary
module (:meth:`tiercut.spatial.tiles.FusedStack.tile_module`) exported to a
data-only program by :func:`~tiercut.runtime.artifact.build_program`, so a
worker loads it through the same allow-list, shape checks and verified
upload (content-addressed bundle, confirmation result) as any partition.
Every worker of the stage receives one bundle with the stack's weights and
*every* tile's program, so any of them can take over another's tile.

:meth:`TiledExecutor.run` is the home device's side of a query: it crops
each tile's input region (halo included) from the stack input, sends all
tiles at once (one ``Execute`` call per tile over the verified transport,
a one-step route), and stitches the returned tiles. A worker that fails
(killed, unreachable, timed out, refusing) is marked lost for the rest of
the query; its tile goes to the next worker of the stage that is still
alive, and when none is left it is computed here, on the home device,
which holds the whole model. The answer is the same numbers either way.

:func:`tiled_steps` is the same stage inside a migration run (``tiercut run
--tiled-plan``): the stage becomes route steps -- a *crop* step on the
stage's home (the stack input -> every tile's input region), one step per
tile on its device, all in one parallel group of the route
(:attr:`tiercut.runtime.route.Route.parallel`), and a *stitch* step on the
home (the tiles' outputs -> the stack output, concatenated). Crop, tiles
and stitch are ordinary programs (slices, the stack's layers, ``cat``)
uploaded by the migration client like any partition; the home holds every
tile's program too, so a tile whose worker is lost is recomputed there.
When the home is the client itself, the client runs crop and stitch (and
any lost tile) with the model it holds.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.runtime.artifact import BuiltProgram, PartitionBundle, build_program, sha256_hex
from tiercut.runtime.protocol import ConfirmationResult, Connection, RemoteError
from tiercut.runtime.route import Route, Step
from tiercut.spatial.geometry import Region
from tiercut.spatial.problem import SpatialProblem, Tile, TiledPlan, TiledStage
from tiercut.spatial.tiles import FusedStack, check_partition, crop, stack_from_fx, stitch

#: the name of the tile programs' input and output values
TILE_INPUT, TILE_OUTPUT = "x", "y"


def _tile_partition(module: Any, index: int) -> Any:
    """What :func:`build_program` exports: a module returning a 1-tuple, with a partition's names."""
    return _as_partition(lambda x: (module(x),), module, index, (TILE_INPUT,), (TILE_OUTPUT,))


def _as_partition(forward: Callable[..., tuple[Any, ...]], holds: Any, index: int, inputs: Sequence[str],
                  outputs: Sequence[str]) -> Any:  # fmt: skip
    """A partition-like object for :func:`build_program`: ``forward`` (returning a tuple) as a module holding
    ``holds`` (the modules whose weights it reads; None for none), with the given value names."""
    import torch

    class Piece(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if holds is not None:
                self.held = holds

        def forward(self, *args: Any) -> tuple[Any, ...]:
            return forward(*args)

    class Partition:
        graph_module = Piece().eval()
        input_names = tuple(inputs)
        output_names = tuple(outputs)

    Partition.index = index
    return Partition


def _crop_all(regions: Sequence[Region]) -> Callable[[Any], tuple[Any, ...]]:
    def run(x: Any) -> tuple[Any, ...]:
        return tuple(x[:, :, r.rows.start : r.rows.stop, r.cols.start : r.cols.stop] for r in regions)

    return run


def _stitch_order(regions: Sequence[Region]) -> list[list[int]]:
    """Tile indices as bands of rows, each band's tiles left to right (so ``cat`` along W, then H, stitches them).

    Requires the regions to be strips or a grid (every band spans the same rows); raises a
    :class:`TiercutError` for any other partition.
    """
    bands: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(regions):
        bands.setdefault((r.rows.start, r.rows.stop), []).append(i)
    order = [sorted(members, key=lambda i: regions[i].cols.start) for _, members in sorted(bands.items())]
    for members in order:
        cols = [regions[i].cols for i in members]
        if cols[0].start != 0 or any(a.stop != b.start for a, b in itertools.pairwise(cols)):
            raise TiercutError("the runtime stitches strips and grids; this stage's tiles are neither")
    return order


def _stitch_all(order: list[list[int]]) -> Callable[..., tuple[Any]]:
    def run(*parts: Any) -> tuple[Any]:
        import torch

        rows = [parts[m[0]] if len(m) == 1 else torch.cat([parts[i] for i in m], dim=3) for m in order]
        return (rows[0] if len(rows) == 1 else torch.cat(rows, dim=2),)

    return run


@dataclass(frozen=True)
class TiledSteps:
    """A tiled stage as route steps (crop, the tiles in parallel, stitch) and what runs them.

    Attributes:
        steps: crop, one step per tile, stitch (in route order).
        group: the tiles' (start, end) offsets within ``steps``: a parallel group.
        programs: device -> the programs its steps run (none for the client).
        local: step index -> how the client runs it itself (every step: crop, stitch, any lost tile).
    """

    steps: tuple[Step, ...]
    group: tuple[int, int]
    programs: Mapping[str, tuple[BuiltProgram, ...]]
    local: Mapping[int, Callable[[Mapping[str, Any]], Mapping[str, Any]]] = field(default_factory=dict)


def runtime_stack(captured: Any, problem: SpatialProblem, stage: TiledStage) -> FusedStack:
    """The torch layers of ``stage``'s sub-stack in a captured model (module granularity)."""
    from torch.fx.passes.shape_prop import ShapeProp

    gm = captured.graph_module
    if not all("tensor_meta" in n.meta for n in gm.graph.nodes if n.op != "output"):
        ShapeProp(gm).propagate(*captured.example_inputs)
    geometry = stage.geometry(problem)
    stack = stack_from_fx(gm, geometry.names)
    if stack.geometry.input_name != geometry.input_name or stack.geometry.output_name != geometry.output_name:
        raise TiercutError(f"the model's layers {geometry.input_name}..{geometry.output_name} are not the plan's stack; "
                           "plan and run the same model")  # fmt: skip
    return stack


def tiled_steps(
    stack: FusedStack,
    stage: TiledStage,
    example: Any,
    *,
    source: str,
    first_index: int,
    artifact_format: str = "aten-json",
) -> TiledSteps:
    """Route steps running ``stage`` (module docstring), their programs and the client's own runners.

    ``example``: the stack input on the model's example input (the programs are exported for its shape);
    step indices are ``first_index, first_index + 1, ...`` (after the stage's split's partitions).
    """
    import torch

    regions = [t.region for t in stage.tiles]
    check_partition(regions, *stack.geometry.output_hw)
    order = _stitch_order(regions)
    x_name, y_name = stack.geometry.input_name, stack.geometry.output_name
    needs = [stack.geometry.input_region(r) for r in regions]
    tile_in = tuple(f"{y_name}~tile{i}.in" for i in range(len(regions)))
    tile_out = tuple(f"{y_name}~tile{i}.out" for i in range(len(regions)))
    modules = [stack.tile_module(r) for r in regions]
    crop_index, stitch_index = first_index, first_index + len(regions) + 1
    pieces: list[tuple[Step, Any, Mapping[str, Any]]] = []
    crop_piece = _as_partition(_crop_all(needs), None, crop_index, (x_name,), tile_in)
    pieces.append((Step(crop_index, stage.home, None, (x_name,), tile_in), crop_piece, {x_name: example}))
    with torch.no_grad():
        crops = crop_piece.graph_module(example)
        outs = [m(c) for m, c in zip(modules, crops, strict=True)]
    for i, (tile, module) in enumerate(zip(stage.tiles, modules, strict=True)):
        piece = _as_partition(lambda x, m=module: (m(x),), module, first_index + 1 + i, (tile_in[i],), (tile_out[i],))
        pieces.append((Step(first_index + 1 + i, tile.device, None, (tile_in[i],), (tile_out[i],)), piece,
                       {tile_in[i]: crops[i]}))  # fmt: skip
    stitch_piece = _as_partition(_stitch_all(order), None, stitch_index, tile_out, (y_name,))
    stitch_inputs = dict(zip(tile_out, outs, strict=True))
    pieces.append((Step(stitch_index, stage.home, None, tile_out, (y_name,)), stitch_piece, stitch_inputs))

    programs: dict[str, list[BuiltProgram]] = {}
    steps: list[Step] = []
    local: dict[int, Callable[[Mapping[str, Any]], Mapping[str, Any]]] = {}
    for position, (step, piece, inputs) in enumerate(pieces):
        local[step.index] = _local_runner(piece)
        runs_on = [step.device]
        if 0 < position <= len(regions) and stage.home != step.device:
            runs_on.append(stage.home)  # the home recomputes a lost tile
        program_id = None
        built = None
        for device in runs_on:
            if device == source:
                continue
            built = built or build_program(piece, inputs, format=artifact_format)
            if all(b.program.manifest.program_id != built.program.manifest.program_id for b in programs.get(device, [])):
                programs.setdefault(device, []).append(built)
        if built is not None and step.device != source:
            program_id = built.program.manifest.program_id
        steps.append(Step(step.index, step.device, program_id, step.input_names, step.output_names))
    return TiledSteps(tuple(steps), (1, 1 + len(regions)), {d: tuple(p) for d, p in programs.items()}, local)


def _local_runner(piece: Any) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    def run(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        import torch

        with torch.no_grad():
            produced = piece.graph_module(*(inputs[n] for n in piece.input_names))
        return dict(zip(piece.output_names, produced, strict=True))

    return run


def read_tiled_plan(data: Mapping[str, Any]) -> tuple[SpatialProblem, TiledPlan]:
    """``{"problem", "plan"}`` of ``tiercut plan --spatial auto --json`` as a problem and a tiled plan."""
    from tiercut.plan.spatial import plan_from_json

    if not isinstance(data, Mapping) or not isinstance(data.get("problem"), Mapping) or not isinstance(data.get("plan"), Mapping):
        raise TiercutError("a tiled plan file holds the 'problem' and 'plan' of 'tiercut plan --spatial auto --json'")
    problem, plan = plan_from_json(dict(data))
    if not isinstance(plan, TiledPlan) or not plan.stages or not isinstance(problem, SpatialProblem):
        raise TiercutError("the plan has no tiled stages; plan with --spatial auto (or run it as an upload plan)")
    return problem, plan


def load_tiled_plan(path: Any, device_names: Sequence[str]) -> tuple[SpatialProblem, TiledPlan, Any]:
    """A ``tiercut plan --spatial auto --json`` file: its problem, its tiled plan and the direct upload plan that
    runs it (:func:`tiled_upload_plan`); its devices must be among ``device_names`` (the run's environment)."""
    from tiercut.datafiles import read_json_file

    problem, plan = read_tiled_plan(read_json_file(path, "tiled plan"))
    unknown = sorted(set(problem.device_names) - set(device_names))
    if unknown:
        raise TiercutError(f"tiled plan {path} uses device {unknown[0]!r}, which the environment lacks; run it with "
                           "the --env it was planned on")  # fmt: skip
    return problem, plan, tiled_upload_plan(problem, plan)


def tiled_upload_plan(problem: SpatialProblem, plan: TiledPlan) -> Any:
    """The direct upload plan of a tiled plan: stage 0 all-local; stage 1, needing one upload to every server,
    is the plan's placement with its tiled stages. A tile device gets the stack's layers in its upload."""
    from tiercut.runtime.migration import placement_plan

    holders: dict[str, list[str]] = {}
    for stage in plan.stages:
        names = stage.geometry(problem).names
        for device in stage.devices:
            if device != problem.source and device != stage.home:
                holders.setdefault(device, []).extend(names)
    return placement_plan(plan.placement, problem.source, latency_s=plan.latency_s, algorithm=f"{plan.algorithm}+tiles",
                          also_holds=holders)  # fmt: skip


@dataclass(frozen=True)
class TileRun:
    """How one tile of one query was computed.

    Attributes:
        index: the tile's position in the stage.
        planned: the device the plan gave it.
        ran_on: the device that computed it (``"local"``: the home device itself).
        seconds: from sending its input to holding its output.
        failures: ``device: error`` for every worker that failed it first.
    """

    index: int
    planned: str
    ran_on: str
    seconds: float
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class TiledQuery:
    """One tiled query: the stitched output and how each tile ran."""

    output: Any
    runs: tuple[TileRun, ...]
    wall_s: float

    @property
    def recomputed(self) -> list[TileRun]:
        return [r for r in self.runs if r.ran_on != r.planned]


class TiledExecutor:
    """The home device's side of a tiled stage over real workers.

    Args:
        stack: the fused stack (the model's own modules).
        tiles: each tile's device and output region (a partition of the output map).
        connections: device -> connection to its worker, for every tile device.
        home: the name this side uses in routes (not a worker's name).
        timeout_s: deadline of one tile's ``Execute`` call.
    """

    def __init__(
        self,
        stack: FusedStack,
        tiles: Sequence[Tile],
        connections: Mapping[str, Connection],
        *,
        home: str = "home",
        timeout_s: float = 60.0,
        label: str = "tiles",
    ) -> None:
        self.stack = stack
        self.tiles = tuple(tiles)
        self.connections = dict(connections)
        self.home = home
        self.timeout_s = timeout_s
        self.label = label
        check_partition([t.region for t in self.tiles], *stack.geometry.output_hw)
        missing = sorted({t.device for t in self.tiles} - set(self.connections))
        if missing:
            raise TiercutError(f"tile device {missing[0]!r} has no worker connection; give one for every tile device")
        if home in self.connections:
            raise TiercutError(f"the home name {home!r} is also a worker's; pick another")
        self._built: list[BuiltProgram] = []
        self._modules = [stack.tile_module(t.region) for t in self.tiles]

    @property
    def devices(self) -> list[str]:
        return list(dict.fromkeys(t.device for t in self.tiles))

    def build(self, example: Any) -> list[BuiltProgram]:
        """Export every tile's program for inputs shaped like ``example`` (the stack's input map)."""
        self._built = [
            build_program(_tile_partition(module, i), {TILE_INPUT: crop(example, self.stack.geometry.input_region(t.region))})
            for i, (module, t) in enumerate(zip(self._modules, self.tiles, strict=True))
        ]
        return self._built

    def bundle(self) -> PartitionBundle:
        """One bundle: the stack's weights and every tile's program (any worker can take any tile)."""
        if not self._built:
            raise TiercutError("build the tile programs first (TiledExecutor.build)")
        weights: dict[str, Any] = {}
        for built in self._built:
            weights.update(built.weights)
        nodes = tuple(self.stack.names)
        return PartitionBundle("", nodes, weights, tuple(b.program for b in self._built)).named(self.label)

    async def upload(self) -> dict[str, ConfirmationResult]:
        """Send the bundle to every tile device's worker; returns each worker's confirmation result."""
        bundle = self.bundle()
        data = bundle.to_bytes()
        sha = sha256_hex(data)
        results = await asyncio.gather(
            *(self.connections[d].upload(bundle.partition_id, data, sha, timeout_s=self.timeout_s) for d in self.devices)
        )
        return dict(zip(self.devices, results, strict=True))

    def _route(self, index: int, device: str) -> Route:
        program_id = self._built[index].program.manifest.program_id
        return Route((Step(0, device, program_id, (TILE_INPUT,), (TILE_OUTPUT,)),), (TILE_OUTPUT,), self.home)

    async def run(self, x: Any) -> TiledQuery:
        """Scatter, compute the tiles in parallel on the workers, gather and stitch (module docstring)."""
        if not self._built:
            raise TiercutError("build and upload the tile programs first (TiledExecutor.build, .upload)")
        batch, channels = self._built[0].program.manifest.tensor_inputs[0].shape[0], self.stack.input_channels()
        if tuple(x.shape) != (batch, channels, *self.stack.geometry.input_hw):
            raise TiercutError(
                f"stack input has shape {tuple(x.shape)}; the tile programs were built for "
                f"{(batch, channels, *self.stack.geometry.input_hw)}"
            )
        lost: set[str] = set()
        start = time.perf_counter()

        async def one(index: int) -> tuple[Any, TileRun]:
            tile = self.tiles[index]
            piece = crop(x, self.stack.geometry.input_region(tile.region))
            failures: list[str] = []
            began = time.perf_counter()
            candidates = [tile.device, *(d for d in self.devices if d != tile.device)]
            for device in candidates:
                if device in lost:
                    continue
                meta = {
                    "route": self._route(index, device).to_dict(),
                    "position": 0,
                    "chain": [self.home],
                    "wanted": [TILE_OUTPUT],
                    "from": self.home,
                }
                try:
                    reply = await self.connections[device].execute(meta, {TILE_INPUT: piece}, timeout_s=self.timeout_s)
                    value = reply.frame.values.get(TILE_OUTPUT)
                    if value is None:
                        raise RemoteError("DATA_LOSS", f"worker {device!r} did not return the tile")
                    return value, TileRun(index, tile.device, device, time.perf_counter() - began, tuple(failures))
                except RemoteError as exc:
                    lost.add(device)
                    failures.append(f"{device}: {exc}")
            value = await asyncio.to_thread(self._local, index, piece)
            return value, TileRun(index, tile.device, "local", time.perf_counter() - began, tuple(failures))

        results = await asyncio.gather(*(one(i) for i in range(len(self.tiles))))
        output = stitch(self.stack.output_shape(x.shape[0]), [t.region for t in self.tiles], [r[0] for r in results],
                        dtype=x.dtype)  # fmt: skip
        return TiledQuery(output, tuple(r[1] for r in results), time.perf_counter() - start)

    def _local(self, index: int, piece: Any) -> Any:
        import torch

        with torch.no_grad():
            return self._modules[index](piece)


__all__ = [
    "TILE_INPUT",
    "TILE_OUTPUT",
    "TileRun",
    "TiledExecutor",
    "TiledQuery",
    "TiledSteps",
    "load_tiled_plan",
    "read_tiled_plan",
    "runtime_stack",
    "tiled_steps",
    "tiled_upload_plan",
]
