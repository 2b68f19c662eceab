"""The upload section: every upload plan's partitions on the wire, its stages and the query latency while uploading."""

from __future__ import annotations

from tiercut.report import format as fmt
from tiercut.report.markup import Case, table, text
from tiercut.report.svg import Series, TimelineBar, line_chart, shorten, timeline_svg
from tiercut.upload.types import UserUploadPlan


def upload_section(case: Case) -> str:
    """Each upload plan's figures, its partitions on the wire, its stages and the query latency while uploading."""
    from tiercut.upload import curve

    uploads = case.result.upload_plans
    metric_rows, strip_rows, strip_bars, series, stage_tables = [], [], [], [], []
    until = max((u.metrics.upload_end_s for u in uploads.values()), default=0.0)
    for k, (name, upload) in enumerate(uploads.items()):
        m = upload.metrics
        servers = upload.servers if isinstance(upload, UserUploadPlan) else {upload.server: upload}
        total_bytes = sum(part.param_bytes for plan in servers.values() for part in plan.partitions)
        n_parts = sum(len(plan.partitions) for plan in servers.values())
        metric_rows.append([text(name), text(", ".join(servers)), str(n_parts), fmt.size(total_bytes),
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
        stage_tables.append(f"<details><summary>{text(name)}: {len(upload.stages)} stages</summary>"
                            + table(["stage", "from", "nodes on servers", "query latency"], stage_rows,
                                     cls="stages") + "</details>")
    heading = ("The upload plan it ran, as planned (IONN model)" if case.result.kind == "run"
               else "Uploading the server side (IONN model)")
    metrics = table(["upload plan", "servers", "partitions", "bytes", "upload ends", "queries done by then",
                     "time for n queries", "mean latency while uploading"], metric_rows, cls="upload-metrics", numeric_from=2)
    if not strip_bars:
        return (f'<div class="block uploads"><h3>{heading}</h3>{metrics}<p class="note">Nothing to upload: the plan '
                "leaves every layer with parameters on the client.</p></div>")
    strip = timeline_svg(f"{case.cid}-uploads", strip_rows, strip_bars, total=until or 1.0,
                         axis_label="time since the upload started", label_width=200.0)
    chart = line_chart(f"{case.cid}-upload-curve", series, x_label="query start (s since the upload started)",
                       y_label="query latency") if series else ""
    pick = (" Pick a stage in the selector above the graph to see where each layer runs during it."
            if case.problem is not None else "")
    return (f'<div class="block uploads"><h3>{heading}</h3>'
            '<p class="hint">Partitions go up one after another while queries run back to back from t = 0 on the '
            f"best placement of what has arrived.{pick}</p>" + metrics
            + f'<h4>Partitions on the wire</h4><div class="timeline-view">{strip}</div>'
            + "<h4>Query latency while uploading</h4>" + chart + "".join(stage_tables) + "</div>")


__all__ = ["upload_section"]
