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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError
from tiercut.runtime.artifact import BuiltProgram, PartitionBundle, build_program, sha256_hex
from tiercut.runtime.protocol import ConfirmationResult, Connection, RemoteError
from tiercut.runtime.route import Route, Step
from tiercut.spatial.problem import Tile
from tiercut.spatial.tiles import FusedStack, check_partition, crop, stitch

#: the name of the tile programs' input and output values
TILE_INPUT, TILE_OUTPUT = "x", "y"


def _tile_partition(module: Any, index: int) -> Any:
    """What :func:`build_program` exports: a module returning a 1-tuple, with a partition's names."""
    import torch

    class TilePartition(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tile = module

        def forward(self, x: Any) -> tuple[Any]:
            return (self.tile(x),)

    class Partition:
        graph_module = TilePartition().eval()
        input_names = (TILE_INPUT,)
        output_names = (TILE_OUTPUT,)

    Partition.index = index
    return Partition


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


__all__ = ["TILE_INPUT", "TILE_OUTPUT", "TileRun", "TiledExecutor", "TiledQuery"]
