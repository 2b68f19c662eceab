"""The plan step: one planner, or several compared, on a single- or multi-user problem.

- :func:`plan` -> a :class:`~tiercut.problem.Plan` (or ``MultiPlan``);
- :func:`compare` -> a :class:`Comparison`: every plan, one typed
  :class:`PlanRecord` row per planner (``comparison.to_dataframe()`` with pandas);
- :func:`baselines` -> local-only and all-on-the-best-server plans;
- :func:`best_plan` -> the plan a comparison recommends (feasible, lowest
  objective, a proven optimum preferred among ties).

Solve times exclude imports: :func:`warm_imports` loads every solver library
once before the first planner's clock starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.pipeline.progress import SILENT, Progress
from tiercut.problem import MultiPlan, MultiUserProblem, Plan, Problem

_WARM = False


def warm_imports() -> None:
    """Import what planners import lazily (SciPy's MILP/HiGHS, igraph), so no solve time includes an import."""
    global _WARM
    if _WARM:
        return
    import igraph  # noqa: F401  (min-cut)
    import scipy.optimize  # noqa: F401  (ILP: milp / HiGHS)

    import tiercut.cost
    import tiercut.plan  # noqa: F401

    _WARM = True


def parse_algorithms(algorithm: str | Sequence[str] | None) -> list[str] | None:
    """Planner names from ``"ilp"``, ``"ilp,mincut"`` or a list (None: every planner); unknown names are an error."""
    from tiercut.plan import PLANNERS

    if algorithm is None:
        return None
    names = [a.strip() for a in (algorithm.split(",") if isinstance(algorithm, str) else algorithm) if a.strip()]
    if not names:
        return None
    for name in names:
        if name not in PLANNERS:
            raise TiercutError(f"planner {name!r} is not known; use one of {', '.join(PLANNERS)} (see 'tiercut plan --list')")
    return names


def plan(
    problem: Problem | MultiUserProblem, algorithm: str = "ilp", *, progress: Progress = SILENT, **settings: Any
) -> Plan | MultiPlan:
    """Solve ``problem`` with the planner registered as ``algorithm`` and its ``settings``."""
    from tiercut.plan import plan as solve
    from tiercut.problem import JointProblem

    if not isinstance(problem, JointProblem):  # a joint problem's planners are the joint ones (tiercut.plan.joint)
        parse_algorithms(algorithm)
    warm_imports()
    with progress.step(f"planning with {algorithm}"):
        return solve(problem, algorithm, **settings)


@dataclass(frozen=True)
class PlanRecord:
    """One planner's row of a comparison: its figures from the cost model, and how it got them."""

    planner: str
    objective_value: float
    latency_s: float
    energy_source_j: float
    energy_total_j: float
    cost: float
    feasible: bool
    optimal: bool
    solve_s: float
    devices: tuple[str, ...]
    problem: str = ""

    @classmethod
    def of(cls, name: str, plan: Plan | MultiPlan, problem_name: str = "") -> PlanRecord:
        if isinstance(plan, MultiPlan):
            latency = plan.latency_mean_s
            used = {d for placement in plan.placements.values() for d in placement.values()}
        else:
            latency = plan.latency_s
            used = set(plan.placement.values())
        return cls(
            planner=name, objective_value=plan.objective_value, latency_s=latency, energy_source_j=plan.energy_source_j,
            energy_total_j=plan.energy_total_j, cost=plan.cost, feasible=plan.feasible, optimal=plan.optimal,
            solve_s=plan.solve_s, devices=tuple(sorted(used)), problem=problem_name,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def records_to_dataframe(records: Sequence[Any]) -> Any:
    """A pandas DataFrame with one row per record (pandas is optional: a clear error without it)."""
    try:
        import pandas as pd
    except ImportError:
        raise TiercutError("to_dataframe needs pandas; install it (pip install pandas) or use .records") from None
    return pd.DataFrame([r.to_dict() for r in records])


@dataclass(frozen=True)
class Comparison:
    """Several planners on one problem.

    Attributes:
        problem: the problem every planner solved.
        plans: planner name -> its plan, in the order they ran.
        skipped: planners asked for that do not apply to this problem.
    """

    problem: Problem | MultiUserProblem
    plans: dict[str, Plan | MultiPlan]
    skipped: tuple[str, ...] = ()
    records: tuple[PlanRecord, ...] = field(init=False)

    def __post_init__(self) -> None:
        name = self.problem.name
        object.__setattr__(self, "records", tuple(PlanRecord.of(k, p, name) for k, p in self.plans.items()))

    @property
    def best(self) -> str | None:
        """The recommended planner's name (see :func:`best_plan`), None when no plan is feasible."""
        return best_plan(self.plans)

    def to_dataframe(self) -> Any:
        """One row per planner (:class:`PlanRecord` fields); needs pandas."""
        return records_to_dataframe(self.records)

    def to_dict(self) -> dict[str, Any]:
        """``{"problem", "plans"}``: what ``tiercut compare --json`` prints and ``tiercut report`` reads."""
        return {"problem": self.problem.to_dict(), "plans": {k: p.to_dict() for k, p in self.plans.items()}}


def best_plan(plans: dict[str, Plan | MultiPlan]) -> str | None:
    """The feasible plan of lowest objective; among ties (1e-9 relative) a proven optimum, else the first."""
    feasible = {name: p for name, p in plans.items() if p.feasible}
    if not feasible:
        return None
    lowest = min(p.objective_value for p in feasible.values())
    tied = [n for n, p in feasible.items() if p.objective_value <= lowest * (1 + 1e-9)]
    return next((n for n in tied if feasible[n].optimal), tied[0])


def compare(
    problem: Problem | MultiUserProblem,
    algorithms: str | Sequence[str] | None = None,
    *,
    progress: Progress = SILENT,
) -> Comparison:
    """Every applicable registered planner (or ``algorithms``: names or ``"a,b"``) with default settings."""
    from tiercut.plan import PLANNERS, get_planner

    names = parse_algorithms(algorithms) or list(PLANNERS)
    warm_imports()
    plans: dict[str, Plan | MultiPlan] = {}
    skipped = []
    with progress.step(f"comparing planners on {problem.name or 'the problem'}"):
        for index, name in enumerate(names):
            progress.advance(index, len(names), name)
            planner = get_planner(name)
            if not planner.applicable(problem):
                skipped.append(name)
                continue
            if isinstance(problem, MultiUserProblem):
                plans[name] = planner.solve_multi(problem)
            else:
                plans[name] = planner.solve(problem)
        progress.advance(len(names), len(names), "done")
    return Comparison(problem, plans, tuple(skipped))


def baselines(problem: Problem) -> dict[str, Plan]:
    """``local`` (everything on the source) and ``all on SERVER`` (the best server the source reaches), where they apply."""
    from tiercut.plan import get_planner

    warm_imports()
    out: dict[str, Plan] = {}
    local = get_planner("local")
    if local.applicable(problem):
        out["local"] = local.solve(problem)
    planner = get_planner("all-on")
    if planner.applicable(problem):
        out[f"all on {planner.target(problem)}"] = planner.solve(problem)
    return out


def best_cloud_only(problem: Problem) -> Plan | None:
    """The fastest feasible all-on-one-cloud-device plan, None without a cloud device."""
    from tiercut.plan import get_planner

    clouds = [get_planner("all-on", device=d.name).solve(problem) for d in problem.devices if d.tier == "cloud"]
    return min((c for c in clouds if c.feasible), key=lambda c: c.latency_s, default=None)


def placement_segments(problem: Problem, placement: Any) -> list[tuple[str, str, str, int]]:
    """(first node, last node, device, count) for runs of consecutive non-input nodes on one device."""
    mapping = placement.placement if isinstance(placement, Plan) else placement
    segments: list[tuple[str, str, str, int]] = []
    for node in problem.graph:
        if node.is_input:
            continue
        device = mapping[node.name]
        if segments and segments[-1][2] == device:
            first, _, _, count = segments[-1]
            segments[-1] = (first, node.name, device, count + 1)
        else:
            segments.append((node.name, node.name, device, 1))
    return segments


def speedup(baseline: Plan, plan: Plan) -> float:
    """``baseline latency / plan latency`` (nan where either is not finite or the plan takes no time)."""
    if not (math.isfinite(baseline.latency_s) and math.isfinite(plan.latency_s)) or plan.latency_s <= 0:
        return float("nan")
    return baseline.latency_s / plan.latency_s


__all__ = [
    "Comparison",
    "PlanRecord",
    "baselines",
    "best_cloud_only",
    "best_plan",
    "compare",
    "parse_algorithms",
    "placement_segments",
    "plan",
    "records_to_dataframe",
    "speedup",
    "warm_imports",
]
