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
from dataclasses import dataclass
from typing import Any, ClassVar

from tiercut.cost import evaluate, evaluate_users
from tiercut.errors import TiercutError
from tiercut.problem import MultiPlan, MultiUserProblem, Plan, Problem, UserFigures
from tiercut.settings import Configurable


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
    """

    placement: Mapping[str, str]
    optimal: bool = False
    gap: float | None = None
    note: str = ""


@dataclass(frozen=True)
class MultiPlacementResult:
    """What a planner's ``_solve_multi`` returns: user -> placement, and what it proved."""

    placements: Mapping[str, Mapping[str, str]]
    optimal: bool = False
    gap: float | None = None
    note: str = ""


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
        return self.single_user and self.check(problem) is None

    # ----------------------------------------------------------- solving
    def solve(self, problem: Problem) -> Plan:
        """Plan ``problem``: the placement from :meth:`_solve`, the figures from the cost model."""
        if isinstance(problem, MultiUserProblem):
            raise TiercutError(f"planner {self.name!r}: a multi-user problem goes to solve_multi (or tiercut.plan.plan)")
        if not self.single_user:
            raise TiercutError(f"planner {self.name!r} plans multi-user problems only; give it a MultiUserProblem")
        reason = self.check(problem)
        if reason is not None:
            raise TiercutError(f"planner {self.name!r} cannot solve {problem.name or 'this problem'}: {reason}")
        start = time.perf_counter()
        result = self._solve(problem)
        solve_s = time.perf_counter() - start
        return make_plan(problem, self.name, result, solve_s, self.get_params())

    def solve_multi(self, problem: MultiUserProblem) -> MultiPlan:
        """Plan a multi-user problem (equal-share model)."""
        reason = self.check_multi(problem)
        if reason is not None:
            raise TiercutError(f"planner {self.name!r} cannot solve multi-user {problem.name or 'problem'}: {reason}")
        start = time.perf_counter()
        result = self._solve_multi(problem)
        solve_s = time.perf_counter() - start
        return make_multi_plan(problem, self.name, result, solve_s, self.get_params())

    def _solve(self, problem: Problem) -> PlacementResult:
        raise TiercutError(f"planner {self.name!r} plans multi-user problems only")

    def _solve_multi(self, problem: MultiUserProblem) -> MultiPlacementResult:
        raise TiercutError(f"planner {self.name!r} plans single-user problems only")


def make_plan(
    problem: Problem, algorithm: str, result: PlacementResult, solve_s: float, settings: Mapping[str, Any]
) -> Plan:
    """A :class:`Plan` whose figures are the cost model's for ``result.placement``."""
    ev = evaluate(problem, result.placement)
    return Plan(
        algorithm=algorithm,
        placement=dict(ev.placement),
        latency_s=ev.latency_s,
        energy_source_j=ev.energy_source_j,
        energy_total_j=ev.energy_total_j,
        cost=ev.cost,
        objective_value=ev.objective_value,
        solve_s=solve_s,
        feasible=ev.feasible,
        optimal=bool(result.optimal and ev.feasible),
        gap=result.gap,
        settings=dict(settings),
        violations=ev.violations,
        memory_bytes=dict(ev.memory_bytes),
        note=result.note,
    )


def make_multi_plan(
    problem: MultiUserProblem, algorithm: str, result: MultiPlacementResult, solve_s: float, settings: Mapping[str, Any]
) -> MultiPlan:
    """A :class:`MultiPlan` whose figures are the equal-share model's."""
    ev = evaluate_users(problem, result.placements)
    return MultiPlan(
        algorithm=algorithm,
        placements={u: dict(e.placement) for u, e in ev.users.items()},
        users={
            u: UserFigures(e.latency_s, e.energy_source_j, e.energy_total_j, e.cost) for u, e in ev.users.items()
        },
        latency_mean_s=ev.latency_mean_s,
        latency_max_s=ev.latency_max_s,
        energy_source_j=ev.energy_source_j,
        energy_total_j=ev.energy_total_j,
        cost=ev.cost,
        objective_value=ev.objective_value,
        solve_s=solve_s,
        feasible=ev.feasible,
        optimal=bool(result.optimal and ev.feasible),
        gap=result.gap,
        settings=dict(settings),
        violations=ev.violations,
        note=result.note,
    )


__all__ = ["MultiPlacementResult", "PlacementResult", "Planner", "make_multi_plan", "make_plan"]
