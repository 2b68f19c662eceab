"""The expected-cost layer over exits: :class:`ExitProblem`, :func:`evaluate_expected`, :class:`ExitPlan`.

A layer over the cost model (docs/cost-model.md) (:func:`tiercut.cost.evaluate`), not a
re-implementation. With active exits ``a_1 .. a_m`` in depth order (the last
always answers), a query that leaves at ``a_k`` runs exactly the nodes its
answer needs plus the branches of ``a_1 .. a_{k-1}`` it tried on the way
(their answers stay where they were computed: the confidence test runs
there), and its answer alone travels back to the source. Its figures are the
cost model's figures of that *query problem* (:func:`query_problem`): the
graph cut down to those nodes with ``a_k``'s answer as the only output, so a
query that exits early sends nothing past its exit. With exit rates ``p_k``
(measured on the held-out split, :func:`tiercut.exits.confidence.route`):

    E[metric](x) = sum_k p_k * metric(query_problem_k, x restricted to it)

for latency, source energy, total energy and cost; the worst-case latency is
the largest over exits with ``p_k > 0``; accuracy is the routed accuracy.
Memory counts every deployed node (every active branch and the layers up to
the last active exit); budgets apply to the expected figures, the accuracy
floor to the routed accuracy. Edgent's right-sizing (one active exit, every
query leaves there) is the case ``m = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tiercut.cost import constraint_violations, evaluate, memory_bytes, objective_value
from tiercut.cost.model import Evaluation
from tiercut.errors import TiercutError
from tiercut.exits.confidence import ExitMeasurements, check_rule, route
from tiercut.exits.types import ExitBranch, ExitModel, check_exits
from tiercut.graph.types import LayerGraph
from tiercut.problem import Constraints, Problem
from tiercut.serialization import json_contract

METRIC_FIELDS = ("latency_s", "energy_source_j", "energy_total_j", "cost")


@dataclass(frozen=True)
class ExitProblem:
    """A partition problem over a graph with exit branches.

    Attributes:
        problem: the problem over the whole graph (branches included).
        exits: side exits in depth order, then the final exit.
        rule, thresholds: the confidence rule and each side exit's threshold.
        measurements: per-sample scores and correctness (exit rates and accuracy are recomputed from them).
        latency_slo_s: the latency requirement (on the expected latency; Edgent's: one exit, so the latency).
        accuracy_min: the accuracy floor.
    """

    problem: Problem
    exits: tuple[ExitBranch, ...]
    rule: str
    thresholds: Mapping[str, float]
    measurements: ExitMeasurements
    latency_slo_s: float | None = None
    accuracy_min: float | None = None
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_rule(self.rule)
        check_exits(self.problem.graph, self.exits)
        if tuple(self.measurements.exits) != tuple(e.name for e in self.exits):
            raise TiercutError("the exit measurements do not name the problem's exits")
        if self.latency_slo_s is not None and not (self.latency_slo_s > 0 and math.isfinite(self.latency_slo_s)):
            raise TiercutError(f"latency SLO {self.latency_slo_s!r} s must be a number > 0, e.g. --latency-slo 50ms")
        if self.accuracy_min is not None and not 0.0 <= self.accuracy_min <= 1.0:
            raise TiercutError(f"accuracy floor {self.accuracy_min!r} must be within 0..1, e.g. --accuracy-min 0.95")

    @classmethod
    def from_exit_model(cls, problem: Problem, exit_model: ExitModel, *, latency_slo_s: float | None = None,
                        accuracy_min: float | None = None) -> ExitProblem:
        return cls(problem, exit_model.exits, exit_model.rule, dict(exit_model.thresholds), exit_model.measurements,
                   latency_slo_s, accuracy_min)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.exits]

    def exit(self, name: str) -> ExitBranch:
        for e in self.exits:
            if e.name == name:
                return e
        raise TiercutError(f"no exit {name!r}; exits are {', '.join(self.names)}")

    def check_active(self, active: Sequence[str]) -> tuple[str, ...]:
        order = self.names
        for a in active:
            self.exit(a)
        if not active or list(active) != sorted(active, key=order.index) or len(set(active)) != len(active):
            raise TiercutError(f"active exits {', '.join(active) or '(none)'} must be distinct exits in depth order")
        return tuple(active)

    def with_limits(self, *, latency_slo_s: float | None = None, accuracy_min: float | None = None) -> ExitProblem:
        return replace(self, latency_slo_s=latency_slo_s, accuracy_min=accuracy_min)

    def to_dict(self) -> dict[str, Any]:
        """The problem JSON (docs/contracts.md) with an ``exits`` object."""
        return {
            **self.problem.to_dict(),
            "exits": {
                "rule": self.rule,
                "thresholds": dict(self.thresholds),
                "branches": [e.to_dict() for e in self.exits],
                "latency_slo_s": self.latency_slo_s,
                "accuracy_min": self.accuracy_min,
                "measurements": self.measurements.to_dict(),
            },
        }

    @classmethod
    @json_contract("exit problem", hint="plan it with --exits FILE")
    def from_dict(cls, data: Mapping[str, Any]) -> ExitProblem:
        block = data.get("exits")
        if not isinstance(block, Mapping):
            raise TiercutError("this problem has no 'exits' object; plan it with --exits FILE")
        try:
            return cls(
                Problem.from_dict(data),
                tuple(ExitBranch.from_dict(e) for e in block["branches"]),
                str(block["rule"]),
                {str(k): float(v) for k, v in dict(block["thresholds"]).items()},
                ExitMeasurements.from_dict(block["measurements"]),
                None if block.get("latency_slo_s") is None else float(block["latency_slo_s"]),
                None if block.get("accuracy_min") is None else float(block["accuracy_min"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TiercutError(f"the problem's exits object lacks or garbles {exc}") from None


# ---------------------------------------------------------------- sub-problems
def _closure(graph: LayerGraph, names: Sequence[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(names)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(graph[n].inputs)
    return seen


def _cut(problem: Problem, keep: set[str], output: str | None, constraints: Constraints) -> Problem:
    """``problem`` over the nodes in ``keep`` (a closed set), ``output`` its only graph output."""
    graph = problem.graph
    nodes = tuple(replace(n, is_output=(n.name == output)) for n in graph if n.name in keep)
    used = {p for n in nodes for p in n.params}
    sub = graph.with_nodes(nodes, params={p: b for p, b in graph.params.items() if p in used})
    compute = {n: row for n, row in problem.compute_s.items() if n in keep}
    pins = {n: d for n, d in constraints.pinned.items() if n in keep}
    return replace(problem, graph=sub, compute_s=compute, constraints=replace(constraints, pinned=pins))


def deployed_nodes(ep: ExitProblem, active: Sequence[str]) -> set[str]:
    """The nodes a configuration deploys: what every active exit's queries run."""
    graph = ep.problem.graph
    return _closure(graph, [ep.exit(a).output for a in active])


def query_problem(ep: ExitProblem, active: Sequence[str], k: int) -> Problem:
    """The cost-model problem of a query that leaves at ``active[k]``: the nodes its answer needs and the
    branches it tried before, that answer the only output; no budgets or memory (checked on the whole)."""
    active = ep.check_active(active)
    key = ("query", active, k)
    if key not in ep._cache:
        graph = ep.problem.graph
        keep = _closure(graph, [ep.exit(a).output for a in active[: k + 1]])
        cons = Constraints(memory=False, pinned=ep.problem.constraints.pinned)
        ep._cache[key] = _cut(ep.problem, keep, ep.exit(active[k]).output, cons)
    return ep._cache[key]


def right_sized_problem(ep: ExitProblem) -> Any:
    """A function ``exit name -> Problem``: Edgent's right-sized model (every query leaves at that exit), with
    the problem's objective, memory, pins and budgets, and the latency SLO as a latency budget."""

    def build(name: str) -> Problem:
        key = ("right-sized", name)
        if key not in ep._cache:
            cons = ep.problem.constraints
            if ep.latency_slo_s is not None:
                budget = ep.latency_slo_s if cons.latency_budget_s is None else min(ep.latency_slo_s, cons.latency_budget_s)
                cons = replace(cons, latency_budget_s=budget)
            keep = _closure(ep.problem.graph, [ep.exit(name).output])
            ep._cache[key] = _cut(ep.problem, keep, ep.exit(name).output, cons)
        return ep._cache[key]

    return build


# ---------------------------------------------------------------- expected figures
@dataclass(frozen=True)
class ExpectedEvaluation:
    """The expected figures of a placement with a set of active exits.

    Attributes:
        active: active exits in depth order.
        exit_rates: probability a query leaves at each (measured).
        queries: the cost model's evaluation of each exit's query problem.
        latency_s, energy_source_j, energy_total_j, cost: expected over exits.
        worst_latency_s: the slowest exit a query can take (rate > 0).
        accuracy: routed accuracy.
        objective_value: the problem's objective of the expected figures.
        memory_bytes: device -> parameter bytes deployed on it.
        violations: broken rules and constraints (empty: feasible).
    """

    active: tuple[str, ...]
    exit_rates: tuple[float, ...]
    queries: tuple[Evaluation, ...]
    latency_s: float
    energy_source_j: float
    energy_total_j: float
    cost: float
    worst_latency_s: float
    accuracy: float
    objective_value: float
    memory_bytes: Mapping[str, int]
    violations: tuple[str, ...]

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def valid(self) -> bool:
        return all(q.valid for q in self.queries)


def evaluate_expected(ep: ExitProblem, placement: Mapping[str, str], active: Sequence[str] | None = None) -> ExpectedEvaluation:
    """Expected figures of ``placement`` (node -> device for the deployed nodes; others are ignored) with the
    ``active`` exits (default every exit) under the problem's rule and thresholds."""
    active = ep.check_active(list(active) if active is not None else ep.names)
    routing = route(ep.measurements, active, ep.rule, ep.thresholds)
    deployed = deployed_nodes(ep, active)
    full = {n.name: placement.get(n.name, ep.problem.source if n.is_input else "") for n in ep.problem.graph
            if n.name in deployed}
    missing = [n for n, d in full.items() if not d]
    if missing:
        raise TiercutError(f"placement has no device for node {missing[0]!r}; place every deployed node")
    queries = []
    for k in range(len(active)):
        sub = query_problem(ep, active, k)
        queries.append(evaluate(sub, {n.name: full[n.name] for n in sub.graph}))
    rates = routing.exit_rates
    metrics = {}
    for fld in METRIC_FIELDS:
        metrics[fld] = sum(p * getattr(q, fld) for p, q in zip(rates, queries, strict=True) if p > 0)
    worst = max((q.latency_s for p, q in zip(rates, queries, strict=True) if p > 0), default=0.0)
    whole = _cut(ep.problem, deployed, None, ep.problem.constraints)
    memory = memory_bytes(whole, full)
    violations = [v for q in queries for v in q.violations if not q.valid]
    named = {"latency": metrics["latency_s"], "energy_source": metrics["energy_source_j"],
             "energy_total": metrics["energy_total_j"], "cost": metrics["cost"]}
    if not violations:
        violations.extend(constraint_violations(whole, full, named, memory))
        if ep.latency_slo_s is not None and metrics["latency_s"] > ep.latency_slo_s * (1 + 1e-9) + 1e-15:
            violations.append(f"expected latency {metrics['latency_s'] * 1e3:.4g} ms is over the latency SLO "
                              f"{ep.latency_slo_s * 1e3:.4g} ms")
        if ep.accuracy_min is not None and routing.accuracy < ep.accuracy_min - 1e-12:
            violations.append(f"accuracy {routing.accuracy:.4f} is under the floor {ep.accuracy_min:.4f}")
    return ExpectedEvaluation(
        active=active,
        exit_rates=rates,
        queries=tuple(queries),
        latency_s=metrics["latency_s"],
        energy_source_j=metrics["energy_source_j"],
        energy_total_j=metrics["energy_total_j"],
        cost=metrics["cost"],
        worst_latency_s=worst,
        accuracy=routing.accuracy,
        objective_value=objective_value(ep.problem.objective, named),
        memory_bytes=memory,
        violations=tuple(dict.fromkeys(violations)),
    )


# ---------------------------------------------------------------- plan
def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _from_num(value: Any) -> float:
    return math.inf if value is None else float(value)


@dataclass(frozen=True)
class ExitPlan:
    """A placement with active exits, and its expected figures (all from :func:`evaluate_expected`).

    Attributes:
        algorithm: the planner's registry name.
        active: active exits in depth order (Edgent: one).
        placement: node -> device for the deployed nodes.
        exit_rates, exit_latency_s: per active exit, its rate and its query's latency.
        latency_s, energy_source_j, energy_total_j, cost: expected figures.
        worst_latency_s, accuracy, objective_value: as in :class:`ExpectedEvaluation`.
        feasible, violations, optimal, solve_s, settings, note: as in :class:`tiercut.problem.Plan`.
        candidates: what the planner compared (one row per configuration tried), for reports.
    """

    algorithm: str
    active: tuple[str, ...]
    placement: Mapping[str, str]
    exit_rates: tuple[float, ...]
    exit_latency_s: tuple[float, ...]
    latency_s: float
    energy_source_j: float
    energy_total_j: float
    cost: float
    worst_latency_s: float
    accuracy: float
    objective_value: float
    feasible: bool
    violations: tuple[str, ...] = ()
    optimal: bool = False
    solve_s: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""
    candidates: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "active_exits": list(self.active),
            "placement": dict(self.placement),
            "exit_rates": list(self.exit_rates),
            "exit_latency_s": [_num(v) for v in self.exit_latency_s],
            "latency_s": _num(self.latency_s),
            "energy_source_j": _num(self.energy_source_j),
            "energy_total_j": _num(self.energy_total_j),
            "cost": _num(self.cost),
            "worst_latency_s": _num(self.worst_latency_s),
            "accuracy": self.accuracy,
            "objective_value": _num(self.objective_value),
            "feasible": self.feasible,
            "violations": list(self.violations),
            "optimal": self.optimal,
            "solve_s": self.solve_s,
            "settings": {k: v for k, v in self.settings.items() if isinstance(v, (str, int, float, bool, type(None)))},
            "note": self.note,
            "candidates": [dict(c) for c in self.candidates],
        }

    @classmethod
    @json_contract("exit plan", hint="pass the 'plan' object of 'tiercut plan --exits FILE --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> ExitPlan:
        try:
            return cls(
                algorithm=str(data["algorithm"]),
                active=tuple(str(a) for a in data["active_exits"]),
                placement={str(k): str(v) for k, v in data["placement"].items()},
                exit_rates=tuple(float(r) for r in data["exit_rates"]),
                exit_latency_s=tuple(_from_num(v) for v in data["exit_latency_s"]),
                latency_s=_from_num(data["latency_s"]),
                energy_source_j=_from_num(data["energy_source_j"]),
                energy_total_j=_from_num(data["energy_total_j"]),
                cost=_from_num(data["cost"]),
                worst_latency_s=_from_num(data["worst_latency_s"]),
                accuracy=float(data["accuracy"]),
                objective_value=_from_num(data["objective_value"]),
                feasible=bool(data["feasible"]),
                violations=tuple(str(v) for v in data.get("violations", ())),
                optimal=bool(data.get("optimal", False)),
                solve_s=float(data.get("solve_s", 0.0)),
                settings=dict(data.get("settings", {})),
                note=str(data.get("note", "")),
                candidates=tuple(dict(c) for c in data.get("candidates", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TiercutError(f"exit plan JSON lacks or garbles {exc}") from None


def make_exit_plan(ep: ExitProblem, algorithm: str, placement: Mapping[str, str], active: Sequence[str], *,
                   optimal: bool = False, solve_s: float = 0.0, settings: Mapping[str, Any] | None = None,
                   note: str = "", candidates: Sequence[Mapping[str, Any]] = ()) -> ExitPlan:
    """An :class:`ExitPlan` whose figures are :func:`evaluate_expected`'s."""
    ev = evaluate_expected(ep, placement, active)
    deployed = deployed_nodes(ep, ev.active)
    return ExitPlan(
        algorithm=algorithm,
        active=ev.active,
        placement={n: placement.get(n, ep.problem.source) for n in ep.problem.graph.names if n in deployed},
        exit_rates=ev.exit_rates,
        exit_latency_s=tuple(q.latency_s for q in ev.queries),
        latency_s=ev.latency_s,
        energy_source_j=ev.energy_source_j,
        energy_total_j=ev.energy_total_j,
        cost=ev.cost,
        worst_latency_s=ev.worst_latency_s,
        accuracy=ev.accuracy,
        objective_value=ev.objective_value,
        feasible=ev.feasible,
        violations=ev.violations,
        optimal=bool(optimal and ev.feasible),
        solve_s=solve_s,
        settings=dict(settings or {}),
        note=note,
        candidates=tuple(candidates),
    )


def check_exit_plan(ep: ExitProblem, plan: ExitPlan, rel: float = 1e-9) -> list[str]:
    """Every figure of ``plan`` recomputed from ``ep`` alone; one line per figure that disagrees."""
    ev = evaluate_expected(ep, plan.placement, plan.active)
    out = []
    pairs = [("latency_s", ev.latency_s, plan.latency_s), ("energy_source_j", ev.energy_source_j, plan.energy_source_j),
             ("energy_total_j", ev.energy_total_j, plan.energy_total_j), ("cost", ev.cost, plan.cost),
             ("worst_latency_s", ev.worst_latency_s, plan.worst_latency_s), ("accuracy", ev.accuracy, plan.accuracy)]
    pairs += [(f"exit_rates[{i}]", a, b) for i, (a, b) in enumerate(zip(ev.exit_rates, plan.exit_rates, strict=True))]
    for name, want, got in pairs:
        if not (want == got or abs(want - got) <= rel * max(1.0, abs(want))):
            out.append(f"{name}: plan says {got!r}, the problem gives {want!r}")
    if ev.feasible != plan.feasible:
        out.append(f"feasible: plan says {plan.feasible}, the problem gives {ev.feasible}")
    return out


__all__ = [
    "ExitPlan",
    "ExitProblem",
    "ExpectedEvaluation",
    "check_exit_plan",
    "deployed_nodes",
    "evaluate_expected",
    "make_exit_plan",
    "query_problem",
    "right_sized_problem",
]
