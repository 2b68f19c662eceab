"""The result files a report is made from, recognised by their keys and read into typed objects.

Every JSON result tiercut writes is accepted:

========================  ================================================  ==========
command                   top-level keys                                    kind
========================  ================================================  ==========
``plan --json``           ``problem``, ``plan``                             plan
``compare --json``        ``problem``, ``plans``                            compare
``demo`` (one per case)   ``problem``, ``plans``, ``upload_plans``          demo
``upload --json``         ``problem``, ``upload_plan`` [, ``compare``]      upload
``simulate --json``       ``scenario``, ``result``, ``analytic``            simulate
``run --json``            ``upload_plan``, ``run``                          run
``graph --json``          ``schema_version``, ``model``, ``nodes``          graph
``plan --exits --json``   ``problem`` (with ``exits``), ``plan``            exit-plan
``plan --users --json``   ``problem`` (with ``users``), ``plan``            multi-plan
``compare --users``       ``problem`` (with ``users``), ``plans``           multi-compare
========================  ================================================  ==========

Problems, plans and upload plans go through their own ``from_dict`` (so
their validation and field names are the contract's); simulation and run
traces, which are output-only, are read into the small typed records below.
A file that is none of these is a :class:`~tiercut.errors.TiercutError`
naming what is accepted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph
from tiercut.problem import MultiPlan, MultiUserProblem, Plan, Problem
from tiercut.upload.types import UploadPlan, UserUploadPlan

#: one line naming what ``tiercut report`` reads.
ACCEPTED = (
    "the JSON of 'tiercut plan --json', 'compare --json', 'upload --json', 'simulate --json', 'run --json', "
    "'graph --json', or a case file of 'tiercut demo'"
)

KINDS = ("plan", "compare", "demo", "upload", "simulate", "run", "graph", "multi-plan", "multi-compare", "exit-plan")


def _number(value: Any) -> float:
    """A JSON number; null (a non-finite figure) becomes NaN."""
    if value is None:
        return math.nan
    return float(value)


@dataclass(frozen=True)
class SimulationTrace:
    """What ``tiercut simulate --json`` printed.

    Attributes:
        scenario: the scenario's name.
        end_s: simulated seconds at the end.
        users: one summary per user (``tiercut.sim.UserSummary.to_dict``).
        arrivals: partitions that arrived (user, server, index, param_bytes, start_s, arrives_s).
        resources: devices and links with their busy seconds.
        queries: every query (user, index, start_s, end_s, latency_s, stage...)
            when the run was made with ``--queries``, else empty.
        analytic: user -> the IONN-model upload metrics planned for it (or None).
        strategies: with mobility, one record per hand-over strategy
            (``tiercut.sim.mobile.StrategyFigures.to_dict``); the other fields are then the first strategy's run.
    """

    scenario: str
    end_s: float
    users: tuple[Mapping[str, Any], ...]
    arrivals: tuple[Mapping[str, Any], ...]
    resources: tuple[Mapping[str, Any], ...]
    queries: tuple[Mapping[str, Any], ...]
    analytic: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    strategies: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class RunTrace:
    """What ``tiercut run --json`` printed (the measured trace of a real run).

    Attributes:
        model, source, algorithm: what ran.
        duration_s: wall time of the run.
        upload_end_s: when the last upload was confirmed (None if never).
        queries: every query (index, start_s, end_s, latency_s, stage,
            planned_latency_s, devices, bytes_sent, fallback, error...).
        uploads: each upload (server, position, bytes, planned_arrives_s...).
        attempts: each upload attempt (server, position, attempt, start_s, end_s, ok, reason, bytes).
        confirmed_s: server -> confirmation time of each upload.
        abandoned: server -> why its uploads were given up.
    """

    model: str
    source: str
    algorithm: str
    duration_s: float
    upload_end_s: float | None
    queries: tuple[Mapping[str, Any], ...]
    uploads: tuple[Mapping[str, Any], ...]
    attempts: tuple[Mapping[str, Any], ...]
    confirmed_s: Mapping[str, tuple[float, ...]]
    abandoned: Mapping[str, str]


@dataclass(frozen=True)
class ReportInput:
    """One result file, read.

    Attributes:
        kind: one of :data:`KINDS`.
        label: a title for its section (the problem's name, the scenario...).
        path: the file it came from ("" when built in memory).
        graph: the layer graph, when the result has one.
        problem: the problem, when the result has one (upload results hold
            the client-server pair the upload was planned on).
        plans: planner name -> plan (``plan``: one; ``compare``/``demo``: every planner run).
        upload_plans: upload planner name -> its plan (single-server
            :class:`UploadPlan`, or a multi-server :class:`UserUploadPlan`).
        simulation: the simulator's trace.
        run: the runtime's measured trace.
        multi_problem: a multi-user result's problem (``plan --users`` / ``compare --users``).
        multi_plans: planner name -> its multi-user plan.
        users: one result per user of the recommended multi-user plan: the user's problem as
            shared with the others (:func:`tiercut.plan.multiuser.response_problem`) and its placement,
            drawn like a single-user plan.
        exit_problem, exit_plan: a plan with early exits (:class:`tiercut.exits.cost.ExitProblem`,
            :class:`tiercut.exits.cost.ExitPlan`; ``problem`` is then its problem over the graph with branches).
    """

    kind: str
    label: str
    path: str = ""
    graph: LayerGraph | None = None
    problem: Problem | None = None
    plans: Mapping[str, Plan] = field(default_factory=dict)
    upload_plans: Mapping[str, UploadPlan | UserUploadPlan] = field(default_factory=dict)
    simulation: SimulationTrace | None = None
    run: RunTrace | None = None
    multi_problem: MultiUserProblem | None = None
    multi_plans: Mapping[str, MultiPlan] = field(default_factory=dict)
    users: tuple[ReportInput, ...] = ()
    exit_problem: Any = None
    exit_plan: Any = None


def _exit_result(data: Mapping[str, Any], path: str) -> ReportInput:
    """A plan with early exits: its problem and plan through their own readers, the figures checked."""
    from tiercut.exits.cost import ExitPlan, ExitProblem, check_exit_plan

    if not isinstance(data["problem"], Mapping) or not isinstance(data["plan"], Mapping):
        raise TiercutError("its 'problem' and 'plan' are not JSON objects")
    ep = ExitProblem.from_dict(data["problem"])
    plan = ExitPlan.from_dict(data["plan"])
    problems = check_exit_plan(ep, plan)
    if problems:
        raise TiercutError(f"its plan does not match its problem ({problems[0]}); re-plan with 'tiercut plan --exits'")
    label = f"{ep.problem.name or ep.problem.graph.model}: {plan.algorithm} with exits {' + '.join(plan.active)}"
    return ReportInput("exit-plan", label, path, ep.problem.graph, ep.problem, exit_problem=ep, exit_plan=plan)


def _is_multi(data: Any) -> bool:
    return isinstance(data, Mapping) and "users" in data and "nodes" not in data


def _problem(data: Any) -> Problem:
    if not isinstance(data, Mapping):
        raise TiercutError("its 'problem' is not a JSON object")
    return Problem.from_dict(data)


def _plan(data: Any, name: str) -> Plan:
    if not isinstance(data, Mapping):
        raise TiercutError(f"plan {name!r} is not a JSON object")
    if "placements" in data and "placement" not in data:
        raise TiercutError(f"plan {name!r} is a multi-user plan but its problem has one user")
    return Plan.from_dict(data)


def _multi_plan(data: Any, name: str) -> MultiPlan:
    if not isinstance(data, Mapping) or "placements" not in data:
        raise TiercutError(f"plan {name!r} is not a multi-user plan (user -> placement), but its problem has users")
    return MultiPlan.from_dict(data)


def _best_multi(plans: Mapping[str, MultiPlan]) -> str:
    feasible = {n: p for n, p in plans.items() if p.feasible and math.isfinite(p.objective_value)}
    if not feasible:
        return next(iter(plans))
    lowest = min(p.objective_value for p in feasible.values())
    tied = [n for n, p in feasible.items() if p.objective_value <= lowest * (1 + 1e-9) + 1e-15]
    return next((n for n in tied if feasible[n].optimal), tied[0])


def _multi_result(kind: str, data: Mapping[str, Any], path: str) -> ReportInput:
    """A multi-user plan or comparison: the summary, and one drawable result per user of the best plan."""
    from tiercut.plan.base import PlacementResult, make_plan
    from tiercut.plan.multiuser import response_problem

    problem = MultiUserProblem.from_dict(data["problem"])
    if kind == "plan":
        plan = _multi_plan(data["plan"], "plan")
        plans = {plan.algorithm: plan}
    elif kind == "compare":
        if not isinstance(data["plans"], Mapping) or not data["plans"]:
            raise TiercutError("its 'plans' is not a JSON object of planner name -> multi-user plan")
        plans = {str(name): _multi_plan(p, str(name)) for name, p in data["plans"].items()}
    else:
        raise TiercutError(f"a {kind} result of a multi-user problem is not drawn; report 'plan/compare --users --json'")
    devices = set(problem.device_names)
    for name, plan in plans.items():
        for user in problem.users:
            placement = plan.placements.get(user.name)
            if placement is None:
                raise TiercutError(f"plan {name!r} places nothing for user {user.name!r}")
            missing = [n.name for n in user.problem.graph if n.name not in placement and not n.is_input]
            if missing:
                raise TiercutError(f"plan {name!r} places no device for node {missing[0]!r} of user {user.name!r}")
            unknown = sorted(set(placement.values()) - devices)
            if unknown:
                raise TiercutError(f"plan {name!r} uses device {unknown[0]!r}, which its problem does not have")
    best = _best_multi(plans)
    chosen = plans[best]
    placements = {u: dict(p) for u, p in chosen.placements.items()}
    users = []
    for user in problem.users:
        shared = response_problem(problem, placements, user.name)
        placement = {n.name: placements[user.name].get(n.name, shared.source) for n in shared.graph}
        plan = make_plan(shared, best, PlacementResult(placement), chosen.solve_s, chosen.settings)
        label = f"user {user.name} ({shared.graph.model} from {shared.source}): {best}, devices shared with the others"
        users.append(ReportInput("plan", label, path, shared.graph, shared, {best: plan}))
    label = f"{problem.name or 'multi-user problem'}: {len(problem.users)} users"
    return ReportInput(f"multi-{kind}", label, path, multi_problem=problem, multi_plans=plans, users=tuple(users))


def _upload_plan(data: Any) -> UploadPlan | UserUploadPlan:
    if isinstance(data, Mapping) and "servers" in data:
        return UserUploadPlan.from_dict(data)
    return UploadPlan.from_dict(data)


def _records(value: Any, what: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise TiercutError(f"its {what!r} is not a list of JSON objects")
    return tuple(value)


def _simulation(data: Mapping[str, Any]) -> SimulationTrace:
    result = data["result"]
    if not isinstance(result, Mapping):
        raise TiercutError("its 'result' is not a JSON object")
    analytic = data.get("analytic") or {}
    if not isinstance(analytic, Mapping):
        raise TiercutError("its 'analytic' is not a JSON object")
    return SimulationTrace(
        scenario=str(data.get("scenario", "")),
        end_s=_number(result.get("end_s")),
        users=_records(result.get("users"), "result.users"),
        arrivals=_records(result.get("arrivals"), "result.arrivals"),
        resources=_records(result.get("resources"), "result.resources"),
        queries=_records(result.get("query_trace"), "result.query_trace"),
        analytic=dict(analytic),
        strategies=_strategies(data.get("mobility")),
    )


def _strategies(mobility: Any) -> tuple[Mapping[str, Any], ...]:
    """The per-strategy figures of ``simulate --json``'s ``mobility`` (none without it)."""
    if mobility is None:
        return ()
    if not isinstance(mobility, Mapping):
        raise TiercutError("its 'mobility' is not a JSON object")
    return _records(mobility.get("strategies"), "mobility.strategies")


def _run(data: Mapping[str, Any]) -> RunTrace:
    run = data["run"]
    if not isinstance(run, Mapping):
        raise TiercutError("its 'run' is not a JSON object")
    confirmed = run.get("confirmed_s") or {}
    if not isinstance(confirmed, Mapping):
        raise TiercutError("its 'run.confirmed_s' is not a JSON object")
    upload_end = run.get("upload_end_s")
    return RunTrace(
        model=str(run.get("model", "")),
        source=str(run.get("source", "")),
        algorithm=str(run.get("algorithm", "")),
        duration_s=_number(run.get("duration_s")),
        upload_end_s=None if upload_end is None else float(upload_end),
        queries=_records(run.get("queries"), "run.queries"),
        uploads=_records(run.get("uploads"), "run.uploads"),
        attempts=_records(run.get("attempts"), "run.attempts"),
        confirmed_s={str(k): tuple(float(t) for t in v) for k, v in confirmed.items()},
        abandoned={str(k): str(v) for k, v in dict(run.get("abandoned") or {}).items()},
    )


def recognise(data: Any) -> str:
    """The kind of a parsed result (one of :data:`KINDS`); a :class:`TiercutError` if it is none."""
    if isinstance(data, Mapping):
        keys = set(data)
        if {"scenario", "result"} <= keys:
            return "simulate"
        if {"upload_plan", "run"} <= keys:
            return "run"
        if "problem" in keys:
            if "upload_plan" in keys:
                return "upload"
            if "plans" in keys:
                return "demo" if "upload_plans" in keys else "compare"
            if "plan" in keys:
                if isinstance(data["problem"], Mapping) and "exits" in data["problem"]:
                    return "exit-plan"
                return "plan"
        if "nodes" in keys and "devices" not in keys and "model" in keys:
            return "graph"
    raise TiercutError(f"it is not a result tiercut knows; give {ACCEPTED}")


def read_result(data: Any, *, path: str = "") -> ReportInput:
    """Read one parsed result (a JSON object) into a :class:`ReportInput`.

    Raises :class:`TiercutError` with one line naming the file and the fix
    when the object is not a result tiercut writes or is malformed.
    """
    where = path or "the result"
    try:
        kind = recognise(data)
        if kind == "simulate":
            trace = _simulation(data)
            return ReportInput(kind, f"simulation {trace.scenario}".strip(), path, simulation=trace)
        if kind == "run":
            trace = _run(data)
            uploads = {} if data["upload_plan"] in (None, {}) else {trace.algorithm or "plan": _upload_plan(data["upload_plan"])}
            label = f"run of {trace.model} from {trace.source}" if trace.model else "run"
            return ReportInput(kind, label, path, upload_plans=uploads, run=trace)
        if kind == "graph":
            graph = LayerGraph.from_dict(data)
            return ReportInput(kind, f"graph of {graph.model}" if graph.model else "layer graph", path, graph=graph)
        if kind == "exit-plan":
            return _exit_result(data, path)
        if _is_multi(data["problem"]):
            return _multi_result(kind, data, path)
        problem = _problem(data["problem"])
        plans: dict[str, Plan] = {}
        uploads: dict[str, UploadPlan | UserUploadPlan] = {}
        if kind == "plan":
            plan = _plan(data["plan"], "plan")
            plans[plan.algorithm] = plan
        elif kind in ("compare", "demo"):
            if not isinstance(data["plans"], Mapping):
                raise TiercutError("its 'plans' is not a JSON object of planner name -> plan")
            plans = {str(name): _plan(p, str(name)) for name, p in data["plans"].items()}
            for name, upload in dict(data.get("upload_plans") or {}).items():
                uploads[str(name)] = _upload_plan(upload)
        else:  # upload
            first = _upload_plan(data["upload_plan"])
            uploads[first.algorithm] = first
            for name, upload in dict(data.get("compare") or {}).items():
                uploads.setdefault(str(name), _upload_plan(upload))
        devices = set(problem.device_names)
        placements = [(f"plan {name!r}", plan.placement) for name, plan in plans.items()]
        placements += [(f"upload plan {name!r} stage {k}", stage.placement)
                       for name, upload in uploads.items() for k, stage in enumerate(upload.stages)]
        for what, placement in placements:
            missing = [n.name for n in problem.graph if n.name not in placement and not n.is_input]
            if missing:
                raise TiercutError(f"{what} places no device for node {missing[0]!r} of its problem")
            unknown = sorted(set(placement.values()) - devices)
            if unknown:
                raise TiercutError(f"{what} uses device {unknown[0]!r}, which its problem does not have")
            extra = sorted(set(placement) - set(problem.graph.names))
            if extra:
                raise TiercutError(f"{what} places node {extra[0]!r}, which its problem does not have")
        return ReportInput(kind, problem.name or problem.graph.model or kind, path, problem.graph, problem, plans, uploads)
    except TiercutError as exc:
        raise TiercutError(f"{where}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"lacks the field {exc}" if isinstance(exc, KeyError) else f"holds a malformed value ({exc})"
        raise TiercutError(f"{where}: the result {detail}; give {ACCEPTED}") from None


def load_result(path: str | Path) -> ReportInput:
    """Read a result file (see the module docstring for what is accepted)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TiercutError(f"result file {path} does not exist; give {ACCEPTED}") from None
    except IsADirectoryError:
        raise TiercutError(f"result file {path} is a directory; give a JSON file") from None
    except UnicodeDecodeError:
        raise TiercutError(f"result file {path} is not text; give {ACCEPTED}") from None
    except OSError as exc:
        raise TiercutError(f"cannot read result file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TiercutError(f"result file {path} is not valid JSON ({exc.msg} at line {exc.lineno}); give {ACCEPTED}") from None
    except RecursionError:
        raise TiercutError(f"result file {path} nests too deeply to be a tiercut result") from None
    return read_result(data, path=str(path))


__all__ = ["ACCEPTED", "KINDS", "ReportInput", "RunTrace", "SimulationTrace", "load_result", "read_result", "recognise"]
