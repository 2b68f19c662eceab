"""Tiled stages in a discrete-event simulation: many queries contending for devices, links and the home.

The cost model's tiled-stage term (:mod:`tiercut.cost.tiled`) times one
query alone. Here each query is a SimPy process following the same
schedule -- the home sends every remote tile its input region one after
another, computes its own tiles, then receives the others' outputs -- but
every step takes a shared resource, served first come first served:

- each device's processor (a tile's ``sum_v fraction_v * c(v, d)`` seconds);
- the home's sender and its receiver (one transfer at a time each way);
- each direction of each link on a transfer's routed path, hop by hop
  (store and forward, ``latency + bytes / bandwidth`` per hop).

One query alone reproduces the cost model's stage time exactly (a test
checks it); several queries queue at whatever is busiest. It is kept
apart from the single-model simulator so that engine can change freely.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from tiercut.cost.tiled import check_stage, schedule_stage
from tiercut.errors import TiercutError
from tiercut.spatial.problem import SpatialProblem, TiledStage


@dataclass(frozen=True)
class TiledSimResult:
    """Per query, in arrival order: when it arrived and how long its stage took (seconds)."""

    arrivals_s: tuple[float, ...]
    latencies_s: tuple[float, ...]
    alone_s: float

    @property
    def mean_latency_s(self) -> float:
        return statistics.fmean(self.latencies_s)

    @property
    def max_latency_s(self) -> float:
        return max(self.latencies_s)


def simulate_tiled_stage(problem: SpatialProblem, stage: TiledStage, arrivals_s: Sequence[float]) -> TiledSimResult:
    """Run one query of ``stage`` per arrival time and return each query's stage latency.

    Requires arrival times >= 0 (in any order); the stage is checked as by the cost model.
    """
    import simpy

    if not arrivals_s:
        raise TiercutError("simulate at least one query (give one arrival time)")
    if any(not (t >= 0) for t in arrivals_s):
        raise TiercutError(f"arrival times must be numbers >= 0, got {list(arrivals_s)!r}")
    geometry = check_stage(problem, stage)
    alone = schedule_stage(problem, stage, geometry)  # bytes, compute seconds per tile; its stage time for checks
    if alone.violations:
        raise TiercutError(f"the tiled stage cannot run: {alone.violations[0]}")
    routing, home = problem.routing, stage.home
    env = simpy.Environment()
    processor = {d: simpy.Resource(env, 1) for d in problem.device_names}
    sender, receiver = simpy.Resource(env, 1), simpy.Resource(env, 1)
    hops: dict[tuple[str, str], simpy.Resource] = {}
    latencies = [0.0] * len(arrivals_s)

    def transfer(nbytes: int, a: str, b: str):
        path = routing.path(a, b, nbytes)
        for hop, seconds in zip(path.hops, path.hop_seconds(nbytes), strict=True):
            link = hops.setdefault((hop.src, hop.dst), simpy.Resource(env, 1))
            with link.request() as granted:
                yield granted
                yield env.timeout(seconds)

    def query(q: int, at: float):
        yield env.timeout(at)
        tiles = alone.tiles
        arrived = [env.event() for _ in tiles]
        finished = [env.event() for _ in tiles]
        home_done = env.event()

        def compute(i: int):
            yield arrived[i]
            with processor[tiles[i].tile.device].request() as granted:
                yield granted
                yield env.timeout(tiles[i].compute_s)
            finished[i].succeed()

        def gather(i: int):
            yield finished[i]
            yield home_done
            with receiver.request() as granted:
                yield granted
                yield from transfer(tiles[i].out_bytes, tiles[i].tile.device, home)

        def scatter():
            for i, t in enumerate(tiles):
                if t.tile.device != home:
                    with sender.request() as granted:
                        yield granted
                        yield from transfer(t.in_bytes, home, t.tile.device)
                    arrived[i].succeed()
            for i, t in enumerate(tiles):  # the home's own tiles, after it has sent
                if t.tile.device == home:
                    arrived[i].succeed()

        processes = [env.process(compute(i)) for i in range(len(tiles))]
        env.process(scatter())
        own = [finished[i] for i, t in enumerate(tiles) if t.tile.device == home]
        if own:
            yield env.all_of(own)
        home_done.succeed()
        gathers = [env.process(gather(i)) for i, t in enumerate(tiles) if t.tile.device != home]
        yield env.all_of([*processes, *gathers])
        latencies[q] = env.now - at

    for q, at in enumerate(arrivals_s):
        env.process(query(q, float(at)))
    env.run()
    return TiledSimResult(tuple(float(a) for a in arrivals_s), tuple(latencies), alone.stage_s)


__all__ = ["TiledSimResult", "simulate_tiled_stage"]
