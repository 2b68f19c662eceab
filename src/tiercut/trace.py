"""One query trace for simulated and measured runs, and their point-by-point comparison.

The simulator (:mod:`tiercut.sim`) and the runtime client
(:mod:`tiercut.runtime.client`) both record every query as a
:class:`QueryRecord`: when it started and ended, which upload stage and
placement it used, the bytes it moved, and (when recorded) its
:class:`Span` s, the compute on each device and the transfers between them.
Each producer fills what it knows: the simulator its energy, the runtime its
fallbacks, errors and output checks; a field a producer cannot know keeps its
default (NaN, empty, None).

:func:`compare_traces` matches a measured run's queries with a simulation's
of the same problem by query index and reports, per query, the latency
difference and each device's compute seconds on both sides, per upload
stage the mean latencies, and summary statistics of the differences.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError

#: the kinds of :class:`Span`.
SPAN_KINDS = ("compute", "transfer", "relay")


@dataclass(frozen=True, slots=True)
class Span:
    """One piece of a query's work.

    Attributes:
        kind: ``compute`` (layers ran on ``device``), ``transfer`` (tensors
            sent from ``device`` to ``peer``), ``relay`` (a message passed on
            by ``device`` to ``peer``, nothing computed; runtime only) or
            ``message`` (the per-message work of one end, ``where``, of a hop
            from ``device`` to ``peer``; ``work_s`` its ``message_s``;
            simulator only).
        device: where it computed, or the sender.
        start_s, end_s: bounds in the trace's seconds (since its t = 0).
        peer: the receiver of a transfer or relay ("" for compute).
        nodes: the layers run, or the tensors moved (when known).
        work_s: seconds of computation (compute; the simulator's work, the runtime's measured execution).
        nbytes: bytes moved (transfer).
        where: the resource it used in the simulator (a device, or a link's channel key); "" in measured traces.
    """

    kind: str
    device: str
    start_s: float
    end_s: float
    peer: str = ""
    nodes: tuple[str, ...] = ()
    work_s: float = 0.0
    nbytes: int = 0
    where: str = ""

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "device": self.device,
            "peer": self.peer,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "nodes": list(self.nodes),
            "work_s": self.work_s,
            "bytes": self.nbytes,
            "where": self.where,
        }


@dataclass(slots=True)
class QueryRecord:
    """One query, simulated or measured.

    Attributes:
        user: who issued it (the simulated user; the client device of a measured run).
        index: its number among the user's queries (0-based, issue order).
        start_s, end_s: issue and completion times (seconds since the trace's t = 0).
        stage: index of the upload stage it used (-1: a stage off the plan's
            order, solved on the fly by the simulator; -2: no upload plan).
        placement: node -> device it ran with (shared with every query of the stage).
        devices: the devices it ran on (measured: only the client after a fallback).
        planned_latency_s: the cost model's latency of its stage (NaN when not known).
        bytes_sent, bytes_received: bytes the client (the source device) sent
            and received for it (simulated: tensor bytes; measured: frame bytes).
        bytes_moved: bytes sent between any two devices (simulated: tensor
            bytes on every hop; measured: the client's frames only, the
            bytes it sees, ``bytes_sent + bytes_received``).
        energy_source_j, energy_total_j: the client's and every device's
            energy for it (simulated; NaN in measured traces).
        fallback: it finished locally after a worker failed (measured).
        error: why it fell back or failed ("" when it did not).
        output_matches: its output equals the whole model's (measured with
            output checking; None when not checked).
        spans: its compute and transfers (None when not recorded).
        exit: the early exit it left at (a plan with exits; "" otherwise).
        transfers: measured with exits: each tensor transfer between devices as
            (from, to, tensor bytes), forwards and their replies on every hop.
    """

    user: str
    index: int
    start_s: float
    end_s: float = math.nan
    stage: int = -2
    placement: Mapping[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    planned_latency_s: float = math.nan
    bytes_sent: int = 0
    bytes_received: int = 0
    bytes_moved: int = 0
    energy_source_j: float = math.nan
    energy_total_j: float = math.nan
    fallback: bool = False
    error: str = ""
    output_matches: bool | None = None
    spans: tuple[Span, ...] | None = None
    exit: str = ""
    transfers: tuple[tuple[str, str, int], ...] = ()

    @property
    def latency_s(self) -> float:
        return self.end_s - self.start_s

    def compute_s_by_device(self) -> dict[str, float]:
        """Seconds of compute spans per device (empty when no spans were recorded)."""
        out: dict[str, float] = {}
        for span in self.spans or ():
            if span.kind == "compute":
                out[span.device] = out.get(span.device, 0.0) + span.seconds
        return out

    def to_dict(self, with_placement: bool = False) -> dict[str, Any]:
        """A JSON object (non-finite figures as None); the placement only when asked (it is per stage)."""
        data: dict[str, Any] = {
            "user": self.user,
            "index": self.index,
            "start_s": _finite(self.start_s),
            "end_s": _finite(self.end_s),
            "latency_s": _finite(self.latency_s),
            "stage": self.stage,
            "devices": list(self.devices),
            "planned_latency_s": _finite(self.planned_latency_s),
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "bytes_moved": self.bytes_moved,
            "energy_source_j": _finite(self.energy_source_j),
            "energy_total_j": _finite(self.energy_total_j),
            "fallback": self.fallback,
            "error": self.error,
            "output_matches": self.output_matches,
        }
        if with_placement:
            data["placement"] = dict(self.placement)
        if self.spans is not None:
            data["spans"] = [s.to_dict() for s in self.spans]
        if self.exit:
            data["exit"] = self.exit
            data["transfers"] = [list(t) for t in self.transfers]
        return data


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class QueryDifference:
    """One query as measured and as simulated (differences are measured minus simulated).

    ``compute_s`` maps each device to its (measured, simulated) compute
    seconds, for devices with a compute span on either side (empty when a
    side recorded no spans).
    """

    index: int
    measured_stage: int
    simulated_stage: int
    measured_latency_s: float
    simulated_latency_s: float
    compute_s: Mapping[str, tuple[float, float]]

    @property
    def difference_s(self) -> float:
        return self.measured_latency_s - self.simulated_latency_s

    @property
    def ratio(self) -> float:
        """Measured over simulated latency (inf when the simulation took no time)."""
        return self.measured_latency_s / self.simulated_latency_s if self.simulated_latency_s > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "measured_stage": self.measured_stage,
            "simulated_stage": self.simulated_stage,
            "measured_latency_s": self.measured_latency_s,
            "simulated_latency_s": self.simulated_latency_s,
            "difference_s": self.difference_s,
            "ratio": _finite(self.ratio),
            "compute_s": {d: list(v) for d, v in self.compute_s.items()},
        }


@dataclass(frozen=True)
class StageDifference:
    """One upload stage: the mean latency of the queries that used it on each side."""

    stage: int
    measured_queries: int
    simulated_queries: int
    measured_mean_s: float
    simulated_mean_s: float

    @property
    def difference_s(self) -> float:
        return self.measured_mean_s - self.simulated_mean_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "measured_queries": self.measured_queries,
            "simulated_queries": self.simulated_queries,
            "measured_mean_s": _finite(self.measured_mean_s),
            "simulated_mean_s": _finite(self.simulated_mean_s),
            "difference_s": _finite(self.difference_s),
        }


@dataclass(frozen=True)
class TraceComparison:
    """A measured trace against a simulated one, query by query (see :func:`compare_traces`).

    Attributes:
        queries: the matched queries in index order.
        stages: per upload stage (sorted), the mean latencies on each side.
        measured_only, simulated_only: indices present on one side only.
        same_stage: matched queries that used the same stage on both sides.
        mean_difference_s, median_abs_difference_s, p95_abs_difference_s, max_abs_difference_s:
            statistics of the per-query latency differences (measured minus simulated).
        median_ratio: median of measured over simulated latency.
    """

    queries: tuple[QueryDifference, ...]
    stages: tuple[StageDifference, ...]
    measured_only: tuple[int, ...]
    simulated_only: tuple[int, ...]
    same_stage: int
    mean_difference_s: float
    median_abs_difference_s: float
    p95_abs_difference_s: float
    max_abs_difference_s: float
    median_ratio: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "matched": len(self.queries),
            "measured_only": list(self.measured_only),
            "simulated_only": list(self.simulated_only),
            "same_stage": self.same_stage,
            "mean_difference_s": _finite(self.mean_difference_s),
            "median_abs_difference_s": _finite(self.median_abs_difference_s),
            "p95_abs_difference_s": _finite(self.p95_abs_difference_s),
            "max_abs_difference_s": _finite(self.max_abs_difference_s),
            "median_ratio": _finite(self.median_ratio),
            "stages": [s.to_dict() for s in self.stages],
            "queries": [q.to_dict() for q in self.queries],
        }


def _by_index(records: Sequence[QueryRecord], side: str) -> dict[int, QueryRecord]:
    users = {r.user for r in records}
    if len(users) > 1:
        raise TiercutError(
            f"the {side} trace holds queries of {len(users)} users ({', '.join(sorted(users))}); "
            "compare one user's queries at a time"
        )
    out: dict[int, QueryRecord] = {}
    for record in records:
        if record.index in out:
            raise TiercutError(f"the {side} trace holds query {record.index} twice; give each query its own index")
        if math.isfinite(record.end_s):
            out[record.index] = record
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def compare_traces(measured: Sequence[QueryRecord], simulated: Sequence[QueryRecord]) -> TraceComparison:
    """Match ``measured`` and ``simulated`` queries of one user by index and compare them.

    Queries that did not complete (a NaN ``end_s``) are left out; an index
    on one side only is listed in ``measured_only`` / ``simulated_only``.
    Raises :class:`TiercutError` when a trace mixes users or repeats an
    index, or when no query matches.
    """
    mine = _by_index(measured, "measured")
    theirs = _by_index(simulated, "simulated")
    common = sorted(mine.keys() & theirs.keys())
    if not common:
        raise TiercutError(
            f"no query index is in both traces (measured {len(mine)}, simulated {len(theirs)} complete queries); "
            "simulate the same number of queries as were measured"
        )
    diffs = []
    for index in common:
        m, s = mine[index], theirs[index]
        m_compute, s_compute = m.compute_s_by_device(), s.compute_s_by_device()
        compute = (
            {d: (m_compute.get(d, 0.0), s_compute.get(d, 0.0)) for d in sorted(m_compute.keys() | s_compute.keys())}
            if m.spans is not None and s.spans is not None
            else {}
        )
        diffs.append(QueryDifference(index, m.stage, s.stage, m.latency_s, s.latency_s, compute))
    stages = []
    for stage in sorted({mine[i].stage for i in common} | {theirs[i].stage for i in common}):
        m_lat = [mine[i].latency_s for i in common if mine[i].stage == stage]
        s_lat = [theirs[i].latency_s for i in common if theirs[i].stage == stage]
        stages.append(
            StageDifference(
                stage, len(m_lat), len(s_lat),
                statistics.fmean(m_lat) if m_lat else math.nan, statistics.fmean(s_lat) if s_lat else math.nan,
            )
        )
    differences = [d.difference_s for d in diffs]
    absolute = [abs(x) for x in differences]
    ratios = [d.ratio for d in diffs if math.isfinite(d.ratio)]
    return TraceComparison(
        queries=tuple(diffs),
        stages=tuple(stages),
        measured_only=tuple(sorted(mine.keys() - theirs.keys())),
        simulated_only=tuple(sorted(theirs.keys() - mine.keys())),
        same_stage=sum(1 for d in diffs if d.measured_stage == d.simulated_stage),
        mean_difference_s=statistics.fmean(differences),
        median_abs_difference_s=statistics.median(absolute),
        p95_abs_difference_s=_percentile(absolute, 0.95),
        max_abs_difference_s=max(absolute),
        median_ratio=statistics.median(ratios) if ratios else math.nan,
    )


__all__ = [
    "SPAN_KINDS",
    "QueryDifference",
    "QueryRecord",
    "Span",
    "StageDifference",
    "TraceComparison",
    "compare_traces",
]
