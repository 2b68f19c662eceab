"""One cell of a sweep: graph -> problem -> plan (-> simulation), as one row of the results table.

:func:`extract_graph` is the expensive step shared by every cell of a model
(traced once per sweep, and read from the on-disk graph cache,
:mod:`tiercut.graph.cache`, on the next sweep); :func:`run_cell` takes the
graph as JSON, so a Ray task needs no model file and no torch tracing. Every
figure comes from the cost model through the plan; a cell whose planner
refuses the problem (or any user-facing error) is a row with ``error`` set,
not a failed sweep.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from tiercut.errors import TiercutError
from tiercut.sweep.grid import Cell, ModelChoice

#: the figures of a row, in table order (after the cell's labels); NaN / "" when the cell did not reach them
METRIC_COLUMNS = (
    "nodes",
    "feasible",
    "optimal",
    "objective_value",
    "latency_s",
    "energy_source_j",
    "energy_total_j",
    "cost",
    "devices",
    "bottleneck",
    "bottleneck_s",
    "pipelined_qps",
    "sim_queries",
    "sim_mean_latency_s",
    "sim_p95_latency_s",
    "sim_throughput_qps",
    "error",
)
#: the columns holding floats (NaN when not reached)
FLOAT_COLUMNS = frozenset(
    {
        "objective_value", "latency_s", "energy_source_j", "energy_total_j", "cost", "bottleneck_s", "pipelined_qps",
        "sim_mean_latency_s", "sim_p95_latency_s", "sim_throughput_qps", "solve_s", "cell_s",
    }
)
#: columns that measure this run (wall clock), not the cell's inputs: they differ between two runs of a cell
TIMING_COLUMNS = ("solve_s", "cell_s")


def extract_graph(model: ModelChoice, granularity: str) -> dict[str, Any]:
    """The layer graph of ``model`` as JSON (traced, or read from the graph cache)."""
    from tiercut.pipeline.model import graph

    return graph(model.spec, input_shape=model.input_shape, granularity=granularity).to_dict()


def _empty_metrics() -> dict[str, Any]:
    out: dict[str, Any] = {name: math.nan for name in METRIC_COLUMNS}
    out.update({"nodes": 0, "feasible": False, "optimal": False, "devices": "", "bottleneck": "", "sim_queries": 0, "error": ""})
    return out


def run_cell(cell: Cell, graph_data: Mapping[str, Any] | str) -> dict[str, Any]:
    """The row of ``cell`` (its labels, :data:`METRIC_COLUMNS`, :data:`TIMING_COLUMNS`, ``key`` and ``position``).

    ``graph_data``: the model's graph JSON (:func:`extract_graph`), or the
    one-line error extracting it gave.
    """
    started = time.perf_counter()
    row: dict[str, Any] = {"position": cell.position, "key": cell.key(), **cell.labels(), **_empty_metrics()}
    row["solve_s"] = math.nan
    try:
        if isinstance(graph_data, str):
            raise TiercutError(graph_data)
        _fill(row, cell, graph_data)
    except TiercutError as exc:
        row["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    row["cell_s"] = time.perf_counter() - started
    return row


def _fill(row: dict[str, Any], cell: Cell, graph_data: Mapping[str, Any]) -> None:
    from tiercut.env.types import Environment
    from tiercut.graph.types import LayerGraph
    from tiercut.pipeline.planning import plan as solve
    from tiercut.pipeline.problem import problem as build_problem
    from tiercut.runtime.pipelining import pipeline_stages

    graph = LayerGraph.from_dict(graph_data)
    environment = Environment.from_dict(cell.environment.data, name=cell.environment.label)
    settings = dict(cell.settings)
    if "objective" in settings and settings["objective"] is not None:
        settings["objective"] = str(settings["objective"])
    problem = build_problem(graph, environment, **{k: v for k, v in settings.items() if v is not None})
    row["nodes"] = len(problem.graph)
    plan = solve(problem, cell.planner.name, **dict(cell.planner.settings))
    row.update(
        feasible=bool(plan.feasible),
        optimal=bool(plan.optimal),
        objective_value=float(plan.objective_value),
        latency_s=float(plan.latency_s),
        energy_source_j=float(plan.energy_source_j),
        energy_total_j=float(plan.energy_total_j),
        cost=float(plan.cost),
        devices=",".join(sorted(set(plan.placement.values()))),
        solve_s=float(plan.solve_s),
    )
    placement = dict(plan.placement)
    if not plan.feasible or not math.isfinite(plan.latency_s):
        return
    pipeline = pipeline_stages(problem, placement)
    if pipeline.stages:
        row.update(bottleneck=pipeline.bottleneck.name, bottleneck_s=pipeline.bottleneck_s, pipelined_qps=pipeline.throughput_qps)
    if cell.simulate is not None:
        _simulate(row, cell, problem, placement)


def _simulate(row: dict[str, Any], cell: Cell, problem: Any, placement: Mapping[str, str]) -> None:
    from tiercut.sim import SimConfig, SimUser, simulate
    from tiercut.sim.model import BackToBack, Poisson

    assert cell.simulate is not None
    arrivals = BackToBack() if cell.simulate.rate_hz is None else Poisson(cell.simulate.rate_hz)
    user = SimUser(
        "client", problem, placement=placement, arrivals=arrivals, max_queries=cell.simulate.queries, seed=cell.replication
    )
    result = simulate([user], SimConfig())
    summary = result.summaries()[0]
    ends = [q.end_s for q in result.queries if math.isfinite(q.end_s)]
    starts = [q.start_s for q in result.queries]
    span = (max(ends) - min(starts)) if ends and starts else math.nan
    row.update(
        sim_queries=summary.queries,
        sim_mean_latency_s=summary.mean_latency_s,
        sim_p95_latency_s=summary.p95_latency_s,
        sim_throughput_qps=(len(ends) / span) if ends and span > 0 else math.nan,
    )


__all__ = ["FLOAT_COLUMNS", "METRIC_COLUMNS", "TIMING_COLUMNS", "extract_graph", "run_cell"]
