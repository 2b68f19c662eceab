"""The sections of a result with a problem: where each layer runs, per plan, and the planners compared.

The selector of a case offers every plan of the result, then every stage of
every upload plan; each is evaluated by :func:`tiercut.cost.evaluate` (the
figures shown) and drawn as the graph's colours, the devices it uses, one
query's timeline (:func:`tiercut.report.timeline.query_timeline`) and the
tensors crossing each link.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tiercut.cost import Evaluation, evaluate
from tiercut.problem import Plan, Problem
from tiercut.report import format as fmt
from tiercut.report.layout import layered_layout
from tiercut.report.markup import Case, script_json, table, text
from tiercut.report.svg import TimelineBar, attr, bar_chart, graph_svg, shorten, timeline_svg
from tiercut.report.timeline import QueryTimeline, query_timeline
from tiercut.upload.types import UploadPlan, UserUploadPlan

#: distinct upload-stage placements drawn with a timeline and link table per case (the graph shows every stage).
MAX_STAGE_VIEWS = 48
TRANSFER_FILL = "#7a7a7a"


def link_figures(link: object, src: str, dst: str) -> tuple[float | None, float | None]:
    """``(bytes per second, latency s)`` of ``link`` from ``src`` to ``dst``.

    DESIGN.md names a link's rate ``bandwidth_bytes_per_s`` (older code:
    ``bandwidth_bps``, also bytes per second) and lets a directional link give
    its ``b -> a`` figures as ``bandwidth_bytes_per_s_ba`` and ``latency_s_ba``;
    whichever the link type has is read.
    """
    reverse = getattr(link, "a", None) == dst and getattr(link, "b", None) == src
    bandwidth = latency = None
    names = ("bandwidth_bytes_per_s_ba",) if reverse else ()
    for name in (*names, "bandwidth_bytes_per_s", "bandwidth_bps"):
        value = getattr(link, name, None)
        if value is not None:
            bandwidth = float(value)
            break
    for name in (*(("latency_s_ba",) if reverse else ()), "latency_s"):
        value = getattr(link, name, None)
        if value is not None:
            latency = float(value)
            break
    return bandwidth, latency


# ---------------------------------------------------------------- what the selector offers
@dataclass(frozen=True)
class PlacementView:
    """One entry of a case's plan selector.

    Attributes:
        key: the option's value (unique in the case).
        label: what the selector shows.
        group: ``"plans"`` or ``"upload <algorithm>"``.
        placement: node -> device (every node).
        evaluation: the cost model's evaluation of the placement.
        plan: the plan it is (None for an upload stage).
        stage_note: for an upload stage, when it starts and what has arrived.
        detailed: draw its timeline and link table (False beyond :data:`MAX_STAGE_VIEWS`).
    """

    key: str
    label: str
    group: str
    placement: Mapping[str, str]
    evaluation: Evaluation
    plan: Plan | None = None
    stage_note: str = ""
    detailed: bool = True


def best_plan_name(plans: Mapping[str, Plan]) -> str | None:
    """The feasible plan with the lowest objective (a proven optimum first among ties), else the first."""
    feasible = {n: p for n, p in plans.items() if p.feasible and math.isfinite(p.objective_value)}
    if not feasible:
        return next(iter(plans), None)
    lowest = min(p.objective_value for p in feasible.values())
    tied = [n for n, p in feasible.items() if p.objective_value <= lowest * (1 + 1e-9) + 1e-15]
    return next((n for n in tied if feasible[n].optimal), tied[0])


def placement_views(problem: Problem, plans: Mapping[str, Plan],
                    uploads: Mapping[str, UploadPlan | UserUploadPlan]) -> list[PlacementView]:
    """The plans, then each upload plan's distinct stage placements, evaluated by the cost model."""
    views: list[PlacementView] = []
    for name, plan in plans.items():
        placement = {n.name: plan.placement.get(n.name, problem.source) for n in problem.graph}
        views.append(PlacementView(f"plan:{name}", name, "plans", placement, evaluate(problem, placement), plan=plan))
    seen: dict[tuple[str, ...], str] = {}
    detailed = 0
    for name, upload in uploads.items():
        for k, stage in enumerate(upload.stages):
            placement = {n.name: stage.placement.get(n.name, problem.source) for n in problem.graph}
            arrived = ", ".join(f"{s}: {c}" for s, c in stage.arrived.items()) if stage.arrived else f"{k} partition(s)"
            note = f"from {fmt.seconds(stage.from_s)}, arrived {arrived}"
            signature = tuple(placement[n.name] for n in problem.graph)
            same = seen.get(signature)
            label = f"{name} · stage {k} ({fmt.seconds(stage.from_s)})"
            if same is not None:
                note += f"; same placement as {same}"
            else:
                seen[signature] = label
            show = same is None and detailed < MAX_STAGE_VIEWS
            detailed += show
            views.append(PlacementView(f"upload:{name}:{k}", label, f"upload {name}", placement,
                                       evaluate(problem, placement), stage_note=note, detailed=show))
    return views


# ---------------------------------------------------------------- the sections
def _summary(case: Case) -> str:
    p = case.problem
    assert p is not None
    g = p.graph
    constraints = []
    c = p.constraints
    for metric, budget in c.budgets().items():
        constraints.append(f"{metric} ≤ {fmt.number(budget)}")
    if c.pinned:
        constraints.append(f"{len(c.pinned)} pinned node(s)")
    if c.memory:
        constraints.append("memory limits")
    return (
        f'<p class="summary">Model <b>{text(g.model or "?")}</b> ({text(g.granularity)} granularity): {len(g)} nodes, '
        f"{fmt.flops(g.total_flops)}, {fmt.size(g.total_param_bytes)} of weights. Source device <b>{text(p.source)}</b>; "
        f"objective {text(p.objective.describe())}; constraints: {text(', '.join(constraints) or 'none')}.</p>"
    )


def _devices_legend(case: Case) -> str:
    p = case.problem
    assert p is not None
    items = []
    for d in p.devices:
        k = case.device_index[d.name]
        how = p.provenance.get(d.name, "")
        title = f' title="{attr(how)}"' if how else ""
        items.append(f'<li{title}><span class="swatch d{k}"></span>{text(d.name)} <small>{text(d.tier)}</small></li>')
    return f'<ul class="legend">{"".join(items)}</ul>'


def _tooltips(case: Case) -> dict[str, str]:
    p = case.problem
    graph = p.graph if p is not None else case.result.graph
    assert graph is not None
    out = {}
    for node in graph:
        shape = "×".join(str(v) for v in node.out_shape) or "?"
        lines = [node.name, f"op {node.op}" + (f" ({node.module})" if node.module else ""),
                 f"{fmt.flops(node.flops)}, weights {fmt.size(node.param_bytes)}",
                 f"output {shape} {node.out_dtype}, {fmt.size(node.out_bytes)}"]
        if p is not None and not node.is_input:
            times = ", ".join(f"{d} {fmt.seconds(s)}" for d, s in p.compute_s.get(node.name, {}).items())
            lines.append(f"time: {times}")
        out[node.name] = "\n".join(lines)
    return out


def _graph_block(case: Case, device_of: Mapping[str, int | None], views_select: str = "") -> str:
    graph = case.problem.graph if case.problem is not None else case.result.graph
    assert graph is not None
    layout = layered_layout(graph)
    svg = graph_svg(f"{case.cid}-graph", graph, layout, device_of, _tooltips(case))
    toolbar = (
        f'<div class="toolbar" data-for="{case.cid}-graph">{views_select}'
        '<button type="button" data-action="zoom-in" title="zoom in">+</button>'
        '<button type="button" data-action="zoom-out" title="zoom out">−</button>'
        '<button type="button" data-action="fit" title="show the whole graph">fit</button>'
        '<button type="button" data-action="reset" title="actual size">1:1</button>'
        '<input type="search" class="node-search" placeholder="find a node…" aria-label="find a node">'
        '<span class="search-result"></span></div>'
    )
    hint = ('<p class="hint">Drag to pan, wheel to zoom, click the overview strip to jump; hover a box or an '
            "edge for its figures. Edges in red carry a tensor from one device to another.</p>")
    return f'<div class="graph-view">{toolbar}{svg}</div>{hint}'


def problem_section(case: Case) -> str:
    p = case.problem
    assert p is not None
    r = case.result
    views = placement_views(p, r.plans, r.upload_plans)
    chosen = best_plan_name(r.plans)
    if chosen is not None:
        default = f"plan:{chosen}"
    elif r.upload_plans:  # an upload result: first show where everything runs once it is all uploaded
        name, upload = next(iter(r.upload_plans.items()))
        default = f"upload:{name}:{len(upload.stages) - 1}"
    else:
        default = ""
    for view in views:
        plan = view.plan
        if plan is None or not view.evaluation.valid or not math.isfinite(plan.latency_s):
            continue
        if not math.isclose(view.evaluation.latency_s, plan.latency_s, rel_tol=1e-6, abs_tol=1e-12):
            case.warnings.append(
                f"plan {view.label!r} says latency {fmt.seconds(plan.latency_s)} but its problem gives "
                f"{fmt.seconds(view.evaluation.latency_s)} (the cost model's figure is shown)"
            )
    data = {
        "default": default,
        "options": {v.key: [case.device_index[v.placement[n.name]] for n in p.graph] for v in views},
    }
    default_view = next((v for v in views if v.key == default), None)
    device_of: dict[str, int | None] = (
        {n: case.device_index[d] for n, d in default_view.placement.items()} if default_view else {}
    )
    select = _select(case, views, default)
    parts = [f'<div class="block"><h3>Where each layer runs</h3>{_summary(case)}{_devices_legend(case)}',
             _graph_block(case, device_of, select),
             f'<script type="application/json" class="case-data">{script_json(data)}</script></div>']
    if not views:
        parts.append('<p class="note">The result holds no plan: the graph is drawn uncoloured.</p>')
    for number, view in enumerate(views):
        hidden = "" if view.key == default else " hidden"
        parts.append(f'<div class="per-plan" data-plan="{attr(view.key)}"{hidden}>{_per_view(case, view, number)}</div>')
    return "".join(parts)


def _select(case: Case, views: Sequence[PlacementView], default: str) -> str:
    if not views:
        return ""
    groups: dict[str, list[PlacementView]] = {}
    for view in views:
        groups.setdefault(view.group, []).append(view)
    options = []
    for group, members in groups.items():
        options.append(f'<optgroup label="{attr(group)}">')
        for view in members:
            selected = " selected" if view.key == default else ""
            extra = ""
            if view.plan is not None:
                extra = f" — {fmt.seconds(view.evaluation.latency_s)}" + ("" if view.plan.feasible else " (infeasible)")
            options.append(f'<option value="{attr(view.key)}"{selected}>{text(view.label)}{text(extra)}</option>')
        options.append("</optgroup>")
    return (f'<label class="plan-pick">colour by <select class="plan-select" data-case="{case.cid}">'
            f'{"".join(options)}</select></label>')


def _per_view(case: Case, view: PlacementView, number: int) -> str:
    p = case.problem
    assert p is not None
    ev = view.evaluation
    head = f"<h3>{text(view.label)}</h3>"
    if view.plan is not None:
        plan = view.plan
        bits = [f"latency <b>{fmt.seconds(ev.latency_s)}</b>", f"source energy {fmt.number(ev.energy_source_j)} J",
                f"total energy {fmt.number(ev.energy_total_j)} J", f"cost {fmt.number(ev.cost)}",
                "feasible" if plan.feasible else "<b class=bad>infeasible</b>",
                "proven optimal" if plan.optimal else "not proven optimal", f"solved in {fmt.seconds(plan.solve_s)}"]
        head += f'<p class="figures">{" · ".join(bits)}</p>'
        if plan.note:
            head += f'<p class="note">{text(plan.note)}</p>'
    else:
        head += (f'<p class="figures">latency <b>{fmt.seconds(ev.latency_s)}</b> · {text(view.stage_note)}</p>')
    for violation in ev.violations:
        head += f'<p class="bad">{text(violation)}</p>'
    if not ev.valid:
        return head + '<p class="bad">This placement cannot be evaluated (see above): no timeline.</p>'
    if not view.detailed:
        return head + ('<p class="note">The graph shows this stage; its timeline and link table are drawn for the '
                       f"first {MAX_STAGE_VIEWS} distinct stage placements only.</p>")
    timeline = query_timeline(p, view.placement, ev)
    return head + _devices_table(case, view, timeline) + _gantt(case, timeline, number) + _links(case, view, timeline)


def _devices_table(case: Case, view: PlacementView, timeline: QueryTimeline) -> str:
    p = case.problem
    assert p is not None
    counts: dict[str, int] = {}
    busy: dict[str, float] = {}
    for bar in timeline.bars:
        if bar.kind == "compute":
            counts[bar.device] = counts.get(bar.device, 0) + 1
            busy[bar.device] = busy.get(bar.device, 0.0) + bar.seconds
    rows = []
    for d in p.devices:
        if d.name not in counts and d.name != p.source:
            continue
        k = case.device_index[d.name]
        limit = "unlimited" if d.memory_bytes is None else fmt.size(d.memory_bytes)
        rows.append([f'<span class="swatch d{k}"></span>{text(d.name)}', text(d.tier), str(counts.get(d.name, 0)),
                     fmt.seconds(busy.get(d.name, 0.0)), fmt.size(view.evaluation.memory_bytes.get(d.name, 0)), limit])
    return table(["device", "tier", "nodes", "compute time", "weights held", "memory"], rows, cls="devices",
                  numeric_from=2)


def _gantt(case: Case, timeline: QueryTimeline, number: int) -> str:
    rows = list(timeline.rows)
    row_of = {r: i for i, r in enumerate(rows)}
    bars = []
    for bar in timeline.bars:
        if bar.kind == "compute":
            title = f"{bar.node} on {bar.device}: {fmt.seconds(bar.seconds)} (at {fmt.seconds(bar.start_s)})"
            bars.append(TimelineBar(row_of[bar.row], bar.start_s, bar.end_s, case.colours[bar.device], title,
                                    "bar compute", {"node": bar.node}))
        else:
            title = (f"{bar.node}'s output {bar.device} → {bar.dst}: {fmt.size(bar.out_bytes)} in "
                     f"{fmt.seconds(bar.seconds)} (at {fmt.seconds(bar.start_s)})")
            bars.append(TimelineBar(row_of[bar.row], bar.start_s, bar.end_s, TRANSFER_FILL, title,
                                    "bar transfer", {"node": bar.node}))
    svg = timeline_svg(f"{case.cid}-v{number}-gantt", rows, bars, total=timeline.end_s,
                       axis_label="time since the query started", marks=[(timeline.end_s, "result back on the source")])
    ev = timeline.evaluation
    return (f'<h4>One query, step by step</h4><p class="hint">The cost model\'s sequential schedule (docs/DESIGN.md): '
            f"nodes in graph order, each tensor sent as soon as it is made; {fmt.seconds(ev.compute_s)} computing + "
            f"{fmt.seconds(ev.transfer_s)} on links = {fmt.seconds(ev.latency_s)}. Wheel to zoom in time, drag to pan."
            f'</p><div class="timeline-view">{svg}</div>')


def _links(case: Case, view: PlacementView, timeline: QueryTimeline) -> str:
    p = case.problem
    assert p is not None
    transfers = [b for b in timeline.bars if b.kind == "transfer"]
    if not transfers:
        return "<h4>Tensors crossing links</h4><p class=\"note\">None: every node runs on one device.</p>"
    consumers = p.graph.consumers()
    totals: dict[str, list[float]] = {}
    rows = []
    for bar in transfers:
        node = p.graph[bar.node]
        readers = [c for c in consumers[bar.node] if view.placement[c] == bar.dst]
        if node.is_output and bar.dst == p.source:
            readers.append("(result)")
        if not readers:
            readers = ["(relayed)"]
        shape = "×".join(str(v) for v in node.out_shape) or "?"
        rows.append([text(bar.row), text(bar.node), text(shorten(", ".join(readers), 60)), text(f"{shape} {node.out_dtype}"),
                     fmt.size(bar.out_bytes), fmt.seconds(bar.seconds),
                     f"{bar.seconds / timeline.end_s * 100:.1f}%" if timeline.end_s > 0 else "-"])
        t = totals.setdefault(bar.row, [0, 0.0, 0.0])
        t[0] += 1
        t[1] += bar.out_bytes
        t[2] += bar.seconds
    summary = []
    for row, (count, nbytes, seconds) in totals.items():
        src, _, dst = row.partition(" → ")
        link = p.link(src, dst)
        bandwidth, latency = link_figures(link, src, dst) if link is not None else (None, None)
        summary.append([text(row), fmt.rate(bandwidth), fmt.seconds(latency), str(int(count)), fmt.size(nbytes),
                        fmt.seconds(seconds)])
    return ("<h4>Tensors crossing links</h4>"
            + table(["link", "bandwidth", "latency", "tensors", "bytes", "time"], summary, cls="link-totals")
            + table(["link", "tensor", "read there by", "shape", "bytes", "time", "of the query"], rows,
                     cls="transfers", numeric_from=4))


def graph_only_section(case: Case) -> str:
    graph = case.result.graph
    assert graph is not None
    rows = [[text(op), fmt.flops(total), f"{total / graph.total_flops * 100:.1f}%" if graph.total_flops else "-"]
            for op, total in list(graph.flops_by_op().items())[:12]]
    return (f'<div class="block"><h3>Layer graph</h3><p class="summary">{len(graph)} nodes, '
            f"{fmt.flops(graph.total_flops)}, {fmt.size(graph.total_param_bytes)} of weights "
            f"({text(graph.granularity)} granularity). No devices: plan it to see where each layer runs.</p>"
            + _graph_block(case, {n.name: None for n in graph}) + "<h4>FLOPs by op</h4>"
            + table(["op", "FLOPs", "share"], rows, cls="ops") + "</div>")


def comparison_section(case: Case) -> str:
    plans = case.result.plans
    best_name = best_plan_name(plans)
    best = plans[best_name].objective_value if best_name else math.nan
    rows, attrs, bars = [], [], []
    for name, plan in plans.items():
        ratio = plan.objective_value / best if plan.feasible and best and math.isfinite(best) and best > 0 else math.nan
        devices = ", ".join(sorted(set(plan.placement.values())))
        rows.append([text(name), fmt.number(plan.objective_value), fmt.number(ratio, 4) if ratio == ratio else "-",
                     fmt.seconds(plan.latency_s), f"{fmt.number(plan.energy_source_j)} J",
                     f"{fmt.number(plan.energy_total_j)} J", fmt.number(plan.cost), text(shorten(devices, 40)),
                     "yes" if plan.feasible else "<b class=bad>no</b>", "yes" if plan.optimal else "-",
                     fmt.seconds(plan.solve_s)])
        attrs.append(f' data-plan="plan:{attr(name)}" class="pick{" best" if name == best_name else ""}"')
        colour = "#2b7bb9" if plan.feasible else "#c0392b"
        bars.append((name, plan.objective_value if plan.feasible else math.nan, colour,
                     "" if plan.feasible else "infeasible"))
    objective = case.problem.objective.describe() if case.problem is not None else "objective"
    return ('<div class="block"><h3>Planners compared</h3>'
            f'<p class="hint">Objective: {text(objective)}; "vs best" = objective / best feasible objective. '
            "Click a row to colour the graph by that plan.</p>"
            + table(["planner", "objective", "vs best", "latency", "source energy", "total energy", "cost", "devices",
                      "feasible", "optimal", "solve"], rows, cls="planners", row_attrs=attrs)
            + bar_chart(f"{case.cid}-planners", bars, value_format=fmt.number) + "</div>")


__all__ = [
    "MAX_STAGE_VIEWS",
    "PlacementView",
    "best_plan_name",
    "comparison_section",
    "graph_only_section",
    "link_figures",
    "placement_views",
    "problem_section",
]
