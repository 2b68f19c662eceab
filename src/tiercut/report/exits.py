"""A plan with early exits in the report: where each layer runs, the exits, and the accuracy-latency curve.

The curve is Edgent's trade-off (Li, Zhou, Chen, IEEE TWC 2019): every
configuration the planner compared (Edgent: each exit point's right-sized
model; DDNN: each mapping of exits to tiers) as expected latency against
accuracy, the chosen plan's placement over confidence thresholds tuned for
growing accuracy drops (:func:`tiercut.exits.tradeoff.threshold_tradeoff`),
the chosen point marked, and the latency SLO when there is one. Every figure
comes from the result's exit problem (:mod:`tiercut.exits.cost`).
"""

from __future__ import annotations

import math

from tiercut.report import format as fmt
from tiercut.report.markup import Case, table, text
from tiercut.report.plans import _devices_legend, _graph_block, _summary
from tiercut.report.svg import Series, attr, line_chart


def _percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def exits_section(case: Case) -> str:
    r = case.result
    ep, plan = r.exit_problem, r.exit_plan
    assert ep is not None and plan is not None
    p = ep.problem
    device_of = {n.name: case.device_index[plan.placement.get(n.name, p.source)] if n.name in plan.placement or n.is_input
                 else None for n in p.graph}
    limits = []
    if ep.latency_slo_s is not None:
        limits.append(f"latency SLO {fmt.seconds(ep.latency_slo_s)}")
    if ep.accuracy_min is not None:
        limits.append(f"accuracy ≥ {_percent(ep.accuracy_min)}")
    verdict = "feasible" if plan.feasible else "INFEASIBLE: " + "; ".join(plan.violations)
    head = (f'<p class="summary exit-summary">Plan <b>{text(plan.algorithm)}</b> with exits '
            f"<b>{text(' + '.join(plan.active))}</b> ({text(ep.rule)} rule; {text(', '.join(limits) or 'no limits')}): "
            f"expected latency {text(fmt.seconds(plan.latency_s))} (worst {text(fmt.seconds(plan.worst_latency_s))}), "
            f"accuracy {text(_percent(plan.accuracy))}, {text(verdict)}. Layers no active exit needs are left "
            "uncoloured: they are not deployed.</p>")
    parts = [f'<div class="block"><h3>Where each layer runs</h3>{_summary(case)}{head}{_devices_legend(case)}',
             _graph_block(case, device_of), "</div>"]
    rows, attrs = [], []
    for name, rate, lat in zip(plan.active, plan.exit_rates, plan.exit_latency_s, strict=True):
        e = ep.exit(name)
        threshold = ep.thresholds.get(name) if name != plan.active[-1] else None
        rows.append([text(name), text(e.after), text(_percent(e.accuracy)),
                     "-" if threshold is None else text(f"{threshold:.4g}"), text(f"{rate:.3f}"),
                     text(fmt.seconds(lat)), text(plan.placement.get(e.output, p.source))])
        attrs.append(f' data-exit="{attr(name)}"')
    parts.append('<div class="block"><h3>Exits</h3><p class="hint">Each active exit: its accuracy when every query '
                 "answers there, the threshold of its confidence rule, the share of held-out queries that leave there, "
                 "the latency of such a query (it sends nothing past its exit) and the device that decides.</p>"
                 + table(["exit", "after", "accuracy", "threshold", "exit rate", "latency", "decided on"], rows,
                         cls="exits", row_attrs=attrs, numeric_from=2) + "</div>")
    parts.append(_curve(case))
    return "".join(parts)


def _curve(case: Case) -> str:
    from tiercut.exits.tradeoff import threshold_tradeoff

    ep, plan = case.result.exit_problem, case.result.exit_plan
    series = []
    rows = sorted((row for row in plan.candidates if _finite(row.get("latency_s")) and _finite(row.get("accuracy"))),
                  key=lambda row: row["latency_s"])
    if rows:
        name = ("exit points (Edgent: every query leaves there)" if "exit" in rows[0]
                else "configurations the planner compared")
        series.append(Series(name, [row["latency_s"] for row in rows], [row["accuracy"] for row in rows], "#4e79a7",
                             markers=True))
    if len(plan.active) > 1:
        points = sorted(threshold_tradeoff(ep, plan.placement, plan.active), key=lambda q: q.latency_s)
        series.append(Series("chosen placement, thresholds tuned for accuracy drops 0..100 %",
                             [q.latency_s for q in points], [q.accuracy for q in points], "#59a14f", dashed=True,
                             markers=True))
    series.append(Series(f"chosen: {' + '.join(plan.active)}", [plan.latency_s], [plan.accuracy], "#e15759",
                         markers=True))
    vlines = [(ep.latency_slo_s, f"latency SLO {fmt.seconds(ep.latency_slo_s)}")] if ep.latency_slo_s is not None else []
    chart = line_chart(f"{case.cid}-exit-curve", series, x_label="expected latency per query",
                       y_label="accuracy (held-out digits)", y_format=_percent, vlines=vlines)
    return ('<div class="block"><h3>Accuracy against latency</h3><p class="hint">Edgent\'s trade-off: each '
            "configuration's expected latency and accuracy (cost model and the exits' held-out measurements); the "
            "chosen plan in red; the vertical line is the latency SLO.</p>" + chart + "</div>")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


__all__ = ["exits_section"]
