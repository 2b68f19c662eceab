"""The sections of measured and simulated traces: ``tiercut simulate`` and ``tiercut run`` results."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tiercut.report import format as fmt
from tiercut.report.inputs import RunTrace, SimulationTrace
from tiercut.report.markup import Case, table, text
from tiercut.report.svg import Series, TimelineBar, line_chart, timeline_svg

#: at most this many users get their own simulator curve; beyond, the mean over users is drawn.
MAX_USER_CURVES = 8
#: partition arrivals marked on a chart at most.
MAX_MARKS = 200


def _strategies_table(sim: SimulationTrace) -> str:
    """Mobility: one row per hand-over strategy (``tiercut.sim.mobile.StrategyFigures``)."""
    rows = []
    for f in sim.strategies:
        peaks = f.get("peak_memory_bytes") or {}
        caps = f.get("memory_bytes") or {}
        site = max(peaks, key=lambda k: peaks[k] or 0) if peaks else None
        peak = "-" if site is None else f"{fmt.size(peaks[site])} on {text(site)}" + (
            f" of {fmt.size(caps[site])}" if caps.get(site) is not None else "")
        rows.append([text(f.get("strategy", "?")), str(f.get("queries", "-")), fmt.seconds(f.get("mean_latency_s")),
                     str(f.get("handovers", "-")), fmt.seconds(f.get("handover_mean_latency_s")),
                     fmt.seconds(f.get("handover_p95_latency_s")), fmt.seconds(f.get("handover_max_latency_s")),
                     fmt.size(f.get("uploaded_bytes")), fmt.size(f.get("wasted_bytes")), peak,
                     "no" if f.get("memory_exceeded") else "yes"])
    return ("<h4>Hand-over strategies</h4><p class=\"note\">The same users and movements under each strategy; "
            "'near' = queries started within the scenario's window after a hand-over; the tables above and below "
            "are the first strategy's run.</p>" + table(
                ["strategy", "queries", "mean delay", "hand-overs", "near: mean", "near: p95", "near: max",
                 "uploaded", "wasted", "peak memory", "memory ok"], rows, cls="strategies", numeric_from=1))


def simulation_section(case: Case, sim: SimulationTrace) -> str:
    rows = []
    for u in sim.users:
        planned = u.get("partitions_planned")
        rows.append([text(u.get("user", "?")), str(u.get("queries", "-")), str(u.get("in_flight", "-")),
                     fmt.seconds(u.get("mean_latency_s")), fmt.seconds(u.get("p95_latency_s")),
                     fmt.seconds(u.get("max_latency_s")), f"{u.get('partitions_arrived', '-')}/{planned}",
                     fmt.seconds(u.get("upload_end_s")), f"{fmt.number(u.get('energy_source_j'))} J",
                     fmt.size(u.get("bytes_moved"))])
    parts = ['<div class="block simulation"><h3>Simulation</h3>'
             f'<p class="summary">{len(sim.users)} user(s), {sum(int(u.get("queries", 0) or 0) for u in sim.users)} '
             f"queries completed in {fmt.seconds(sim.end_s)} of simulated time.</p>",
             table(["user", "queries", "in flight", "mean delay", "p95 delay", "max delay", "partitions",
                     "upload end", "client energy", "bytes moved"], rows, cls="sim-users")]
    if sim.strategies:
        parts.append(_strategies_table(sim))
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
            series.append(_binned_mean(case, sim.queries, f"mean over {len(by_user)} users"))
        parts.append("<h4>Query delay over time</h4>" + line_chart(
            f"{case.cid}-sim-curve", series, x_label="query start (simulated s)", y_label="query delay",
            vlines=marks))
    else:
        parts.append('<p class="note">The result has no per-query trace: run <code>tiercut simulate … --json '
                     "--queries</code> for the delay curve.</p>")
    if sim.resources:
        res_rows = []
        for res in sim.resources:
            busy = res.get("busy_s")
            share = f"{busy / sim.end_s * 100:.1f}%" if busy is not None and sim.end_s and sim.end_s > 0 else "-"
            res_rows.append([text(res.get("name", "?")), text(res.get("kind", "")), text(res.get("discipline", "")),
                             fmt.seconds(busy), share, str(res.get("completed", "-"))])
        parts.append("<h4>Devices and links</h4>" + table(
            ["resource", "kind", "discipline", "busy", "utilisation", "jobs done"], res_rows, cls="resources",
            numeric_from=3))
    analytic = [(u, m) for u, m in sim.analytic.items() if m]
    if analytic:
        parts.append("<h4>What the analytic upload model planned</h4>" + table(
            ["user", "upload ends", "queries done by then", "time for n queries", "mean latency while uploading"],
            [[text(u), fmt.seconds(m.get("upload_end_s")), str(m.get("queries_done_by_upload_end", "-")),
              f"{fmt.seconds(m.get('time_for_n_queries_s'))} (n = {m.get('n', '-')})",
              fmt.seconds(m.get("mean_latency_during_upload_s"))] for u, m in analytic], cls="analytic"))
    parts.append("</div>")
    return "".join(parts)


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


def run_section(case: Case, run: RunTrace) -> str:
    queries = sorted(run.queries, key=lambda q: q.get("start_s", 0.0))
    latencies = sorted(float(q["latency_s"]) for q in queries if q.get("latency_s") is not None)
    fallbacks = sum(1 for q in queries if q.get("fallback"))
    errors = [q for q in queries if q.get("error")]

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, max(0, math.ceil(q * len(latencies)) - 1))] if latencies else math.nan

    figures = [f"{len(queries)} queries in {fmt.seconds(run.duration_s)}",
               f"median {fmt.seconds(pct(0.5))}", f"p95 {fmt.seconds(pct(0.95))}",
               "nothing to upload" if not run.uploads
               else f"uploads confirmed by {fmt.seconds(run.upload_end_s)}" if run.upload_end_s is not None
               else "<b class=bad>uploads never all confirmed</b>",
               f"{fallbacks} fallback(s) to local", f"{len(errors)} error(s)"]
    parts = ['<div class="block run"><h3>Measured run</h3>',
             f'<p class="summary">{text(run.model)} from {text(run.source)} with the {text(run.algorithm or "given")} '
             f'upload plan: {" · ".join(figures)}.</p>']
    for server, reason in run.abandoned.items():
        parts.append(f'<p class="bad">uploads to {text(server)} abandoned: {text(reason)}</p>')
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
        f"{case.cid}-run-curve", series, x_label="query start (s since the run began)", y_label="query delay",
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
            f"{case.cid}-attempts", rows, bars, total=total, axis_label="time since the run began") + "</div>")
    if run.uploads:
        up_rows = []
        for u in run.uploads:
            server, position = str(u.get("server", "?")), int(u.get("position", 0))
            times = run.confirmed_s.get(server, ())
            confirmed = times[position - 1] if 0 < position <= len(times) and times[position - 1] >= 0 else None
            tries = sum(1 for a in run.attempts if a.get("server") == server and a.get("position") == position)
            up_rows.append([text(f"{server}#{position}"), str(len(u.get("nodes", ()))), fmt.size(u.get("bytes")),
                            str(tries), fmt.seconds(confirmed) if confirmed is not None else "<b class=bad>never</b>",
                            fmt.seconds(u.get("planned_arrives_s"))])
        parts.append(table(["upload", "nodes", "bytes", "attempts", "confirmed", "planned arrival"], up_rows,
                            cls="run-uploads"))
    q_rows = [[str(q.get("index", "")), fmt.seconds(q.get("start_s")), fmt.seconds(q.get("latency_s")),
               fmt.seconds(q.get("planned_latency_s")), str(q.get("stage", "")), text(", ".join(q.get("devices", ()))),
               fmt.size(q.get("bytes_sent")), "yes" if q.get("fallback") else "-", text(q.get("error", "") or "-")]
              for q in queries]
    parts.append(f"<details><summary>every query ({len(queries)})</summary>"
                 + table(["query", "start", "delay", "planned", "stage", "devices", "bytes sent", "fallback", "error"],
                          q_rows, cls="run-queries") + "</details></div>")
    return "".join(parts)


__all__ = ["MAX_USER_CURVES", "run_section", "simulation_section"]
