"""Exhaustive search over upload orders: the exact reference for small models.

Not from a paper: the brute-force optimum the heuristics of IONN (Jeong et
al., SoCC'18) and Shin et al. (EMDL'19) are measured against. The units of
IONN's chain that carry target parameters are grouped and ordered in every
possible way (every ordered set partition: a unit goes up alone or together
with others, in any order), each candidate is scored with the analytic IONN
model (:mod:`tiercut.upload.analytic`: best placement of what has arrived,
queries back to back) and the best is kept. There are Fubini(k) candidates
for k units (4,683 for 6, 47,293 for 7), so it refuses more than
``max_units``.

Guarantee: optimal for ``metric`` among plans whose partitions are unions of
whole units (IONN's granularity), with ``n`` fixed to the default of the
target (or ``n_queries``).
"""

from __future__ import annotations

from collections.abc import Iterator

from tiercut.errors import TiercutError
from tiercut.upload.analytic import default_query_count, direct_upload_s, held_params, metrics_of, upload_seconds
from tiercut.upload.base import DEFAULT_OFFLOADING_PLANNER, GroupResult, UploadPlanner
from tiercut.upload.context import UploadContext

#: metric -> True when larger is better.
METRICS = {"time_for_n_queries": False, "mean_latency_during_upload": False, "queries_done_by_upload_end": True}


def ordered_partitions(items: list[int]) -> Iterator[list[list[int]]]:
    """Every ordered set partition of ``items`` (each block a list, blocks in upload order)."""
    if not items:
        yield []
        return
    n = len(items)
    for mask in range(1, 1 << n):
        first = [items[i] for i in range(n) if mask >> i & 1]
        rest = [items[i] for i in range(n) if not mask >> i & 1]
        for tail in ordered_partitions(rest):
            yield [first, *tail]


class ExhaustiveUploadPlanner(UploadPlanner):
    """Brute force over every grouping and order of the target's units (small models only)."""

    name = "exhaustive"
    summary = "every grouping and order of the target's units, scored by the IONN model (reference; small models)"
    reference = "brute-force reference for IONN (SoCC'18) and Shin et al. (EMDL'19)"

    def __init__(
        self,
        server: str | None = None,
        offloading: str = DEFAULT_OFFLOADING_PLANNER,
        n_queries: int | None = None,
        metric: str = "time_for_n_queries",
        max_units: int = 6,
    ) -> None:
        self.server = server
        self.offloading = offloading
        self.n_queries = n_queries
        self.metric = metric
        self.max_units = max_units

    def _check_settings(self) -> None:
        super()._check_settings()
        if self.metric not in METRICS:
            raise TiercutError(f"metric {self.metric!r} is not known; use one of {', '.join(METRICS)}")

    def _groups(self, ctx: UploadContext) -> GroupResult:
        heavy = [u.index for u in ctx.chain if u.param_bytes > 0]
        if len(heavy) > self.max_units:
            raise TiercutError(
                f"exhaustive upload search over {len(heavy)} units is too large (max_units={self.max_units}); "
                "use recursive-efficiency, or raise max_units"
            )
        server = ctx.server
        solver = ctx.solver

        def latency(units: frozenset[int]) -> float:
            return solver.latency({server: set(ctx.nodes_of(units))})

        stage0 = latency(frozenset())
        n = ctx.n_queries or default_query_count(stage0, direct_upload_s(ctx.problem, {server: ctx.target}))
        larger_better = METRICS[self.metric]
        best_key: float | None = None
        best: list[list[int]] = []
        count = 0
        for order in ordered_partitions(heavy):
            count += 1
            t = 0.0
            from_s, lat = [0.0], [stage0]
            have: frozenset[int] = frozenset()
            held: set[str] = set()
            for group in order:
                nodes = ctx.nodes_of(group)
                t = t + upload_seconds(ctx.problem, server, ctx.problem.graph.weight_bytes(nodes, held))
                held |= held_params(ctx.problem, nodes)
                have = have | frozenset(group)
                from_s.append(t)
                lat.append(latency(have))
            metrics = metrics_of(from_s, lat, t, n)
            value = {
                "time_for_n_queries": metrics.time_for_n_queries_s,
                "mean_latency_during_upload": metrics.mean_latency_during_upload_s,
                "queries_done_by_upload_end": float(metrics.queries_done_by_upload_end),
            }[self.metric]
            key = -value if larger_better else value
            if best_key is None or key < best_key:
                best_key, best = key, order
        groups = tuple(tuple(ctx.nodes_of(g)) for g in best)
        return GroupResult(groups, f"best of {count} orders by {self.metric} (n={n})")


__all__ = ["METRICS", "ExhaustiveUploadPlanner", "ordered_partitions"]
