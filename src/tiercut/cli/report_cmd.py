"""``tiercut report``: one self-contained HTML page from result files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tiercut.cli.checks import check_output_path


def report(
    results: Annotated[
        list[Path],
        typer.Argument(
            metavar="RESULT.json",
            help="result files: what plan/compare/upload/simulate/run/graph --json print, or demo case files",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write")] = Path("report.html"),
    title: Annotated[str | None, typer.Option(help="page title (default: the first result's name)")] = None,
) -> None:
    """Write one offline HTML page of RESULT.json files: layers by device, one query's timeline, links, curves."""
    from tiercut.report import write_report

    check_output_path(out, "--out")  # like every command: an existing folder, never a device or a folder replaced
    path = write_report(results, out, title=title)
    typer.echo(f"report: {path.resolve()}")


__all__ = ["report"]
