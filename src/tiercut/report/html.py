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

import time
from collections.abc import Sequence
from importlib import resources

from tiercut.errors import TiercutError
from tiercut.report.exits import exits_section
from tiercut.report.inputs import ReportInput
from tiercut.report.markup import Case, text
from tiercut.report.multiuser import multi_section
from tiercut.report.plans import comparison_section, graph_only_section, problem_section
from tiercut.report.svg import attr
from tiercut.report.traces import run_section, simulation_section
from tiercut.report.uploads import upload_section


def _asset(name: str) -> str:
    return resources.files("tiercut.report").joinpath("assets", name).read_text(encoding="utf-8")


def case_html(case: Case) -> str:
    """One result's section: its parts in reading order (warnings found while writing them first)."""
    r = case.result
    source = f' <span class="src">from {text(r.path)}</span>' if r.path else ""
    body: list[str] = []
    if r.exit_plan is not None:
        body.append(exits_section(case))
    elif r.multi_problem is not None:
        body.append(multi_section(case))
    elif case.problem is not None:
        body.append(problem_section(case))
    elif r.graph is not None:
        body.append(graph_only_section(case))
    if len(r.plans) > 1 and r.multi_problem is None:
        body.append(comparison_section(case))
    if r.run is not None:
        body.append(run_section(case, r.run))
    if r.upload_plans:
        body.append(upload_section(case))
    if r.simulation is not None:
        body.append(simulation_section(case, r.simulation))
    warnings = ""
    if case.warnings:
        warnings = '<ul class="warnings">' + "".join(f"<li>{text(w)}</li>" for w in case.warnings) + "</ul>"
    return (f'<section class="case" id="{case.cid}" data-kind="{attr(r.kind)}">'
            f'<h2>{text(r.label)} <span class="kind">{text(r.kind)}</span>{source}</h2>{warnings}{"".join(body)}</section>')


def render_html(results: Sequence[ReportInput], *, title: str | None = None) -> str:
    """The whole report page for ``results`` (one section each)."""
    from tiercut import __version__

    if not results:
        raise TiercutError("a report needs at least one result file")
    flat = [part for r in results for part in (r, *r.users)]  # a multi-user result: its summary, then each user
    cases = [Case.of(k, r) for k, r in enumerate(flat)]
    sections = [case_html(c) for c in cases]
    heading = title or (results[0].label if len(results) == 1 else f"{len(results)} results")
    nav = ""
    if len(cases) > 1:
        nav = "<nav><ol>" + "".join(f'<li><a href="#{c.cid}">{text(c.result.label)}</a> <small>{text(c.result.kind)}'
                                     "</small></li>" for c in cases) + "</ol></nav>"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    csp = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>tiercut report: {text(heading)}</title>"
        f"<style>{_asset('report.css')}{''.join(c.css() for c in cases)}</style></head><body>"
        f"<header><h1>tiercut report: {text(heading)}</h1><p class=\"meta\">made by tiercut {text(__version__)} on "
        f"{text(stamp)}. Plans' figures are the cost model (docs/cost-model.md)'s, recomputed from each result's problem; "
        "hover any box, bar or line for its numbers.</p></header>"
        f"{nav}<main>{''.join(sections)}</main>"
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )


__all__ = ["case_html", "render_html"]
