"""The IONN model of uploading (docs/DESIGN.md), recomputable from a problem and partitions alone.

Jeong et al., "IONN: Incremental Offloading of Neural Network Computations
from Mobile Devices to Edge Servers", SoCC'18, and the migration seed
(dnn-migration-in-iots, "Running Phase"): the client holds the whole model;
a server holds none of its parameters at first. Partitions P3 go up one
after another from the client to the server, each along the path of links
that minimises its own time (:mod:`tiercut.cost.routing`: the direct link,
or relays that forward it), taking ``latency + param_bytes / bandwidth`` per
hop. A partition carries the parameters its nodes use that no earlier
partition carried to that server (a parameter shared by several nodes goes
up once). Queries are issued back to back from t = 0; a query that starts at
``t`` runs with the best placement among those whose server-side nodes have
all their parameters on that server by ``t`` (a node without parameters is
available everywhere; arrival at exactly ``t`` counts).

- :func:`best_placement`: the lowest-latency placement given what has
  arrived where (exact: min-cut with two devices, the chain DP otherwise),
  its latency from :func:`tiercut.cost.evaluate`;
- :func:`timeline`: partitions' bytes, upload and arrival times;
- :func:`build_stages`: stage 0 and one stage per arrival (several servers'
  uploads merged, each server's going up in parallel on its own link);
- :func:`query_schedule` and :func:`upload_metrics`: queries back to back,
  queries done by the end of the upload, time for ``n`` queries, mean latency
  while uploading;
- :func:`evaluate_upload`: all of the above from a problem, a server and
  node groups; :func:`check_upload_plan` recomputes a plan and names the
  first thing that disagrees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace

from tiercut.cost import evaluate
from tiercut.errors import TiercutError
from tiercut.problem import Constraints, Objective, Problem
from tiercut.upload.types import Stage, UploadMetrics, UploadPartition, UploadPlan, done_by, starts_before

#: relative tolerance of :func:`check_upload_plan`.
CHECK_RTOL = 1e-9

Availability = Mapping[str, AbstractSet[str]]


def held_params(problem: Problem, nodes: Iterable[str]) -> frozenset[str]:
    """The parameter names uploading ``nodes`` puts on a server."""
    _, uses = problem.graph.param_table()
    return frozenset(p for n in nodes if n in uses for p in uses[n])


def runnable(problem: Problem, available: Availability) -> dict[str, frozenset[str]]:
    """server -> the nodes with parameters whose every parameter is there (uploaded with them or another node)."""
    _, uses = problem.graph.param_table()
    out = {}
    for server, nodes in available.items():
        held = held_params(problem, nodes)
        out[server] = frozenset(n for n, params in uses.items() if params and set(params) <= held)
    return out


def availability_key(problem: Problem, available: Availability) -> tuple[tuple[str, frozenset[str]], ...]:
    """A hashable key of what matters in ``available``: the nodes with parameters runnable on each server."""
    key = []
    for server, nodes in sorted(runnable(problem, available).items()):
        if nodes:
            key.append((server, nodes))
    return tuple(key)


def stage_problem(problem: Problem, available: Availability) -> Problem:
    """``problem`` where a node with parameters may run only on the source or where its parameters have arrived.

    The objective becomes latency (queries are what the IONN model times);
    pinned nodes stay pinned; memory and budgets are dropped (the uploaded
    nodes are the plan's target, which the offloading plan checked).
    """
    where: dict[str, set[str]] = {}
    for server, nodes in runnable(problem, available).items():
        for node in nodes:
            where.setdefault(node, set()).add(server)
    _, uses = problem.graph.param_table()
    compute: dict[str, dict[str, float]] = {}
    for node in problem.graph:
        if node.is_input:
            continue
        row = problem.compute_s[node.name]
        if uses[node.name]:
            allowed = where.get(node.name, set()) | {problem.source}
            compute[node.name] = {d: s for d, s in row.items() if d in allowed}
        else:
            compute[node.name] = dict(row)
    return replace(
        problem,
        compute_s=compute,
        objective=Objective("latency"),
        constraints=Constraints(memory=False, pinned=dict(problem.constraints.pinned)),
    )


def best_placement(problem: Problem, available: Availability) -> dict[str, str]:
    """The lowest-latency placement using only arrived nodes (parameter-free nodes anywhere).

    Two devices: the exact min-cut planner; more: the chain DP planner (exact
    on chains and plain-branch blocks, see ``tiercut plan --list``).
    """
    from tiercut.plan import get_planner

    restricted = stage_problem(problem, available)
    computing = [d for d in problem.device_names if d != problem.source and any(d in r for r in problem.compute_s.values())]
    if len(computing) <= 1:
        # the client and one server (other devices only relay): the min cut is exact over every placement
        planner = get_planner("mincut", server=computing[0]) if computing else get_planner("local")
    else:
        planner = get_planner("dp")
    return dict(planner.solve(restricted).placement)


def placement_violation(problem: Problem, placement: Mapping[str, str], available: Availability) -> str | None:
    """Why ``placement`` uses a node on a server before its parameters arrived (None if it does not)."""
    ready = runnable(problem, {d: available.get(d, ()) for d in problem.device_names})
    _, uses = problem.graph.param_table()
    for node in problem.graph:
        device = placement.get(node.name, problem.source)
        if uses[node.name] and device != problem.source and node.name not in ready.get(device, ()):
            return f"node {node.name!r} runs on {device!r} before its parameters arrived there"
    return None


class StageSolver:
    """Best placements and latencies per availability, memoised (one per problem)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self._cache: dict[tuple, tuple[dict[str, str], float]] = {}

    def solve(self, available: Availability) -> tuple[dict[str, str], float]:
        """(placement, latency_s) of the best placement given ``available``."""
        key = availability_key(self.problem, available)
        hit = self._cache.get(key)
        if hit is None:
            placement = best_placement(self.problem, available)
            latency = evaluate(self.problem, placement).latency_s
            hit = (placement, latency)
            self._cache[key] = hit
        return hit

    def latency(self, available: Availability) -> float:
        return self.solve(available)[1]


def upload_seconds(problem: Problem, server: str, nbytes: float) -> float:
    """Seconds to send ``nbytes`` of parameters from the client to ``server`` along their best path of links."""
    if not problem.reachable(problem.source, server):
        raise TiercutError(
            f"no path of links from the client {problem.source!r} to server {server!r}; nothing can be uploaded there"
        )
    return float(problem.routing.seconds(problem.source, server, nbytes))


def upload_rate(problem: Problem, server: str) -> tuple[float, float]:
    """(bytes per second, latency s) of the path large uploads to ``server`` take (the planners' ``B``)."""
    upload_seconds(problem, server, 0.0)
    paths = problem.routing.candidates[(problem.source, server)]
    large = min(paths, key=lambda p: (p.selection[1], p.selection[0]))
    return 1.0 / large.seconds_per_byte, large.latency_s


def link_figures(problem: Problem, server: str) -> tuple[float, float]:
    """(bandwidth_bytes_per_s, latency_s) of uploads to ``server`` (:func:`upload_rate`)."""
    return upload_rate(problem, server)


def timeline(problem: Problem, server: str, groups: Sequence[Sequence[str]], start_s: float = 0.0) -> tuple[UploadPartition, ...]:
    """Partitions of ``groups`` (node names) with bytes, upload and arrival times, in order.

    A partition's bytes are those of the parameters its nodes use that no
    earlier partition carried (:meth:`tiercut.graph.LayerGraph.weight_bytes`).
    """
    out = []
    t = start_s
    held: set[str] = set()
    for group in groups:
        nbytes = problem.graph.weight_bytes(group, held)
        held |= held_params(problem, group)
        upload = upload_seconds(problem, server, nbytes)
        t = t + upload
        out.append(UploadPartition(tuple(group), int(nbytes), upload, t))
    return tuple(out)


def build_stages(
    problem: Problem, uploads: Mapping[str, Sequence[UploadPartition]], solver: StageSolver | None = None
) -> tuple[Stage, ...]:
    """Stage 0 (nothing uploaded) and one stage per arrival time over every server's partitions.

    Partitions arriving at the same instant (on different servers) open one stage.
    """
    solver = solver or StageSolver(problem)
    events = sorted(
        ((p.arrives_s, server, i) for server, parts in uploads.items() for i, p in enumerate(parts)),
        key=lambda e: (e[0], problem.device_index(e[1]), e[2]),
    )
    available: dict[str, set[str]] = {s: set() for s in uploads}
    arrived = {s: 0 for s in uploads}
    placement, latency = solver.solve(available)
    stages = [Stage(0.0, placement, latency, dict(arrived))]
    k = 0
    while k < len(events):
        t = events[k][0]
        while k < len(events) and events[k][0] == t:
            _, server, i = events[k]
            available[server].update(uploads[server][i].nodes)
            arrived[server] = i + 1
            k += 1
        placement, latency = solver.solve(available)
        stages.append(Stage(t, placement, latency, dict(arrived)))
    return tuple(stages)


@dataclass(frozen=True)
class QuerySlot:
    """One query of the back-to-back schedule."""

    index: int
    start_s: float
    end_s: float
    latency_s: float
    stage: int


def query_schedule(
    from_s: Sequence[float], latency_s: Sequence[float], *, n: int = 0, until_s: float = 0.0
) -> list[QuerySlot]:
    """Queries back to back from t = 0: at least ``n`` of them, and every one starting before ``until_s``.

    A query starting at ``t`` uses the last stage with ``from_s <= t``.
    """
    if not from_s or from_s[0] != 0.0:
        raise TiercutError("upload stages must start with stage 0 at time 0")
    out: list[QuerySlot] = []
    t = 0.0
    k = 0
    last = len(from_s) - 1
    while len(out) < n or t < until_s:
        while k < last and from_s[k + 1] <= t:
            k += 1
        lat = latency_s[k]
        if not (lat > 0 and math.isfinite(lat)):
            raise TiercutError(f"upload stage {k} has latency {lat!r}; a stage needs a valid placement with latency > 0")
        end = t + lat
        out.append(QuerySlot(len(out), t, end, lat, k))
        t = end
    return out


def default_query_count(stage0_latency_s: float, direct_upload_s: float) -> int:
    """Queries issued (back to back at the stage-0 latency) before a direct upload of the target ends; >= 1.

    This is the seed's "queries issued during the upload" counted on the
    Direct upload, the same ``n`` for every upload plan of one target.
    """
    if not (stage0_latency_s > 0 and math.isfinite(stage0_latency_s)):
        raise TiercutError(f"the all-client placement has latency {stage0_latency_s!r}; it must be finite and > 0")
    count = 0
    t = 0.0
    while t < direct_upload_s:
        count += 1
        t += stage0_latency_s
    return max(1, count)


def direct_upload_s(problem: Problem, targets: Mapping[str, Iterable[str]]) -> float:
    """Time to upload every server's target in one piece (servers in parallel)."""
    end = 0.0
    for server, nodes in targets.items():
        nodes = list(nodes)
        if not held_params(problem, nodes):
            continue
        end = max(end, timeline(problem, server, [nodes])[0].arrives_s)
    return end


def metrics_of(from_s: Sequence[float], latency_s: Sequence[float], upload_end_s: float, n: int) -> UploadMetrics:
    """The IONN-model figures of stage start times and latencies (:class:`UploadMetrics`)."""
    if n < 1:
        raise TiercutError(f"n_queries is {n}; it must be >= 1")
    slots = query_schedule(from_s, latency_s, n=n, until_s=upload_end_s)
    done = 0
    during = 0.0
    count = 0
    for q in slots:
        if done_by(q.end_s, upload_end_s):
            done += 1
        if starts_before(q.start_s, upload_end_s):
            during += q.latency_s
            count += 1
    return UploadMetrics(
        queries_done_by_upload_end=done,
        time_for_n_queries_s=slots[n - 1].end_s,
        n=n,
        mean_latency_during_upload_s=during / count if count else slots[0].latency_s,
        upload_end_s=upload_end_s,
    )


def upload_metrics(stages: Sequence[Stage], upload_end_s: float, n: int) -> UploadMetrics:
    """The IONN-model figures of a stage timeline (:class:`UploadMetrics`)."""
    return metrics_of([s.from_s for s in stages], [s.latency_s for s in stages], upload_end_s, n)


def evaluate_upload(
    problem: Problem,
    server: str,
    groups: Sequence[Sequence[str]],
    *,
    target: Iterable[str] | None = None,
    n_queries: int | None = None,
    solver: StageSolver | None = None,
) -> tuple[tuple[UploadPartition, ...], tuple[Stage, ...], UploadMetrics]:
    """Partitions, stages and metrics of uploading ``groups`` in order to ``server``.

    ``n_queries`` defaults to :func:`default_query_count` for the direct upload
    of ``target`` (default: every node of ``groups``).
    """
    solver = solver or StageSolver(problem)
    partitions = timeline(problem, server, groups)
    stages = build_stages(problem, {server: partitions}, solver)
    end = partitions[-1].arrives_s if partitions else 0.0
    if n_queries is None:
        nodes = list(target) if target is not None else [n for g in groups for n in g]
        n_queries = default_query_count(stages[0].latency_s, direct_upload_s(problem, {server: nodes}))
    return partitions, stages, upload_metrics(stages, end, n_queries)


def _close(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=CHECK_RTOL, abs_tol=1e-12)


def check_upload_plan(problem: Problem, plan: UploadPlan, target: Iterable[str] | None = None) -> None:
    """Recompute ``plan`` from ``problem`` and its partitions; a :class:`TiercutError` names the first disagreement.

    Checks: every partition node exists, is not a graph input, appears once
    (and, with ``target``, the partitions are exactly the target's nodes);
    bytes, upload and arrival times; every stage uses only arrived nodes and
    has the cost model's latency, which must equal the best latency of what
    had arrived; the metrics.
    """
    if plan.source and plan.source != problem.source:
        raise TiercutError(f"upload plan is for client {plan.source!r} but the problem's source is {problem.source!r}")
    seen: set[str] = set()
    for i, part in enumerate(plan.partitions):
        for node in part.nodes:
            if node not in problem.graph:
                raise TiercutError(f"upload partition {i} names unknown node {node!r}")
            if problem.graph[node].is_input:
                raise TiercutError(f"upload partition {i} holds graph input {node!r}; inputs are never uploaded")
            if node in seen:
                raise TiercutError(f"node {node!r} is in two upload partitions; each node goes up once")
            seen.add(node)
    if target is not None and seen != set(target):
        missing = sorted(set(target) - seen)
        extra = sorted(seen - set(target))
        raise TiercutError(f"upload partitions do not cover the target exactly (missing {missing[:3]}, extra {extra[:3]})")
    expected = timeline(problem, plan.server, [p.nodes for p in plan.partitions])
    for i, (got, want) in enumerate(zip(plan.partitions, expected, strict=True)):
        if got.param_bytes != want.param_bytes:
            raise TiercutError(f"upload partition {i} says {got.param_bytes} parameter bytes; its nodes hold {want.param_bytes}")
        if not _close(got.upload_s, want.upload_s) or not _close(got.arrives_s, want.arrives_s):
            raise TiercutError(
                f"upload partition {i} says upload {got.upload_s:.6g} s arriving {got.arrives_s:.6g} s; "
                f"the link gives {want.upload_s:.6g} s arriving {want.arrives_s:.6g} s"
            )
    if len(plan.stages) != len(plan.partitions) + 1:
        raise TiercutError(f"upload plan has {len(plan.stages)} stages for {len(plan.partitions)} partitions; want one more")
    solver = StageSolver(problem)
    available: dict[str, set[str]] = {plan.server: set()}
    for k, stage in enumerate(plan.stages):
        if k > 0:
            available[plan.server].update(plan.partitions[k - 1].nodes)
            if not _close(stage.from_s, plan.partitions[k - 1].arrives_s):
                raise TiercutError(f"upload stage {k} starts at {stage.from_s:.6g} s, not when partition {k - 1} arrives")
        why = placement_violation(problem, stage.placement, available)
        if why is not None:
            raise TiercutError(f"upload stage {k}: {why}")
        latency = evaluate(problem, stage.placement).latency_s
        if not _close(latency, stage.latency_s):
            raise TiercutError(f"upload stage {k} says latency {stage.latency_s:.6g} s; the cost model gives {latency:.6g} s")
        best = solver.latency(available)
        if latency > best * (1 + CHECK_RTOL) + 1e-12:
            raise TiercutError(f"upload stage {k} has latency {latency:.6g} s but {best:.6g} s is possible with what had arrived")
    metrics = upload_metrics(plan.stages, plan.upload_end_s, plan.metrics.n)
    for name in ("queries_done_by_upload_end", "time_for_n_queries_s", "mean_latency_during_upload_s", "upload_end_s"):
        got, want = getattr(plan.metrics, name), getattr(metrics, name)
        if not _close(float(got), float(want)):
            raise TiercutError(f"upload metric {name} says {got!r}; recomputed it is {want!r}")


def curve(stages: Sequence[Stage], until_s: float, n: int = 0) -> list[QuerySlot]:
    """The seed's Figure 5 data: every query's (start, latency) while uploading (and up to ``n`` queries)."""
    return query_schedule([s.from_s for s in stages], [s.latency_s for s in stages], n=n, until_s=until_s)


__all__ = [
    "CHECK_RTOL",
    "QuerySlot",
    "StageSolver",
    "availability_key",
    "best_placement",
    "build_stages",
    "check_upload_plan",
    "curve",
    "default_query_count",
    "direct_upload_s",
    "evaluate_upload",
    "held_params",
    "link_figures",
    "metrics_of",
    "placement_violation",
    "query_schedule",
    "runnable",
    "stage_problem",
    "timeline",
    "upload_metrics",
    "upload_rate",
    "upload_seconds",
]
