"""The one interface every partition planner implements.

A planner is a class in the scikit-learn style: its settings are explicit
keyword arguments of ``__init__`` stored as attributes of the same name, and
``__init__`` does no work; :meth:`Planner.get_params` returns them (they are
logged in every :class:`~tiercut.problem.Plan` as ``settings``). A planner
computes a *placement*; the figures of the plan always come from the cost
model (:func:`tiercut.cost.evaluate`), so no planner can report figures that
disagree with the model.

Implementing a planner:

- subclass :class:`Planner`, set the class attributes ``name`` (its registry
  key), ``summary``, ``reference`` (the paper), ``guarantee`` (what it
  proves) and ``complexity``;
- override :meth:`Planner.check` to refuse problems it cannot handle (a
  reason string, e.g. "needs exactly 2 devices"), and :meth:`Planner._solve`
  returning a :class:`PlacementResult`;
- for multi-user problems set ``multi_user = True`` and override
  :meth:`Planner._solve_multi` returning a :class:`MultiPlacementResult`
  (``single_user = False`` if it plans only multi-user problems);
- add ONE line to ``PLANNERS`` in :mod:`tiercut.plan.registry`.

Infeasibility: a planner that finds no placement satisfying every constraint
returns its best effort (or the all-local placement), and the plan says
``feasible=False`` with the violations listed. A problem the planner cannot
handle at all (wrong number of devices, a brute force too large) is a
:class:`~tiercut.errors.TiercutError` raised by :meth:`Planner.solve`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from tiercut.cost import Evaluation, MultiEvaluation, evaluate, evaluate_users
from tiercut.errors import TiercutError
from tiercut.problem import MultiPlan, MultiUserProblem, Plan, Problem, Shares, UserFigures
from tiercut.settings import Configurable

#: the planner used when none is named (``plan()``, ``tiercut plan``, the multi-user best response's inner
#: solve): exact over any number of devices with every constraint. ``mincut`` is faster but exact only
#: over two-device placements, so it is the default for what is two-device by construction: an upload
#: plan's server partition P1 (:data:`tiercut.upload.base.DEFAULT_OFFLOADING_PLANNER`).
DEFAULT_PLANNER = "ilp"


@dataclass(frozen=True)
class PlacementResult:
    """What a planner's ``_solve`` returns: a placement and what it proved.

    Attributes:
        placement: node -> device (inputs may be left out: they are on the source).
        optimal: the planner proved this placement optimal for the problem
            (its objective and every constraint). Reported only if the
            placement is also feasible.
        gap: relative optimality gap, if the planner has one.
        note: one line for the reader (e.g. what was ignored).
        bound: a proven lower bound of the objective, if the planner has one.
        compression: node -> cut codec of the tensors to send compressed
            (JALAD; :mod:`tiercut.cost.cut_compression`).
    """

    placement: Mapping[str, str]
    optimal: bool = False
    gap: float | None = None
    note: str = ""
    bound: float | None = None
    compression: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MultiPlacementResult:
    """What a planner's ``_solve_multi`` returns: user -> placement, and what it proved.

    ``shares``: the resource shares the planner chose (JMDP/JPDRA; None: the equal-share model);
    ``convergence``: its objective after each iteration, when it iterates.
    """

    placements: Mapping[str, Mapping[str, str]]
    optimal: bool = False
    gap: float | None = None
    note: str = ""
    shares: Shares | None = None
    convergence: tuple[float, ...] = ()


#: the planners that decide feasibility under budgets exactly: what a planner planning many sub-problems
#: (exits, variants) must use inside to keep its own optimality claim
EXACT_INNER = ("ilp", "brute-force")


class Planner(Configurable):
    """Base class of every planner: settings in ``__init__``, work in :meth:`solve`."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "planner"
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    guarantee: ClassVar[str] = ""
    complexity: ClassVar[str] = ""
    single_user: ClassVar[bool] = True
    multi_user: ClassVar[bool] = False
    #: compare the answer with the cheap candidates (all-local, every all-on placement) and keep the best;
    #: off for the baselines, which must return exactly their placement
    cheap_fallback: ClassVar[bool] = True
    #: the planner chooses the cut compression (JALAD) jointly with the placement (ilp, brute-force); the
    #: others get it by a post-pass on their placement (:func:`tiercut.cost.cut_compression.choose_compression`)
    decides_compression: ClassVar[bool] = False
    #: the planner accepts the throughput objective (the bottleneck stage, :mod:`tiercut.cost.throughput`): it
    #: scores placements with the cost model's objective, or builds its model from the stage forms; the
    #: planners built on one linear form (mincut, dp, shortest-path...) refuse it
    plans_throughput: ClassVar[bool] = False

    # ----------------------------------------------------------- applicability
    def check(self, problem: Problem) -> str | None:
        """Why this planner cannot solve ``problem`` (None: it can)."""
        return None

    def check_multi(self, problem: MultiUserProblem) -> str | None:
        """Why this planner cannot solve the multi-user ``problem`` (None: it can)."""
        if not self.multi_user:
            return "it plans single-user problems only"
        return None

    def applicable(self, problem: Problem | MultiUserProblem) -> bool:
        if isinstance(problem, MultiUserProblem):
            return self.check_multi(problem) is None
        return self.single_user and self.objective_reason(problem) is None and self.check(problem) is None

    def objective_reason(self, problem: Problem) -> str | None:
        """Why this planner cannot optimise ``problem``'s objective (None: it can)."""
        if not problem.objective.is_throughput:
            return None
        if not self.plans_throughput:
            return (
                "it does not optimise the throughput objective; use ilp, throughput-dp, throughput-mincut, "
                "brute-force or a heuristic (greedy, ga, pso, sa)"
            )
        if problem.compresses_cuts:
            return "the throughput objective does not model cut compression yet; plan without cut compression"
        return None

    def scope(self, problem: Problem) -> list[str] | None:
        """The devices this planner's settings let it use (None: every device); the cheap candidates it is
        checked against stay within them."""
        return None

    # ----------------------------------------------------------- solving
    def solve(self, problem: Problem) -> Plan:
        """Plan ``problem``: the placement from :meth:`_solve`, the figures from the cost model."""
        if isinstance(problem, MultiUserProblem):
            raise TiercutError(f"planner {self.name!r}: a multi-user problem goes to solve_multi (or tiercut.plan.plan)")
        if not self.single_user:
            raise TiercutError(f"planner {self.name!r} plans multi-user problems only; give it a MultiUserProblem")
        reason = self.objective_reason(problem) or self.check(problem)
        if reason is not None:
            raise TiercutError(f"planner {self.name!r} cannot solve {problem.name or 'this problem'}: {reason}")
        start = time.perf_counter()
        result = self._solve(problem)
        if problem.compresses_cuts and not self.decides_compression:
            result = with_chosen_compression(problem, result)
        if self.cheap_fallback:
            result = no_worse_than_cheap(problem, result, self.scope(problem))
        return self._plan(problem, result, time.perf_counter() - start)

    def _plan(self, problem: Problem, result: PlacementResult, solve_s: float) -> Plan:
        """The plan of ``result``: its figures from the cost model (a planner whose placements carry more than
        node -> device, like tiled stages, overrides this to evaluate them with its cost-model layer)."""
        return make_plan(problem, self.name, result, solve_s, self.get_params())

    def solve_multi(self, problem: MultiUserProblem) -> MultiPlan:
        """Plan a multi-user problem (equal-share model)."""
        reason = self.check_multi(problem)
        if reason is not None:
            raise TiercutError(f"planner {self.name!r} cannot solve multi-user {problem.name or 'problem'}: {reason}")
        start = time.perf_counter()
        result = self._solve_multi(problem)
        if self.cheap_fallback:
            result = no_worse_than_cheap_multi(problem, result)
        solve_s = time.perf_counter() - start
        return make_multi_plan(problem, self.name, result, solve_s, self.get_params())

    def _solve(self, problem: Problem) -> PlacementResult:
        raise TiercutError(f"planner {self.name!r} plans multi-user problems only")

    def _solve_multi(self, problem: MultiUserProblem) -> MultiPlacementResult:
        raise TiercutError(f"planner {self.name!r} plans single-user problems only")


def check_server(problem: Problem, server: str | None) -> str | None:
    """Why ``server`` (a planner's ``server`` setting; None: any) cannot be the server of ``problem``."""
    if server is None:
        return None
    if server not in problem.device_names:
        return f"server {server!r} is not a device; devices are {', '.join(problem.device_names)}"
    if server == problem.source:
        return "the server must not be the source device"
    return None


def cheap_rows(problem: Problem, scope: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """The cheap candidates every planner is checked against: all-local (where the source can run a node)
    and every all-on-one-device placement (inputs on the source; only devices in ``scope`` when given),
    pinned nodes on their devices, as names and placement rows."""
    from tiercut.cost import compile_problem

    comp = compile_problem(problem)
    src = comp.source
    local = np.where(comp.allowed[:, src], src, np.argmax(comp.allowed, axis=1)).astype(np.int64)
    names, rows = ["local"], [local]
    is_input = np.array([n.is_input for n in problem.graph])
    for d, name in enumerate(problem.device_names):
        if d != src and (scope is None or name in scope):
            names.append(f"all-on-{name}")
            rows.append(np.where(is_input, src, d).astype(np.int64))
    X = np.stack(rows)
    X[:, comp.pinned_nodes] = comp.pinned_devices[None, :]  # pinned nodes stay where they are pinned
    return names, X


def _deb_key(feasible: bool, valid: bool, objective: float, penalty: float) -> tuple[int, float]:
    return (0, objective) if feasible else ((1, penalty) if valid else (2, 0.0))


def with_chosen_compression(problem: Problem, result: PlacementResult) -> PlacementResult:
    """``result`` with the cut compression :func:`~tiercut.cost.cut_compression.choose_compression` picks for its
    placement (the post-pass of every planner that does not decide it jointly); optimality is no longer
    claimed, since another placement with compression may be better."""
    from tiercut.cost.cut_compression import choose_compression

    compression, exact = choose_compression(problem, result.placement)
    note = "cut compression chosen for this placement by a post-pass" + ("" if exact else " (greedy under the budget)")
    return replace(
        result,
        compression=compression,
        optimal=False,
        gap=None,
        note="; ".join(filter(None, [result.note, note])),
    )


def _compressed_key(problem: Problem, placement: Mapping[str, str], compression: Mapping[str, str]) -> tuple[int, float]:
    ev = evaluate(problem, placement, compression=compression)
    return _deb_key(ev.feasible, ev.valid, ev.objective_value, len(ev.violations))


def _no_worse_than_cheap_compressed(problem: Problem, result: PlacementResult, scope: list[str] | None) -> PlacementResult:
    """:func:`no_worse_than_cheap` when tensors may be compressed: each cheap candidate with its best compression
    (scalar cost model; infeasible ones ranked by their number of violations)."""
    from tiercut.cost import compile_problem, decode
    from tiercut.cost.cut_compression import choose_compression

    comp = compile_problem(problem)
    names, rows = cheap_rows(problem, scope)
    try:
        mine = _compressed_key(problem, result.placement, result.compression)
    except TiercutError:
        mine = (3, 0.0)
    best: tuple[tuple[int, float], str, dict[str, str], dict[str, str]] | None = None
    for name, row in zip(names, rows, strict=True):
        placement = decode(comp, row)
        compression, _ = choose_compression(problem, placement)
        key = _compressed_key(problem, placement, compression)
        if best is None or key < best[0]:
            best = (key, name, placement, compression)
    assert best is not None
    key, label, placement, compression = best
    if not (key[0] < mine[0] or (key[0] == mine[0] and key[1] < mine[1] - 1e-12 * max(1.0, abs(mine[1])))):
        return result
    why = f"the planner's placement was worse than the cheap candidate {label}, returned instead"
    return PlacementResult(
        placement, optimal=False, note="; ".join(filter(None, [result.note, why])), bound=result.bound,
        compression=compression,
    )


def no_worse_than_cheap(problem: Problem, result: PlacementResult, scope: list[str] | None = None) -> PlacementResult:
    """``result``, or the best cheap candidate (:func:`cheap_rows` within ``scope``) when that is strictly better
    by Deb's rule (feasible first, then the objective; infeasible ones by their constraint excess)."""
    from tiercut.cost import compile_problem, decode, encode, evaluate_many

    if problem.compresses_cuts:
        return _no_worse_than_cheap_compressed(problem, result, scope)

    comp = compile_problem(problem)
    names, rows = cheap_rows(problem, scope)
    try:
        own = encode(comp, result.placement)
    except TiercutError:
        own = None
    X = rows if own is None else np.concatenate([own[None, :], rows])
    batch = evaluate_many(comp, X)
    keys = [_deb_key(bool(batch.feasible[i]), bool(batch.valid[i]), float(batch.objective[i]), float(batch.penalty[i]))
            for i in range(len(X))]
    best = min(range(len(X)), key=lambda i: keys[i])
    if own is not None:
        mine = keys[0]
        strictly = keys[best][0] < mine[0] or (
            keys[best][0] == mine[0] and keys[best][1] < mine[1] - 1e-12 * max(1.0, abs(mine[1]))
        )
        if best == 0 or not strictly:
            return result
        label = names[best - 1]
    else:
        label = names[best]
    why = f"the planner's placement was worse than the cheap candidate {label}, returned instead"
    return PlacementResult(
        decode(comp, X[best]), optimal=False, gap=None, note="; ".join(filter(None, [result.note, why])), bound=result.bound
    )


def no_worse_than_cheap_multi(problem: MultiUserProblem, result: MultiPlacementResult) -> MultiPlacementResult:
    """The multi-user :func:`no_worse_than_cheap`: every user local, or every user all on one device."""
    from tiercut.cost import compile_problem, compile_users, decode, encode, evaluate_users_many

    cm = compile_users(problem)
    per_user = [cheap_rows(u.problem) for u in problem.users]
    names = per_user[0][0]
    joint = np.concatenate([rows for _, rows in per_user], axis=1)
    try:
        own = np.concatenate([encode(compile_problem(u.problem), result.placements[u.name]) for u in problem.users])
    except (TiercutError, KeyError):
        return result
    X = np.concatenate([own[None, :], joint])
    batch = evaluate_users_many(cm, X)
    keys = [_deb_key(bool(batch.feasible[i]), bool(batch.valid[i]), float(batch.objective[i]), float(batch.penalty[i]))
            for i in range(len(X))]
    best = min(range(len(X)), key=lambda i: keys[i])
    mine = keys[0]
    if best == 0 or not (keys[best][0] < mine[0] or (keys[best][0] == mine[0]
                                                      and keys[best][1] < mine[1] - 1e-12 * max(1.0, abs(mine[1])))):
        return result
    parts = cm.split(X[best][None, :])
    placements = {u.name: decode(compile_problem(u.problem), part[0]) for u, part in zip(problem.users, parts, strict=True)}
    why = f"the planner's placements were worse than every user on the cheap candidate {names[best - 1]}, returned instead"
    return MultiPlacementResult(placements, optimal=False, note="; ".join(filter(None, [result.note, why])))


def make_plan(
    problem: Problem,
    algorithm: str,
    result: PlacementResult,
    solve_s: float,
    settings: Mapping[str, Any],
    evaluation: Evaluation | None = None,
) -> Plan:
    """A :class:`Plan` whose figures are the cost model's for ``result.placement`` (``evaluation``: that
    placement's figures already computed, e.g. by the tiled-stage layer :func:`tiercut.cost.tiled.evaluate_tiled`)."""
    ev = evaluation if evaluation is not None else evaluate(problem, result.placement, compression=result.compression or None)
    return Plan(
        algorithm=algorithm,
        placement=dict(ev.placement),
        latency_s=ev.latency_s,
        **_outcome(ev, result, solve_s, settings),
        memory_bytes=dict(ev.memory_bytes),
        bound=result.bound,
        cut_compression=dict(ev.compression),
        accuracy_loss=ev.accuracy_loss,
        pipeline_stages=dict(ev.pipeline_stages),
        bottleneck_s=ev.bottleneck_s,
    )


def make_multi_plan(
    problem: MultiUserProblem, algorithm: str, result: MultiPlacementResult, solve_s: float, settings: Mapping[str, Any]
) -> MultiPlan:
    """A :class:`MultiPlan` whose figures are the equal-share model's (or those of the result's shares)."""
    ev = evaluate_users(problem, result.placements, result.shares)
    return MultiPlan(
        algorithm=algorithm,
        placements={u: dict(e.placement) for u, e in ev.users.items()},
        users={
            u: UserFigures(e.latency_s, e.energy_source_j, e.energy_total_j, e.cost) for u, e in ev.users.items()
        },
        latency_mean_s=ev.latency_mean_s,
        latency_max_s=ev.latency_max_s,
        **_outcome(ev, result, solve_s, settings),
        shares=result.shares,
        convergence=tuple(result.convergence),
    )


def _outcome(
    ev: Evaluation | MultiEvaluation,
    result: PlacementResult | MultiPlacementResult,
    solve_s: float,
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """The fields a plan and a multi-user plan take alike from the cost model's figures and the planner's result."""
    return {
        "energy_source_j": ev.energy_source_j,
        "energy_total_j": ev.energy_total_j,
        "cost": ev.cost,
        "objective_value": ev.objective_value,
        "solve_s": solve_s,
        "feasible": ev.feasible,
        "optimal": bool(result.optimal and ev.feasible),
        "gap": result.gap,
        "settings": dict(settings),
        "violations": ev.violations,
        "note": result.note,
    }


__all__ = [
    "DEFAULT_PLANNER",
    "EXACT_INNER",
    "MultiPlacementResult",
    "PlacementResult",
    "Planner",
    "cheap_rows",
    "check_server",
    "make_multi_plan",
    "make_plan",
    "no_worse_than_cheap",
    "no_worse_than_cheap_multi",
    "with_chosen_compression",
]
