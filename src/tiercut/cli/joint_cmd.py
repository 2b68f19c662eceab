"""``tiercut plan --models a,b --rates 10,5``: several models planned jointly on shared devices and links.

Thin: parse the lists, build one single-model problem per model over the
same environment (:func:`tiercut.cli.plan_cmd.build_cli_problem`), wrap them
in a :class:`~tiercut.problem.JointProblem` (the shared-capacity model,
docs/cost-model.md "Several DNNs"), plan with a joint planner
(:func:`tiercut.plan.plan_joint`), print the plan beside the independent
plans, or the JSON ``{"problem": ..., "plan": ...}``.
"""

from __future__ import annotations

import math
from typing import Any

from tiercut.errors import TiercutError
from tiercut.problem import JointPlan, JointProblem, Objective, UserProblem


def parse_models(models: str) -> list[str]:
    names = [m.strip() for m in models.split(",")]
    if not names or any(not m for m in names):
        raise TiercutError(f"--models {models!r} must be comma-separated model names, e.g. --models resnet18,mobilenet_v2")
    return names


def parse_rates(rates: str | None, count: int) -> list[float]:
    """``--rates`` as queries per second, one per model (default: 1 each)."""
    if rates is None:
        return [1.0] * count
    out = []
    for text in rates.split(","):
        try:
            value = float(text)
        except ValueError:
            raise TiercutError(f"--rates item {text.strip()!r} is not a number; give queries per second, e.g. 10,5") from None
        if not (math.isfinite(value) and value > 0):
            raise TiercutError(f"--rates item {text.strip()!r} must be a rate > 0 queries per second")
        out.append(value)
    if len(out) != count:
        raise TiercutError(f"--rates gives {len(out)} rates for {count} models; give one rate per model")
    return out


def joint_objective(objective: str | None, aggregate: str) -> Objective:
    kind = objective or "throughput"
    if kind not in ("throughput", "latency"):
        raise TiercutError(f"--objective {kind!r} is not one of a joint plan's: throughput or latency")
    if aggregate not in ("mean", "max"):
        raise TiercutError(f"--aggregate {aggregate!r} is not known; use mean or max")
    return Objective(kind, {}, aggregate)


def build_joint_problem(models: str, rates: str | None, build_one: Any, objective: str | None,
                        aggregate: str) -> JointProblem:
    """The joint problem: ``build_one(model_name)`` gives each model's single-model problem (same environment)."""
    names = parse_models(models)
    rate_values = parse_rates(rates, len(names))
    goal = joint_objective(objective, aggregate)
    entries = []
    seen: dict[str, int] = {}
    for name, rate in zip(names, rate_values, strict=True):
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name}#{seen[name]}"
        entries.append(UserProblem(label, build_one(name), rate))
    return JointProblem(tuple(entries), goal, name=" + ".join(names))


def print_joint_plan(problem: JointProblem, plan: JointPlan, alone: JointPlan) -> None:
    from rich.console import Console
    from rich.table import Table

    from tiercut.cli.plan_cmd import _human
    from tiercut.pipeline import placement_segments

    console = Console(width=None if Console().is_terminal else 160)
    console.print(f"[bold]{problem.name}[/bold]: {plan.algorithm} placement of {len(problem.models)} models on shared "
                  f"devices (shared-capacity model, objective {problem.objective.describe()}"
                  f"{'' if problem.objective.kind == 'throughput' else ', ' + problem.objective.aggregate})")
    table = Table()
    for column in ("model", "rate", "source", "placement (layers on device, in order)", "latency", "own bottleneck"):
        table.add_column(column)
    for model in problem.models:
        segments = placement_segments(model.problem, plan.placements[model.name])
        figures = plan.models[model.name]
        table.add_row(model.name, f"{model.query_rate_hz:g}/s", model.problem.source,
                      " -> ".join(f"{count} on {device}" for _, _, device, count in segments),
                      _human(figures.latency_s, "s"), _human(figures.bottleneck_s, "s"))
    console.print(table)
    figures = Table()
    for column in ("plan", "max utilisation", "at stage", "rates can grow", "mean latency", "max latency", "feasible"):
        figures.add_column(column, justify="left" if column in ("plan", "at stage") else "right")
    for label, p in ((plan.algorithm, plan), ("independent (each alone)", alone)):
        figures.add_row(label, f"{p.max_utilisation:.4g}", p.bottleneck_stage, f"{p.throughput_scale:.3g}x",
                        _human(p.latency_mean_s, "s"), _human(p.latency_max_s, "s"), "yes" if p.feasible else "NO")
    console.print(figures)
    console.print(f"solved in {plan.solve_s * 1e3:.1f} ms; optimal {'yes' if plan.optimal else '-'}")
    if plan.note:
        console.print(f"note: {plan.note}")
    for violation in plan.violations:
        console.print(f"[red]violation:[/red] {violation}")


__all__ = ["build_joint_problem", "joint_objective", "parse_models", "parse_rates", "print_joint_plan"]
