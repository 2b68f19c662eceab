"""Pipelined execution: several queries in flight across the tiers, predicted and measured.

With ``RunSettings.in_flight = N`` (``tiercut run --in-flight N``) the
client keeps up to N queries between issue and delivery
(:class:`tiercut.runtime.client.MigrationClient`), so while query ``i``
crosses the edge-cloud link, query ``i + 1`` runs on the edge and query
``i + 2`` on the client. Every device and every link direction is then a
pipeline *stage* that serves one query at a time: the client runs one
partition at a time, local workers run with one execution slot
(``--concurrent-partitions 1``) and a bounded queue (``--max-queued-runs``),
and an emulated link serialises the bytes of every message on it
(:mod:`tiercut.runtime.links`).

The prediction is the pipelined model of a stream of queries (DADS'
heavy-load case, Hu et al., INFOCOM 2019; the pipelined objective of
TREND-WANT): in steady state the stream goes as fast as its slowest stage,
so the predicted throughput is ``1 / max(stage seconds)``, where a device's
stage time is the compute of every node placed on it (plus the encode /
decode seconds of the compressed tensors it sends / receives) and a link
direction's stage time is ``bytes / bandwidth`` of every transfer hop over
it (the hop's latency is propagation: it delays a query without occupying
the link, as the runtime's emulated links do), all from the plan's problem
alone (:func:`pipeline_stages`). The latency of one query stays the
sequential ``T(x)``. With per-message costs in the problem (docs/cost-model.md
"Per-message costs": a device's ``message_s``, a link's
``message_overhead_bytes``), a device's stage also holds its seconds per
message sent or received and a link direction's the frame bytes of every
message over it -- what the runtime spends beyond the tensors and the node
times (measured by ``benchmarks/pipelining.py``'s ``calibrate_runtime``).

:func:`pipeline_stages` computes the stages from
:func:`tiercut.cost.model.evaluate`'s per-node compute and per-hop
transfer figures: the stages of :mod:`tiercut.cost.throughput`, which the
throughput objective's planners minimise the largest of.
:func:`measure_pipeline` reads a run's trace: the throughput of the
steady part of the stream and the latency percentiles under that load.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError


@dataclass(frozen=True)
class PipelineStage:
    """One stage of the pipelined model.

    Attributes:
        name: ``device`` for a device's compute, ``a->b`` for a link direction's transfers.
        kind: ``compute`` or ``link``.
        seconds: the stage's time per query.
    """

    name: str
    kind: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "seconds": self.seconds}


@dataclass(frozen=True)
class PipelinePrediction:
    """The pipelined model's figures of one placement.

    Attributes:
        stages: every stage with work, devices first then links (cost-model order).
        latency_s: one query's sequential latency ``T(x)``.
    """

    stages: tuple[PipelineStage, ...]
    latency_s: float

    @property
    def bottleneck(self) -> PipelineStage:
        """The slowest stage."""
        return max(self.stages, key=lambda s: s.seconds)

    @property
    def bottleneck_s(self) -> float:
        return self.bottleneck.seconds if self.stages else 0.0

    @property
    def throughput_qps(self) -> float:
        """Queries per second of a full pipeline: ``1 / bottleneck_s``."""
        return math.inf if self.bottleneck_s <= 0 else 1.0 / self.bottleneck_s

    def throughput_bound_qps(self, in_flight: int) -> float:
        """Queries per second with ``in_flight`` queries kept in flight: at most ``min(1 / bottleneck_s,
        in_flight / latency_s)`` (a closed system's asymptotic bounds, Lazowska et al., *Quantitative System
        Performance*, 1984, ch. 5): one query at a time goes at ``1 / T(x)``, a full pipeline at ``1 / B(x)``."""
        by_latency = math.inf if self.latency_s <= 0 else in_flight / self.latency_s
        return min(self.throughput_qps, by_latency)

    def latency_bound_s(self, in_flight: int) -> float:
        """Seconds from issue to answer with ``in_flight`` queries kept in flight: at least ``max(latency_s,
        in_flight * bottleneck_s)`` (the same bounds by Little's law: ``in_flight / throughput``)."""
        return max(self.latency_s, in_flight * self.bottleneck_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [s.to_dict() for s in self.stages],
            "bottleneck": self.bottleneck.name if self.stages else None,
            "bottleneck_s": self.bottleneck_s,
            "throughput_qps": self.throughput_qps,
            "latency_s": self.latency_s,
        }


def pipeline_stages(problem: Any, placement: Mapping[str, str]) -> PipelinePrediction:
    """The pipeline stages of ``placement`` under ``problem``'s cost model (see the module docstring).

    The stages are the cost model's own (:func:`tiercut.cost.model.evaluate`'s
    ``pipeline_stages``, :mod:`tiercut.cost.throughput`): a device's stage is
    ``sum c(v, d)`` over its nodes plus its transfers' encode / decode
    seconds (and ``message_s`` per message it sends or receives); a link direction's stage is ``bytes /
    bandwidth`` summed over the transfer hops on it (with each message's overhead bytes). Stages without work
    are left out. Raises a
    :class:`TiercutError` for a placement the cost model finds invalid.
    """
    from tiercut.cost.model import evaluate

    evaluation = evaluate(problem, placement)
    if not evaluation.valid:
        raise TiercutError(f"the placement cannot be pipelined: {'; '.join(evaluation.violations) or 'invalid'}")
    links = {f"{a}->{b}" for link in problem.links for a, b in ((link.a, link.b), (link.b, link.a))}
    stages = tuple(
        PipelineStage(name, "link" if name in links else "compute", float(seconds))
        for name, seconds in evaluation.pipeline_stages.items()
        if seconds > 0
    )
    return PipelinePrediction(stages, evaluation.latency_s)


def _percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) with linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class PipelineMeasurement:
    """What a run with queries in flight measured on one stage of its plan.

    Attributes:
        in_flight: the queries allowed in flight.
        peak_in_flight: the most that were.
        queries: queries counted (those that ran the stage remotely, no fallback, after the ones skipped).
        throughput_qps: completions per second over them (:func:`measure_pipeline`).
        latency_p50_s, latency_p95_s, latency_mean_s: per query, issue to answer.
        stage: the plan stage measured.
        in_order: every answer was delivered once, in query order.
    """

    in_flight: int
    peak_in_flight: int
    queries: int
    throughput_qps: float
    latency_p50_s: float
    latency_p95_s: float
    latency_mean_s: float
    stage: int
    in_order: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "queries": self.queries,
            "throughput_qps": self.throughput_qps,
            "latency_p50_s": self.latency_p50_s,
            "latency_p95_s": self.latency_p95_s,
            "latency_mean_s": self.latency_mean_s,
            "stage": self.stage,
            "in_order": self.in_order,
        }


def measure_pipeline(result: Any, stage: int | None = None, *, skip: int = 0) -> PipelineMeasurement:
    """Throughput and latency of ``result``'s queries on ``stage`` (default: the last stage any query ran).

    ``skip``: leave out that many of the stage's first completions (the
    pipeline filling up). Throughput counts the completions after them over
    the time since the last one left out (since the first counted query's
    issue when none is): queries finish in bursts when several share a link
    or a device, and timing from a burst's end keeps whole bursts in the
    window. Fallbacks (queries finished locally) are not counted.
    """
    records = list(result.queries)
    indices = [q.index for q in records]
    in_order = indices == sorted(set(indices))
    chosen = max((q.stage for q in records), default=0) if stage is None else stage
    on_stage = sorted((q for q in records if q.stage == chosen and not q.fallback), key=lambda q: q.end_s)
    counted = on_stage[skip:]
    throughput = math.nan
    if counted:
        since = on_stage[skip - 1].end_s if skip > 0 else min(q.start_s for q in counted)
        span = counted[-1].end_s - since
        throughput = len(counted) / span if span > 0 else math.nan
    latencies = [q.latency_s for q in counted]
    return PipelineMeasurement(
        in_flight=int(getattr(result, "in_flight", 1)),
        peak_in_flight=int(getattr(result, "peak_in_flight", 0)),
        queries=len(counted),
        throughput_qps=throughput,
        latency_p50_s=_percentile(latencies, 0.5),
        latency_p95_s=_percentile(latencies, 0.95),
        latency_mean_s=sum(latencies) / len(latencies) if latencies else math.nan,
        stage=chosen,
        in_order=in_order,
    )


__all__ = ["PipelineMeasurement", "PipelinePrediction", "PipelineStage", "measure_pipeline", "pipeline_stages"]
