"""``tiercut sweep GRID.yaml``: models x environments x planners x settings as Ray tasks, one results table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tiercut.cli.options import QuietOpt, emit_json


def sweep(
    grid: Annotated[Path, typer.Argument(help="grid file (YAML or JSON): models, environments, planners, settings, simulate")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="results folder (default: sweep-<grid name> beside the grid)")
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="a Ray cluster's address (default: start a local Ray)")
    ] = None,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", help="CPUs of the local Ray (default: every core)")] = None,
    serial: Annotated[
        bool, typer.Option("--serial", help="run the cells one after another in this process, without Ray")
    ] = False,
    table_format: Annotated[
        str, typer.Option("--format", help="table formats: parquet, csv or parquet,csv")
    ] = "parquet,csv",
    as_json: Annotated[bool, typer.Option("--json", help="print the sweep's summary as JSON")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Run every cell of GRID (finished cells in the results folder are reused) and write results.parquet/csv and report.md."""
    from tiercut.errors import TiercutError
    from tiercut.sweep import load_grid, run_sweep
    from tiercut.sweep.store import TABLE_FORMATS, report_lines

    formats = [f.strip() for f in table_format.split(",") if f.strip()]
    bad = [f for f in formats if f not in TABLE_FORMATS]
    if bad or not formats:
        raise TiercutError(f"--format {table_format!r}: use {', '.join(TABLE_FORMATS)} or both separated by a comma")
    if num_cpus is not None and num_cpus < 1:
        raise TiercutError(f"--num-cpus {num_cpus} must be >= 1")
    if serial and address is not None:
        raise TiercutError("--serial runs without Ray; drop --address")
    if serial and num_cpus is not None:
        raise TiercutError("--num-cpus sizes the local Ray; drop it with --serial")
    parsed = load_grid(grid)
    folder = out if out is not None else grid.resolve().parent / f"sweep-{parsed.name}"
    result = run_sweep(
        parsed, folder, serial=serial, address=address, num_cpus=num_cpus, formats=formats, show_progress=not quiet,
    )
    if as_json:
        emit_json(result.to_dict(), None)
        return
    typer.echo(
        f"sweep {result.grid}: {len(result.rows)} cells ({result.computed} computed, {result.reused} reused"
        + (f", {result.failed} failed" if result.failed else "")
        + f") in {result.wall_s:.1f} s, {result.mode} on {result.workers} CPU(s)"
        + (f" of {len(result.nodes)} Ray nodes" if len(result.nodes) > 1 else "")
    )
    for line in report_lines(result.rows, list(parsed.settings))[:42]:
        typer.echo(line)
    for path in result.paths:
        typer.echo(f"wrote {path}")
    if result.failed:
        typer.echo(f"{result.failed} cell(s) failed and were not stored: run the sweep again to retry them", err=True)
        raise typer.Exit(1)
