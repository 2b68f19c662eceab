"""One self-contained HTML page from result files.

A page holds one section per result (a "case"). A case with a problem shows
the layer graph coloured by device, and for the plan picked in its selector
(every plan of the result, then every distinct stage of every upload plan):
the devices used, one query's timeline over devices and links, and the
tensors crossing each link. Around it: the planner comparison, the upload
stages, and the simulator's or the runtime's curves where the result has
them.

Every figure comes from the result or from :func:`tiercut.cost.evaluate` on
the result's problem (the upload curves from :func:`tiercut.upload.curve`);
the page recomputes nothing itself. The style sheet and script are package
files inlined into the page, which fetches nothing (its Content Security
Policy forbids any fetch), so it works offline and can be mailed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from importlib import resources

from tiercut.cost import Evaluation, evaluate
from tiercut.errors import TiercutError
from tiercut.problem import Plan, Problem
from tiercut.report import format as fmt
from tiercut.report.inputs import ReportInput, RunTrace, SimulationTrace
from tiercut.report.layout import layered_layout
from tiercut.report.svg import Series, TimelineBar, attr, bar_chart, graph_svg, line_chart, shorten, timeline_svg
from tiercut.report.timeline import QueryTimeline, query_timeline
from tiercut.upload.types import UploadPlan, UserUploadPlan

#: distinct upload-stage placements drawn with a timeline and link table per case (the graph shows every stage).
MAX_STAGE_VIEWS = 48
#: at most this many users get their own simulator curve; beyond, the mean over users is drawn.
MAX_USER_CURVES = 8
#: partition arrivals marked on a chart at most.
MAX_MARKS = 200
TRANSFER_FILL = "#7a7a7a"


def _asset(name: str) -> str:
    return resources.files("tiercut.report").joinpath("assets", name).read_text(encoding="utf-8")


def _script_json(value: object) -> str:
    """JSON safe inside a ``<script>`` element."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, cls: str = "", row_attrs: Sequence[str] = (),
           numeric_from: int = 1) -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f'<th{" class=num" if i >= numeric_from else ""}>{escape(h)}</th>' for i, h in enumerate(headers))
    body = []
    for k, row in enumerate(rows):
        extra = row_attrs[k] if k < len(row_attrs) else ""
        cells = "".join(f'<td{" class=num" if i >= numeric_from else ""}>{c}</td>' for i, c in enumerate(row))
        body.append(f"<tr{extra}>{cells}</tr>")
    return f'<table class="{attr(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _e(value: object) -> str:
    return escape(str(value))


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


# ---------------------------------------------------------------- one case
class _Case:
    """Builds one case's HTML (a class only to share its id, problem and colours among the parts)."""

    def __init__(self, number: int, result: ReportInput) -> None:
        self.cid = f"c{number}"
        self.result = result
        self.problem = result.problem
        self.warnings: list[str] = []
        if self.problem is not None:
            pairs = [(d.name, d.tier) for d in self.problem.devices]
            self.colours = fmt.device_colours(pairs)
            self.device_index = {d.name: i for i, d in enumerate(self.problem.devices)}
        else:
            self.colours, self.device_index = {}, {}

    # ------------------------------------------------------------ css
    def css(self) -> str:
        rules = []
        for name, k in self.device_index.items():
            colour = self.colours[name]
            rules.append(f"#{self.cid} .d{k}>rect,#{self.cid} rect.d{k}{{fill:{colour}}}"
                         f"#{self.cid} svg.far .d{k}>rect{{stroke:{colour}}}"
                         f"#{self.cid} .swatch.d{k}{{background:{colour}}}")
        return "".join(rules)

    # ------------------------------------------------------------ html
    def html(self) -> str:
        r = self.result
        source = f' <span class="src">from {_e(r.path)}</span>' if r.path else ""
        parts = [f'<section class="case" id="{self.cid}" data-kind="{attr(r.kind)}">',
                 f"<h2>{_e(r.label)} <span class=\"kind\">{_e(r.kind)}</span>{source}</h2>"]
        body: list[str] = []
        if self.problem is not None:
            body.append(self._problem_section())
        elif r.graph is not None:
            body.append(self._graph_only_section())
        if len(r.plans) > 1:
            body.append(self._comparison_section())
        if r.run is not None:
            body.append(self._run_section(r.run))
        if r.upload_plans:
            body.append(self._upload_section())
        if r.simulation is not None:
            body.append(self._simulation_section(r.simulation))
        if self.warnings:
            parts.append('<ul class="warnings">' + "".join(f"<li>{_e(w)}</li>" for w in self.warnings) + "</ul>")
        parts.extend(body)
        parts.append("</section>")
        return "".join(parts)

    # ------------------------------------------------------------ problem, graph, per plan
    def _summary(self) -> str:
        p = self.problem
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
            f'<p class="summary">Model <b>{_e(g.model or "?")}</b> ({_e(g.granularity)} granularity): {len(g)} nodes, '
            f"{fmt.flops(g.total_flops)}, {fmt.size(g.total_param_bytes)} of weights. Source device <b>{_e(p.source)}</b>; "
            f"objective {_e(p.objective.describe())}; constraints: {_e(', '.join(constraints) or 'none')}.</p>"
        )

    def _devices_legend(self) -> str:
        p = self.problem
        assert p is not None
        items = []
        for d in p.devices:
            k = self.device_index[d.name]
            how = p.provenance.get(d.name, "")
            title = f' title="{attr(how)}"' if how else ""
            items.append(f'<li{title}><span class="swatch d{k}"></span>{_e(d.name)} <small>{_e(d.tier)}</small></li>')
        return f'<ul class="legend">{"".join(items)}</ul>'

    def _tooltips(self) -> dict[str, str]:
        p = self.problem
        graph = p.graph if p is not None else self.result.graph
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

    def _graph_block(self, device_of: Mapping[str, int | None], views_select: str = "") -> str:
        graph = self.problem.graph if self.problem is not None else self.result.graph
        assert graph is not None
        layout = layered_layout(graph)
        svg = graph_svg(f"{self.cid}-graph", graph, layout, device_of, self._tooltips())
        toolbar = (
            f'<div class="toolbar" data-for="{self.cid}-graph">{views_select}'
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

    def _problem_section(self) -> str:
        p = self.problem
        assert p is not None
        r = self.result
        views = placement_views(p, r.plans, r.upload_plans)
        chosen = best_plan_name(r.plans)
        default = f"plan:{chosen}" if chosen is not None else (views[0].key if views else "")
        for view in views:
            plan = view.plan
            if plan is None or not view.evaluation.valid or not math.isfinite(plan.latency_s):
                continue
            if not math.isclose(view.evaluation.latency_s, plan.latency_s, rel_tol=1e-6, abs_tol=1e-12):
                self.warnings.append(
                    f"plan {view.label!r} says latency {fmt.seconds(plan.latency_s)} but its problem gives "
                    f"{fmt.seconds(view.evaluation.latency_s)} (the cost model's figure is shown)"
                )
        data = {
            "default": default,
            "options": {v.key: [self.device_index[v.placement[n.name]] for n in p.graph] for v in views},
        }
        default_view = next((v for v in views if v.key == default), None)
        device_of: dict[str, int | None] = (
            {n: self.device_index[d] for n, d in default_view.placement.items()} if default_view else {}
        )
        select = self._select(views, default)
        parts = [f'<div class="block"><h3>Where each layer runs</h3>{self._summary()}{self._devices_legend()}',
                 self._graph_block(device_of, select),
                 f'<script type="application/json" class="case-data">{_script_json(data)}</script></div>']
        if not views:
            parts.append('<p class="note">The result holds no plan: the graph is drawn uncoloured.</p>')
        for number, view in enumerate(views):
            hidden = "" if view.key == default else " hidden"
            parts.append(f'<div class="per-plan" data-plan="{attr(view.key)}"{hidden}>{self._per_view(view, number)}</div>')
        return "".join(parts)

    def _select(self, views: Sequence[PlacementView], default: str) -> str:
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
                options.append(f'<option value="{attr(view.key)}"{selected}>{_e(view.label)}{_e(extra)}</option>')
            options.append("</optgroup>")
        return (f'<label class="plan-pick">colour by <select class="plan-select" data-case="{self.cid}">'
                f'{"".join(options)}</select></label>')

    def _per_view(self, view: PlacementView, number: int) -> str:
        p = self.problem
        assert p is not None
        ev = view.evaluation
        head = f"<h3>{_e(view.label)}</h3>"
        if view.plan is not None:
            plan = view.plan
            bits = [f"latency <b>{fmt.seconds(ev.latency_s)}</b>", f"source energy {fmt.number(ev.energy_source_j)} J",
                    f"total energy {fmt.number(ev.energy_total_j)} J", f"cost {fmt.number(ev.cost)}",
                    "feasible" if plan.feasible else "<b class=bad>infeasible</b>",
                    "proven optimal" if plan.optimal else "not proven optimal", f"solved in {fmt.seconds(plan.solve_s)}"]
            head += f'<p class="figures">{" · ".join(bits)}</p>'
            if plan.note:
                head += f'<p class="note">{_e(plan.note)}</p>'
        else:
            head += (f'<p class="figures">latency <b>{fmt.seconds(ev.latency_s)}</b> · {_e(view.stage_note)}</p>')
        for violation in ev.violations:
            head += f'<p class="bad">{_e(violation)}</p>'
        if not ev.valid:
            return head + '<p class="bad">This placement cannot be evaluated (see above): no timeline.</p>'
        if not view.detailed:
            return head + ('<p class="note">The graph shows this stage; its timeline and link table are drawn for the '
                           f"first {MAX_STAGE_VIEWS} distinct stage placements only.</p>")
        timeline = query_timeline(p, view.placement, ev)
        return head + self._devices_table(view, timeline) + self._gantt(timeline, number) + self._links(view, timeline)

    def _devices_table(self, view: PlacementView, timeline: QueryTimeline) -> str:
        p = self.problem
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
            k = self.device_index[d.name]
            limit = "unlimited" if d.memory_bytes is None else fmt.size(d.memory_bytes)
            rows.append([f'<span class="swatch d{k}"></span>{_e(d.name)}', _e(d.tier), str(counts.get(d.name, 0)),
                         fmt.seconds(busy.get(d.name, 0.0)), fmt.size(view.evaluation.memory_bytes.get(d.name, 0)), limit])
        return _table(["device", "tier", "nodes", "compute time", "weights held", "memory"], rows, cls="devices",
                      numeric_from=2)

    def _gantt(self, timeline: QueryTimeline, number: int) -> str:
        rows = list(timeline.rows)
        row_of = {r: i for i, r in enumerate(rows)}
        bars = []
        for bar in timeline.bars:
            if bar.kind == "compute":
                title = f"{bar.node} on {bar.device}: {fmt.seconds(bar.seconds)} (at {fmt.seconds(bar.start_s)})"
                bars.append(TimelineBar(row_of[bar.row], bar.start_s, bar.end_s, self.colours[bar.device], title,
                                        "bar compute", {"node": bar.node}))
            else:
                title = (f"{bar.node}'s output {bar.device} → {bar.dst}: {fmt.size(bar.out_bytes)} in "
                         f"{fmt.seconds(bar.seconds)} (at {fmt.seconds(bar.start_s)})")
                bars.append(TimelineBar(row_of[bar.row], bar.start_s, bar.end_s, TRANSFER_FILL, title,
                                        "bar transfer", {"node": bar.node}))
        svg = timeline_svg(f"{self.cid}-v{number}-gantt", rows, bars, total=timeline.end_s,
                           axis_label="time since the query started", marks=[(timeline.end_s, "result back on the source")])
        ev = timeline.evaluation
        return (f'<h4>One query, step by step</h4><p class="hint">The cost model\'s sequential schedule (DESIGN.md): '
                f"nodes in graph order, each tensor sent as soon as it is made; {fmt.seconds(ev.compute_s)} computing + "
                f"{fmt.seconds(ev.transfer_s)} on links = {fmt.seconds(ev.latency_s)}. Wheel to zoom in time, drag to pan."
                f'</p><div class="timeline-view">{svg}</div>')

    def _links(self, view: PlacementView, timeline: QueryTimeline) -> str:
        p = self.problem
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
            rows.append([_e(bar.row), _e(bar.node), _e(shorten(", ".join(readers), 60)), _e(f"{shape} {node.out_dtype}"),
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
            summary.append([_e(row), fmt.rate(bandwidth), fmt.seconds(latency), str(int(count)), fmt.size(nbytes),
                            fmt.seconds(seconds)])
        return ("<h4>Tensors crossing links</h4>"
                + _table(["link", "bandwidth", "latency", "tensors", "bytes", "time"], summary, cls="link-totals")
                + _table(["link", "tensor", "read there by", "shape", "bytes", "time", "of the query"], rows,
                         cls="transfers", numeric_from=4))

    def _graph_only_section(self) -> str:
        graph = self.result.graph
        assert graph is not None
        rows = [[_e(op), fmt.flops(total), f"{total / graph.total_flops * 100:.1f}%" if graph.total_flops else "-"]
                for op, total in list(graph.flops_by_op().items())[:12]]
        return (f'<div class="block"><h3>Layer graph</h3><p class="summary">{len(graph)} nodes, '
                f"{fmt.flops(graph.total_flops)}, {fmt.size(graph.total_param_bytes)} of weights "
                f"({_e(graph.granularity)} granularity). No devices: plan it to see where each layer runs.</p>"
                + self._graph_block({n.name: None for n in graph}) + "<h4>FLOPs by op</h4>"
                + _table(["op", "FLOPs", "share"], rows, cls="ops") + "</div>")

    # ------------------------------------------------------------ planners
    def _comparison_section(self) -> str:
        plans = self.result.plans
        best_name = best_plan_name(plans)
        best = plans[best_name].objective_value if best_name else math.nan
        rows, attrs, bars = [], [], []
        for name, plan in plans.items():
            ratio = plan.objective_value / best if plan.feasible and best and math.isfinite(best) and best > 0 else math.nan
            devices = ", ".join(sorted(set(plan.placement.values())))
            rows.append([_e(name), fmt.number(plan.objective_value), fmt.number(ratio, 4) if ratio == ratio else "-",
                         fmt.seconds(plan.latency_s), f"{fmt.number(plan.energy_source_j)} J",
                         f"{fmt.number(plan.energy_total_j)} J", fmt.number(plan.cost), _e(shorten(devices, 40)),
                         "yes" if plan.feasible else "<b class=bad>no</b>", "yes" if plan.optimal else "-",
                         fmt.seconds(plan.solve_s)])
            attrs.append(f' data-plan="plan:{attr(name)}" class="pick{" best" if name == best_name else ""}"')
            colour = "#2b7bb9" if plan.feasible else "#c0392b"
            bars.append((name, plan.objective_value if plan.feasible else math.nan, colour,
                         "" if plan.feasible else "infeasible"))
        objective = self.problem.objective.describe() if self.problem is not None else "objective"
        return ('<div class="block"><h3>Planners compared</h3>'
                f'<p class="hint">Objective: {_e(objective)}; "vs best" = objective / best feasible objective. '
                "Click a row to colour the graph by that plan.</p>"
                + _table(["planner", "objective", "vs best", "latency", "source energy", "total energy", "cost", "devices",
                          "feasible", "optimal", "solve"], rows, cls="planners", row_attrs=attrs)
                + bar_chart(f"{self.cid}-planners", bars, value_format=fmt.number) + "</div>")

    # ------------------------------------------------------------ uploads
    def _upload_section(self) -> str:
        from tiercut.upload import curve

        uploads = self.result.upload_plans
        metric_rows, strip_rows, strip_bars, series, stage_tables = [], [], [], [], []
        until = max((u.metrics.upload_end_s for u in uploads.values()), default=0.0)
        for k, (name, upload) in enumerate(uploads.items()):
            m = upload.metrics
            servers = upload.servers if isinstance(upload, UserUploadPlan) else {upload.server: upload}
            total_bytes = sum(part.param_bytes for plan in servers.values() for part in plan.partitions)
            n_parts = sum(len(plan.partitions) for plan in servers.values())
            metric_rows.append([_e(name), _e(", ".join(servers)), str(n_parts), fmt.size(total_bytes),
                                fmt.seconds(m.upload_end_s), str(m.queries_done_by_upload_end),
                                f"{fmt.seconds(m.time_for_n_queries_s)} (n = {m.n})",
                                fmt.seconds(m.mean_latency_during_upload_s)])
            for server, plan in servers.items():
                strip_rows.append(f"{name} → {server}")
                row = len(strip_rows) - 1
                start = 0.0
                for i, part in enumerate(plan.partitions, 1):
                    first = part.arrives_s - part.upload_s
                    title = (f"{name} partition {i} to {server}: {len(part.nodes)} node(s) "
                             f"({shorten(part.nodes[0], 30) if part.nodes else '-'} …), {fmt.size(part.param_bytes)}, "
                             f"{fmt.seconds(max(first, start))} → {fmt.seconds(part.arrives_s)}")
                    fill = fmt.SERIES_COLOURS[k % len(fmt.SERIES_COLOURS)]
                    strip_bars.append(TimelineBar(row, max(first, start), part.arrives_s, fill, title,
                                                  f"bar partition{' odd' if i % 2 else ''}"))
                    start = part.arrives_s
            slots = curve(upload.stages, until, m.n)
            if slots:
                series.append(Series(name, [q.start_s for q in slots], [q.latency_s for q in slots],
                                     fmt.SERIES_COLOURS[k % len(fmt.SERIES_COLOURS)], step=True))
            stage_rows = []
            for i, stage in enumerate(upload.stages):
                on_servers = sum(1 for d in stage.placement.values() if d != upload.source)
                stage_rows.append([str(i), fmt.seconds(stage.from_s), str(on_servers), fmt.seconds(stage.latency_s)])
            stage_tables.append(f"<details><summary>{_e(name)}: {len(upload.stages)} stages</summary>"
                                + _table(["stage", "from", "nodes on servers", "query latency"], stage_rows,
                                         cls="stages") + "</details>")
        strip = timeline_svg(f"{self.cid}-uploads", strip_rows, strip_bars, total=until or 1.0,
                             axis_label="time since the upload started", label_width=200.0)
        chart = line_chart(f"{self.cid}-upload-curve", series, x_label="query start (s since the upload started)",
                           y_label="query latency") if series else ""
        pick = (" Pick a stage in the selector above the graph to see where each layer runs during it."
                if self.problem is not None else "")
        heading = ("The upload plan it ran, as planned (IONN model)" if self.result.kind == "run"
                   else "Uploading the server side (IONN model)")
        return (f'<div class="block uploads"><h3>{heading}</h3>'
                '<p class="hint">Partitions go up one after another while queries run back to back from t = 0 on the '
                f"best placement of what has arrived.{pick}</p>"
                + _table(["upload plan", "servers", "partitions", "bytes", "upload ends", "queries done by then",
                          "time for n queries", "mean latency while uploading"], metric_rows, cls="upload-metrics",
                         numeric_from=2)
                + f'<h4>Partitions on the wire</h4><div class="timeline-view">{strip}</div>'
                + "<h4>Query latency while uploading</h4>" + chart + "".join(stage_tables) + "</div>")

    # ------------------------------------------------------------ simulator
    def _simulation_section(self, sim: SimulationTrace) -> str:
        rows = []
        for u in sim.users:
            planned = u.get("partitions_planned")
            rows.append([_e(u.get("user", "?")), str(u.get("queries", "-")), str(u.get("in_flight", "-")),
                         fmt.seconds(u.get("mean_latency_s")), fmt.seconds(u.get("p95_latency_s")),
                         fmt.seconds(u.get("max_latency_s")), f"{u.get('partitions_arrived', '-')}/{planned}",
                         fmt.seconds(u.get("upload_end_s")), f"{fmt.number(u.get('energy_source_j'))} J",
                         fmt.size(u.get("bytes_moved"))])
        parts = ['<div class="block simulation"><h3>Simulation</h3>'
                 f'<p class="summary">{len(sim.users)} user(s), {sum(int(u.get("queries", 0) or 0) for u in sim.users)} '
                 f"queries completed in {fmt.seconds(sim.end_s)} of simulated time.</p>",
                 _table(["user", "queries", "in flight", "mean delay", "p95 delay", "max delay", "partitions",
                         "upload end", "client energy", "bytes moved"], rows, cls="sim-users")]
        marks = [(float(a["arrives_s"]), f"{a.get('user', '')}: partition {int(a.get('index', 0)) + 1} on "
                  f"{a.get('server', '')}") for a in sim.arrivals[:MAX_MARKS] if a.get("arrives_s") is not None]
        if sim.queries:
            by_user: dict[str, list[Mapping]] = {}
            for q in sim.queries:
                by_user.setdefault(str(q.get("user", "")), []).append(q)
            series = []
            if len(by_user) <= MAX_USER_CURVES:
                for k, (user, queries) in enumerate(by_user.items()):
                    queries = sorted(queries, key=lambda q: q["start_s"])
                    series.append(Series(user, [float(q["start_s"]) for q in queries],
                                         [float(q["end_s"]) - float(q["start_s"]) for q in queries],
                                         fmt.SERIES_COLOURS[k % len(fmt.SERIES_COLOURS)], step=True))
            else:
                series.append(self._binned_mean(sim.queries, f"mean over {len(by_user)} users"))
            parts.append("<h4>Query delay over time</h4>" + line_chart(
                f"{self.cid}-sim-curve", series, x_label="query start (simulated s)", y_label="query delay",
                vlines=marks))
        else:
            parts.append('<p class="note">The result has no per-query trace: run <code>tiercut simulate … --json '
                         "--queries</code> for the delay curve.</p>")
        if sim.resources:
            res_rows = []
            for res in sim.resources:
                busy = res.get("busy_s")
                share = f"{busy / sim.end_s * 100:.1f}%" if busy is not None and sim.end_s and sim.end_s > 0 else "-"
                res_rows.append([_e(res.get("name", "?")), _e(res.get("kind", "")), _e(res.get("discipline", "")),
                                 fmt.seconds(busy), share, str(res.get("completed", "-"))])
            parts.append("<h4>Devices and links</h4>" + _table(
                ["resource", "kind", "discipline", "busy", "utilisation", "jobs done"], res_rows, cls="resources",
                numeric_from=3))
        analytic = [(u, m) for u, m in sim.analytic.items() if m]
        if analytic:
            parts.append("<h4>What the analytic upload model planned</h4>" + _table(
                ["user", "upload ends", "queries done by then", "time for n queries", "mean latency while uploading"],
                [[_e(u), fmt.seconds(m.get("upload_end_s")), str(m.get("queries_done_by_upload_end", "-")),
                  f"{fmt.seconds(m.get('time_for_n_queries_s'))} (n = {m.get('n', '-')})",
                  fmt.seconds(m.get("mean_latency_during_upload_s"))] for u, m in analytic], cls="analytic"))
        parts.append("</div>")
        return "".join(parts)

    @staticmethod
    def _binned_mean(queries: Sequence[Mapping], name: str, bins: int = 200) -> Series:
        starts = [float(q["start_s"]) for q in queries]
        span = max(starts) or 1.0
        sums, counts = [0.0] * bins, [0] * bins
        for q, start in zip(queries, starts):
            k = min(bins - 1, int(start / span * bins))
            sums[k] += float(q["end_s"]) - start
            counts[k] += 1
        xs = [(k + 0.5) * span / bins for k in range(bins) if counts[k]]
        ys = [sums[k] / counts[k] for k in range(bins) if counts[k]]
        return Series(name, xs, ys, fmt.SERIES_COLOURS[0])

    # ------------------------------------------------------------ runtime
    def _run_section(self, run: RunTrace) -> str:
        queries = sorted(run.queries, key=lambda q: q.get("start_s", 0.0))
        latencies = sorted(float(q["latency_s"]) for q in queries if q.get("latency_s") is not None)
        fallbacks = sum(1 for q in queries if q.get("fallback"))
        errors = [q for q in queries if q.get("error")]

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, max(0, math.ceil(q * len(latencies)) - 1))] if latencies else math.nan

        figures = [f"{len(queries)} queries in {fmt.seconds(run.duration_s)}",
                   f"median {fmt.seconds(pct(0.5))}", f"p95 {fmt.seconds(pct(0.95))}",
                   f"uploads confirmed by {fmt.seconds(run.upload_end_s)}" if run.upload_end_s is not None
                   else "<b class=bad>uploads never all confirmed</b>",
                   f"{fallbacks} fallback(s) to local", f"{len(errors)} error(s)"]
        parts = ['<div class="block run"><h3>Measured run</h3>',
                 f'<p class="summary">{_e(run.model)} from {_e(run.source)} with the {_e(run.algorithm or "given")} '
                 f'upload plan: {" · ".join(figures)}.</p>']
        for server, reason in run.abandoned.items():
            parts.append(f'<p class="bad">uploads to {_e(server)} abandoned: {_e(reason)}</p>')
        series = [Series("measured (tiercut run)", [float(q["start_s"]) for q in queries],
                         [float(q["latency_s"]) for q in queries], fmt.SERIES_COLOURS[0], markers=True)]
        planned = [(float(q["start_s"]), float(q["planned_latency_s"])) for q in queries
                   if q.get("planned_latency_s") is not None]
        if planned:
            series.append(Series("planned (cost model of the stage used)", [p[0] for p in planned], [p[1] for p in planned],
                                 fmt.SERIES_COLOURS[1], step=True, dashed=True))
        marks = [(t, f"upload {server}#{k} confirmed") for server, times in run.confirmed_s.items()
                 for k, t in enumerate(times, 1) if t >= 0]
        parts.append("<h4>Query delay over the run</h4>" + line_chart(
            f"{self.cid}-run-curve", series, x_label="query start (s since the run began)", y_label="query delay",
            vlines=marks))
        if run.attempts:
            rows = list(dict.fromkeys(str(a.get("server", "?")) for a in run.attempts))
            row_of = {r: i for i, r in enumerate(rows)}
            bars = []
            for a in run.attempts:
                ok = bool(a.get("ok"))
                title = (f"{a.get('server')}#{a.get('position')} attempt {a.get('attempt')}: {fmt.size(a.get('bytes'))}, "
                         f"{fmt.seconds(a.get('start_s'))} → {fmt.seconds(a.get('end_s'))}, "
                         f"{'ok' if ok else 'failed'} ({a.get('reason', '')})")
                bars.append(TimelineBar(row_of[str(a.get("server", "?"))], float(a.get("start_s", 0.0)),
                                        float(a.get("end_s", 0.0)), "#2e8b57" if ok else "#c0392b", title,
                                        f"bar attempt{'' if ok else ' failed'}"))
            total = max([run.duration_s if math.isfinite(run.duration_s) else 0.0]
                        + [float(a.get("end_s", 0.0)) for a in run.attempts])
            parts.append("<h4>Upload attempts</h4><div class=\"timeline-view\">" + timeline_svg(
                f"{self.cid}-attempts", rows, bars, total=total, axis_label="time since the run began") + "</div>")
        if run.uploads:
            up_rows = []
            for u in run.uploads:
                server, position = str(u.get("server", "?")), int(u.get("position", 0))
                times = run.confirmed_s.get(server, ())
                confirmed = times[position - 1] if 0 < position <= len(times) and times[position - 1] >= 0 else None
                tries = sum(1 for a in run.attempts if a.get("server") == server and a.get("position") == position)
                up_rows.append([_e(f"{server}#{position}"), str(len(u.get("nodes", ()))), fmt.size(u.get("bytes")),
                                str(tries), fmt.seconds(confirmed) if confirmed is not None else "<b class=bad>never</b>",
                                fmt.seconds(u.get("planned_arrives_s"))])
            parts.append(_table(["upload", "nodes", "bytes", "attempts", "confirmed", "planned arrival"], up_rows,
                                cls="run-uploads"))
        q_rows = [[str(q.get("index", "")), fmt.seconds(q.get("start_s")), fmt.seconds(q.get("latency_s")),
                   fmt.seconds(q.get("planned_latency_s")), str(q.get("stage", "")), _e(", ".join(q.get("devices", ()))),
                   fmt.size(q.get("bytes_sent")), "yes" if q.get("fallback") else "-", _e(q.get("error", "") or "-")]
                  for q in queries]
        parts.append(f"<details><summary>every query ({len(queries)})</summary>"
                     + _table(["query", "start", "delay", "planned", "stage", "devices", "bytes sent", "fallback", "error"],
                              q_rows, cls="run-queries") + "</details></div>")
        return "".join(parts)


# ---------------------------------------------------------------- the page
def render_html(results: Sequence[ReportInput], *, title: str | None = None) -> str:
    """The whole report page for ``results`` (one section each)."""
    from tiercut import __version__

    if not results:
        raise TiercutError("a report needs at least one result file")
    cases = [_Case(k, r) for k, r in enumerate(results)]
    sections = [c.html() for c in cases]
    heading = title or (results[0].label if len(results) == 1 else f"{len(results)} results")
    nav = ""
    if len(cases) > 1:
        nav = "<nav><ol>" + "".join(f'<li><a href="#{c.cid}">{_e(c.result.label)}</a> <small>{_e(c.result.kind)}'
                                     "</small></li>" for c in cases) + "</ol></nav>"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    csp = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>tiercut report: {_e(heading)}</title>"
        f"<style>{_asset('report.css')}{''.join(c.css() for c in cases)}</style></head><body>"
        f"<header><h1>tiercut report: {_e(heading)}</h1><p class=\"meta\">made by tiercut {_e(__version__)} on "
        f"{_e(stamp)}. Plans' figures are the DESIGN.md cost model's, recomputed from each result's problem; "
        "hover any box, bar or line for its numbers.</p></header>"
        f"{nav}<main>{''.join(sections)}</main>"
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )


__all__ = ["MAX_STAGE_VIEWS", "PlacementView", "best_plan_name", "link_figures", "placement_views", "render_html"]
