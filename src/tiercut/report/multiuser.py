"""The summary section of a multi-user result (``plan --users`` / ``compare --users``).

It shows, for the recommended multi-user plan, every user's placement as
runs of layers on devices and its figures under the equal-share model
(:func:`tiercut.cost.evaluate_users`: a device used by ``n`` users gives
each ``1/n`` of its speed, a link ``1/n`` of its bandwidth); and, when the
result compares several planners, their multi-user figures side by side.
Each user then gets a section of its own (the next sections of the page),
drawn like a single-user plan on the user's problem as shared with the
others (:func:`tiercut.plan.multiuser.response_problem`).
"""

from __future__ import annotations

import math

from tiercut.report import format as fmt
from tiercut.report.markup import Case, table, text
from tiercut.report.svg import attr, bar_chart


def _segments(graph: object, placement: dict[str, str]) -> str:
    runs: list[list[object]] = []
    for node in graph:  # type: ignore[attr-defined]
        if node.is_input:
            continue
        device = placement.get(node.name, "?")
        if runs and runs[-1][0] == device:
            runs[-1][1] = int(runs[-1][1]) + 1  # type: ignore[call-overload]
        else:
            runs.append([device, 1])
    return " → ".join(f"{count} on {device}" for device, count in runs)


def multi_section(case: Case) -> str:
    """The users of the recommended plan, and the planners compared (when several)."""
    r = case.result
    problem = r.multi_problem
    assert problem is not None and r.multi_plans
    chosen = next(iter(r.users[0].plans)) if r.users else next(iter(r.multi_plans))
    plan = r.multi_plans[chosen]
    rows, ids = [], []
    for k, user in enumerate(problem.users):
        figures = plan.users[user.name]
        placement = dict(plan.placements[user.name])
        used = sorted({placement.get(n.name, "?") for n in user.problem.graph if not n.is_input})
        rows.append([
            text(user.name), text(user.problem.graph.model or "?"), text(user.problem.source),
            fmt.number(user.query_rate_hz), text(_segments(user.problem.graph, placement)), text(", ".join(used)),
            fmt.seconds(figures.latency_s), f"{fmt.number(figures.energy_source_j)} J", fmt.number(figures.cost),
        ])
        ids.append(f' data-user="{attr(user.name)}" class="user-row" id="{case.cid}-user{k}"')
    parts = [
        f'<div class="block"><h3>Users of {text(chosen)} (equal-share model)</h3>',
        f'<p class="summary">{len(problem.users)} users share {len(problem.devices)} devices; objective '
        f"{text(problem.objective.describe())} ({text(problem.objective.aggregate)} over users). Plan "
        f"<b>{text(chosen)}</b>: mean latency {fmt.seconds(plan.latency_mean_s)}, max {fmt.seconds(plan.latency_max_s)}, "
        f"total energy {fmt.number(plan.energy_total_j)} J, feasible {'yes' if plan.feasible else '<b class=bad>no</b>'}. "
        "A device used by n users gives each 1/n of its speed, a link 1/n of its bandwidth. "
        "Each user's layers are drawn in the sections that follow.</p>",
        table(["user", "model", "source", "queries/s", "placement (layers on device, in order)", "devices",
               "latency", "source energy", "cost"], rows, cls="users", row_attrs=ids),
    ]
    for violation in plan.violations:
        parts.append(f'<p class="note">violation: {text(violation)}</p>')
    parts.append("</div>")
    if len(r.multi_plans) > 1:
        feasible = [p.objective_value for p in r.multi_plans.values() if p.feasible and math.isfinite(p.objective_value)]
        best = min(feasible) if feasible else math.nan
        rows, bars = [], []
        for name, p in r.multi_plans.items():
            ratio = p.objective_value / best if p.feasible and best and math.isfinite(best) and best > 0 else math.nan
            rows.append([text(name), fmt.number(p.objective_value), fmt.number(ratio, 4) if ratio == ratio else "-",
                         fmt.seconds(p.latency_mean_s), fmt.seconds(p.latency_max_s), f"{fmt.number(p.energy_total_j)} J",
                         fmt.number(p.cost), "yes" if p.feasible else "<b class=bad>no</b>", "yes" if p.optimal else "-",
                         fmt.seconds(p.solve_s)])
            colour = "#2b7bb9" if p.feasible else "#c0392b"
            bars.append((name, p.objective_value if p.feasible else math.nan, colour, "" if p.feasible else "infeasible"))
        parts.append('<div class="block"><h3>Multi-user planners compared</h3>'
                     + table(["planner", "objective", "vs best", "mean latency", "max latency", "total energy", "cost",
                              "feasible", "optimal", "solve"], rows, cls="planners multi")
                     + bar_chart(f"{case.cid}-multi-planners", bars, value_format=fmt.number) + "</div>")
    return "".join(parts)


__all__ = ["multi_section"]
