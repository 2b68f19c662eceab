"""The tiled-stage term: a fused stack split into tiles computed in parallel.

A layer over :func:`tiercut.cost.evaluate`, not a second cost model. For a
plan with tiled stages (:class:`tiercut.spatial.problem.TiledPlan`) the rest
of the graph is evaluated by :func:`~tiercut.cost.evaluate` with every
stack layer placed on the stage's ``home`` device; then the stack's
sequential compute on ``home`` is replaced by the stage's schedule:

- **scatter**: ``home`` sends each remote tile the input region it needs
  (:meth:`~tiercut.spatial.stack.StackGeometry.input_region`, halo
  included; bytes ``out(u) * area / (H*W)`` of the stack input ``u``), one
  after another in tile order over the routed path (``tau`` of DESIGN.md);
- **parallel compute**: a tile on device ``d`` starts when its input has
  arrived and ``d`` is free (a device with several tiles runs them one after
  another) and takes ``sum_v fraction_v(tile) * c(v, d)`` over the stack's
  layers, ``fraction_v`` being the share of ``v``'s output positions the
  tile computes: the halo overlap is counted as redundant work, exactly the
  recomputation DeepThings' Fused Tile Partitioning pays (Zhao et al., IEEE
  TCAD 2018, Sec. IV-A);
- **gather**: each remote tile's output (``out(o) * area / (H*W)``) goes back
  to ``home`` over the routed path; ``home`` first sends, then computes its
  own tiles, then receives the others in the order they finish (it does one
  thing at a time, like the sequential model; the other devices run in
  parallel with it and with each other).

The stage time replaces ``sum_v c(v, home)`` in ``T``; compute energy and
price are charged per tile on its device, every scatter/gather hop charges
tx/rx energy at its ends and its price per byte, and the source's busy
times follow its own part of the schedule. Each tile device holds the
stack's parameters (memory). A stack layer pinned to a device (privacy)
may only be tiled onto that device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from tiercut.cost.model import Evaluation, constraint_violations, evaluate, objective_value
from tiercut.errors import TiercutError
from tiercut.problem import Problem
from tiercut.spatial.problem import SpatialProblem, Tile, TiledStage
from tiercut.spatial.stack import StackGeometry


@dataclass(frozen=True)
class TileTiming:
    """One tile's part of a stage schedule (seconds from the stage's start)."""

    tile: Tile
    in_bytes: int
    out_bytes: int
    arrive_s: float
    start_s: float
    compute_s: float
    finish_s: float
    done_s: float


@dataclass(frozen=True)
class StageTiming:
    """A stage's schedule and work.

    Attributes:
        stage_s: from the start of the scatter to the last tile gathered on ``home``.
        sequential_s: the sub-stack's time on ``home`` alone (what the stage replaces).
        work_fraction: the tiles' summed work over the whole sub-stack's, averaged
            over its layers (1.0: no halo overlap; 1.3: 30% redundant work).
        sends: every scatter/gather transfer as ``(bytes, from, to)``.
        violations: why the schedule cannot run (empty when it can).
    """

    stage: TiledStage
    stage_s: float
    sequential_s: float
    work_fraction: float
    tiles: tuple[TileTiming, ...]
    sends: tuple[tuple[int, str, str], ...] = ()
    violations: tuple[str, ...] = ()


@dataclass(frozen=True)
class TiledEvaluation:
    """The figures of a placement with tiled stages, and each stage's schedule."""

    evaluation: Evaluation
    stages: tuple[StageTiming, ...]

    @property
    def latency_s(self) -> float:
        return self.evaluation.latency_s


def check_stage(problem: SpatialProblem, stage: TiledStage) -> StackGeometry:
    """The stage's sub-stack geometry; raises a :class:`TiercutError` naming what is wrong with the stage."""
    geometry = stage.geometry(problem)
    names = set(problem.device_names)
    for device in [stage.home, *(t.device for t in stage.tiles)]:
        if device not in names:
            raise TiercutError(f"tiled stage uses unknown device {device!r}; devices are {', '.join(sorted(names))}")
    from tiercut.spatial.tiles import check_partition

    check_partition([t.region for t in stage.tiles], *geometry.output_hw)
    return geometry


def schedule_stage(problem: SpatialProblem, stage: TiledStage, geometry: StackGeometry | None = None) -> StageTiming:
    """The stage's scatter / parallel compute / gather schedule (module docstring)."""
    geometry = geometry if geometry is not None else check_stage(problem, stage)
    graph, routing = problem.graph, problem.routing
    in_h, in_w = geometry.input_hw
    out_h, out_w = geometry.output_hw
    in_node, out_node = graph[geometry.input_name], graph[geometry.output_name]
    pinned = problem.constraints.pinned
    violations: list[str] = []
    sends: list[tuple[int, str, str]] = []

    def tau(nbytes: int, a: str, b: str) -> float:
        seconds = routing.seconds(a, b, nbytes)
        if math.isinf(seconds):
            violations.append(f"tiled stage must send between {a!r} and {b!r}, which no path of links joins")
        sends.append((nbytes, a, b))
        return seconds

    rows, work = [], 0.0
    for tile in stage.tiles:
        fractions = geometry.work_fractions(tile.region)
        seconds = 0.0
        for name, fraction in fractions.items():
            c = problem.compute_s[name].get(tile.device)
            if c is None:
                violations.append(f"stack layer {name!r} cannot run on {tile.device!r}")
                c = math.inf
            seconds += fraction * c
            if name in pinned and pinned[name] != tile.device:
                violations.append(f"stack layer {name!r} is pinned to {pinned[name]!r} but tiled onto {tile.device!r}")
        work += sum(fractions.values()) / len(fractions)
        in_bytes = math.ceil(in_node.out_bytes * geometry.input_region(tile.region).area / (in_h * in_w))
        out_bytes = math.ceil(out_node.out_bytes * tile.region.area / (out_h * out_w))
        rows.append((tile, in_bytes, out_bytes, seconds))
    # scatter: home sends in tile order, then computes its own tiles
    send_clock, arrive = 0.0, []
    for tile, in_bytes, _, _ in rows:
        if tile.device == stage.home:
            arrive.append(None)
        else:
            send_clock += tau(in_bytes, stage.home, tile.device)
            arrive.append(send_clock)
    free: dict[str, float] = {stage.home: send_clock}
    starts, finishes = [], []
    for (tile, _, _, seconds), got in zip(rows, arrive, strict=True):
        start = max(free.get(tile.device, 0.0), send_clock if got is None else got)
        free[tile.device] = start + seconds
        starts.append(start)
        finishes.append(start + seconds)
    # gather: home receives, after its own tiles, in the order the others finish
    recv_clock = free[stage.home]
    done = list(finishes)
    for i in sorted(range(len(rows)), key=lambda k: (finishes[k], k)):
        tile, _, out_bytes, _ = rows[i]
        if tile.device != stage.home:
            recv_clock = max(recv_clock, finishes[i]) + tau(out_bytes, tile.device, stage.home)
            done[i] = recv_clock
    sequential = sum(problem.compute_s[name].get(stage.home, math.inf) for name in geometry.names)
    timings = tuple(
        TileTiming(tile, i_b, o_b, send_clock if a is None else a, s, c, f, d)
        for (tile, i_b, o_b, c), a, s, f, d in zip(rows, arrive, starts, finishes, done, strict=True)
    )
    stage_s = max([recv_clock, *done]) if not violations else math.inf
    return StageTiming(stage, stage_s, sequential, work, timings, tuple(sends), tuple(violations))


def stage_placement(problem: SpatialProblem, placement: Mapping[str, str], stages: Sequence[TiledStage]) -> dict[str, str]:
    """``placement`` with every tiled sub-stack's layers on its stage's home device."""
    full = dict(placement)
    for stage in stages:
        for name in stage.geometry(problem).names:
            full[name] = stage.home
    return full


def evaluate_tiled(problem: Problem, placement: Mapping[str, str], stages: Sequence[TiledStage]) -> TiledEvaluation:
    """Every figure of ``placement`` with ``stages`` tiled (see the module docstring).

    Requires the stages' sub-stacks to be disjoint and each stage's tiles to
    partition its output map; raises a :class:`TiercutError` otherwise. With
    no stages this is :func:`evaluate`.
    """
    if not stages:
        return TiledEvaluation(evaluate(problem, placement), ())
    if not isinstance(problem, SpatialProblem):
        raise TiercutError("a plan with tiled stages needs a problem with spatial_stacks; build it with --spatial auto")
    geometries = [check_stage(problem, stage) for stage in stages]
    seen: set[str] = set()
    for geometry in geometries:
        if seen & set(geometry.names):
            raise TiercutError("two tiled stages share layers; tile each layer in one stage at most")
        seen |= set(geometry.names)
    full = stage_placement(problem, placement, stages)
    base = evaluate(problem, full)
    if not base.valid:
        return TiledEvaluation(base, ())

    graph, routing, source = problem.graph, problem.routing, problem.source
    devices = {d.name: d for d in problem.devices}
    latency, energy_total, cost = base.latency_s, base.energy_total_j, base.cost
    busy_c, busy_tx, busy_rx = base.busy_compute_s, base.busy_tx_s, base.busy_rx_s
    names, uses = graph.param_table()
    held: dict[str, set[str]] = {d: set() for d in problem.device_names}
    for node in graph:
        held[full.get(node.name, source)].update(uses[node.name])
    violations: list[str] = []
    timings: list[StageTiming] = []
    for stage, geometry in zip(stages, geometries, strict=True):
        timing = schedule_stage(problem, stage, geometry)
        timings.append(timing)
        violations.extend(timing.violations)
        if timing.violations:
            continue
        home = devices[stage.home]
        for name in geometry.names:  # the sequential compute on home, which the stage replaces
            seconds = problem.compute_s[name][stage.home]
            energy_total -= home.power_compute_w * seconds
            cost -= home.price_per_s * seconds
            busy_c -= seconds if stage.home == source else 0.0
        latency += timing.stage_s - timing.sequential_s
        for t in timing.tiles:
            dev = devices[t.tile.device]
            energy_total += dev.power_compute_w * t.compute_s
            cost += dev.price_per_s * t.compute_s
            busy_c += t.compute_s if t.tile.device == source else 0.0
            held[t.tile.device].update(p for v in geometry.names for p in uses[v])
        for nbytes, a, b in timing.sends:
            path = routing.path(a, b, nbytes)
            cost += nbytes * path.price_per_byte
            for hop, t in zip(path.hops, path.hop_seconds(nbytes), strict=True):
                energy_total += (devices[hop.src].power_tx_w + devices[hop.dst].power_rx_w) * t
                busy_tx += t if hop.src == source else 0.0
                busy_rx += t if hop.dst == source else 0.0

    memory = {d: sum(names[p] for p in params) for d, params in held.items()}
    if violations:
        inf = math.inf
        bad = replace(base, latency_s=inf, energy_source_j=inf, energy_total_j=inf, cost=inf, objective_value=inf,
                      valid=False, violations=tuple(violations), memory_bytes=memory)  # fmt: skip
        return TiledEvaluation(bad, tuple(timings))
    src = devices[source]
    idle = latency - busy_c - busy_tx - busy_rx
    energy_source = src.power_compute_w * busy_c + src.power_tx_w * busy_tx + src.power_rx_w * busy_rx + src.power_idle_w * idle
    metrics = {"latency": latency, "energy_source": energy_source, "energy_total": energy_total, "cost": cost}
    evaluation = replace(
        base,
        latency_s=latency,
        energy_source_j=energy_source,
        energy_total_j=energy_total,
        cost=cost,
        compute_s=latency - base.transfer_s,
        busy_compute_s=busy_c,
        busy_tx_s=busy_tx,
        busy_rx_s=busy_rx,
        memory_bytes=memory,
        objective_value=objective_value(problem.objective, metrics),
        violations=tuple(constraint_violations(problem, full, metrics, memory)),
    )
    return TiledEvaluation(evaluation, tuple(timings))


__all__ = ["StageTiming", "TileTiming", "TiledEvaluation", "check_stage", "evaluate_tiled", "schedule_stage", "stage_placement"]
