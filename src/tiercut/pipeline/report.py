"""The report step: results (files or objects of the other steps) -> one offline HTML page."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError


def _as_input(result: Any, index: int) -> Any:
    """A result file path, a :class:`ReportInput`, or a pipeline object with ``to_dict`` (plan, comparison...)."""
    from tiercut.report import ReportInput, read_result

    if isinstance(result, (str, Path, ReportInput)):
        return result
    if isinstance(result, tuple) and len(result) == 2 and hasattr(result[0], "to_dict"):
        problem, plan = result  # (problem, plan): what `tiercut plan --json` prints
        key = "plans" if isinstance(plan, dict) else "plan"
        plans = {k: p.to_dict() for k, p in plan.items()} if isinstance(plan, dict) else plan.to_dict()
        return read_result({"problem": problem.to_dict(), key: plans}, path=f"result #{index + 1}")
    to_dict = getattr(result, "to_dict", None)
    if to_dict is None:
        raise TiercutError(f"report result #{index + 1} is a {type(result).__name__}; give a result file or a pipeline result")
    return read_result(to_dict(), path=f"result #{index + 1} ({type(result).__name__})")


def report(results: Sequence[Any] | Any, out: str | Path = "report.html", *, title: str | None = None) -> Path:
    """Write one self-contained HTML report of ``results`` to ``out``; return its path.

    ``results``: a ``(problem, plan)`` pair, result files (what the commands' ``--json`` print, demo case
    files) or the pipeline's result objects (:class:`~tiercut.pipeline.Comparison`,
    :class:`~tiercut.pipeline.UploadResult`, :class:`~tiercut.pipeline.DemoCase`,
    :class:`~tiercut.pipeline.RunOutcome`, ...).
    """
    from tiercut.report import write_report

    if isinstance(results, (str, Path, tuple)) or hasattr(results, "to_dict"):
        results = [results]
    return write_report([_as_input(r, i) for i, r in enumerate(results)], out, title=title)


__all__ = ["report"]
