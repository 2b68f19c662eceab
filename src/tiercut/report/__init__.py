"""The report stage: one self-contained HTML page from tiercut's result files.

- :func:`load_result` reads one result file (what ``plan``, ``compare``,
  ``upload``, ``simulate``, ``run``, ``graph --json`` and ``demo`` write) into a
  typed :class:`ReportInput`; anything else is a one-line
  :class:`~tiercut.errors.TiercutError` naming what is accepted;
- :func:`render_html` turns results into the page (a string);
- :func:`write_report` does both and writes the page atomically.

The parts are modules of their own: :mod:`~tiercut.report.layout` (a layered
drawing of the graph), :mod:`~tiercut.report.timeline` (one query's
sequential schedule from :func:`tiercut.cost.evaluate`),
:mod:`~tiercut.report.svg` (the pictures) and :mod:`~tiercut.report.html`
(the page). PNG and SVG figures stay with the commands that draw them
(matplotlib: ``upload --plot``, ``simulate --plot``, ``run --plot``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tiercut.errors import TiercutError
from tiercut.report.html import render_html
from tiercut.report.inputs import ACCEPTED, KINDS, ReportInput, RunTrace, SimulationTrace, load_result, read_result
from tiercut.report.layout import GraphLayout, layered_layout
from tiercut.report.plans import best_plan_name, placement_views
from tiercut.report.timeline import Bar, QueryTimeline, query_timeline

#: suffixes a report file may have.
HTML_SUFFIXES = (".html", ".htm")


def write_report(
    results: Sequence[str | Path | ReportInput], out: str | Path, *, title: str | None = None
) -> Path:
    """Write one HTML report of ``results`` (files or already-read results) to ``out``; return its path.

    Every result is read before anything is written, and the page goes to a
    temporary file renamed over ``out``: a failure leaves no half-written report.
    """
    out = Path(out)
    if out.suffix.lower() not in HTML_SUFFIXES:
        raise TiercutError(f"report file {out} must end in .html (e.g. -o report.html)")
    if out.is_dir():
        raise TiercutError(f"report file {out} is a directory; give a file name such as {out / 'report.html'}")
    inputs = [r if isinstance(r, ReportInput) else load_result(r) for r in results]
    page = render_html(inputs, title=title)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise TiercutError(f"cannot write report {out}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise TiercutError(f"cannot write report {out}: {exc.strerror or exc}") from None
    return out


__all__ = [
    "ACCEPTED",
    "HTML_SUFFIXES",
    "KINDS",
    "Bar",
    "GraphLayout",
    "QueryTimeline",
    "ReportInput",
    "RunTrace",
    "SimulationTrace",
    "best_plan_name",
    "layered_layout",
    "load_result",
    "placement_views",
    "query_timeline",
    "read_result",
    "render_html",
    "write_report",
]

# `tiercut.report(...)` is the front-door step of this stage (tiercut/_front_door.py)
from tiercut._front_door import make_callable  # noqa: E402

make_callable(__name__)
