"""Running a sweep: every cell of a grid as a Ray task (or serially), resumable, with progress.

:func:`run_sweep`:

1. expands the grid into cells (:func:`tiercut.sweep.grid.expand`) and
   looks each up in the store (:class:`tiercut.sweep.store.CellStore`):
   finished cells are reused, not recomputed;
2. extracts each model's graph once for the cells left (a zoo model in one
   task, a model file here, where the file is); the graph goes into Ray's
   object store and every cell of that model reads the same copy; the
   on-disk graph cache makes the next sweep skip the tracing too;
3. runs the cells left as Ray tasks (one CPU each) on a local Ray
   (``ray.init()``, ``num_cpus`` workers) or the cluster at ``address``,
   storing each row the moment it arrives, so a sweep stopped at any point
   keeps every finished cell; ``serial=True`` runs them one after another
   in this process (no Ray), the reference a Ray sweep must equal;
4. writes the table (Parquet and CSV, grid order) and the report.

Ray moves the cells and rows between its own processes; what a cell
carries is plain data (names, numbers, the graph and environment as JSON),
and the grid itself is data (:mod:`tiercut.sweep.grid`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.sweep.cell import METRIC_COLUMNS, TIMING_COLUMNS, extract_graph, run_cell
from tiercut.sweep.grid import Cell, Grid, ModelChoice, expand
from tiercut.sweep.store import TABLE_FORMATS, CellStore, write_report, write_table


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did.

    Attributes:
        grid: the grid's name.
        rows: one row per cell, in the grid's order.
        computed: cells computed by this run.
        reused: cells found finished in the store.
        failed: cells whose task crashed (not stored: the next run computes them again).
        mode: ``serial`` or ``ray``.
        workers: CPUs Ray offered the cells (1 for serial, 0 when every cell was reused).
        wall_s: wall time of the whole sweep (graphs, cells, table).
        paths: the table files and the report written.
    """

    grid: str
    rows: tuple[Mapping[str, Any], ...]
    computed: int
    reused: int
    failed: int
    mode: str
    workers: int
    wall_s: float
    paths: tuple[Path, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "grid": self.grid,
            "cells": len(self.rows),
            "computed": self.computed,
            "reused": self.reused,
            "failed": self.failed,
            "mode": self.mode,
            "workers": self.workers,
            "wall_s": self.wall_s,
            "paths": [str(p) for p in self.paths],
        }


def _model_key(model: ModelChoice) -> tuple[str, tuple[int, ...] | None]:
    return (model.spec, model.input_shape)


def _graph_or_error(model: ModelChoice, granularity: str) -> dict[str, Any] | str:
    """The graph JSON, or the one-line error extracting it gave (every cell of the model then reports it)."""
    try:
        return extract_graph(model, granularity)
    except TiercutError as exc:
        return f"model {model.label}: {exc}"


def _crashed(cell: Cell, exc: BaseException) -> dict[str, Any]:
    """The row of a cell whose task crashed (a bug, a killed worker): not stored, so it is computed next time."""
    from tiercut.sweep.cell import _empty_metrics

    row = {"position": cell.position, "key": cell.key(), **cell.labels(), **_empty_metrics(), "solve_s": math.nan}
    row["error"] = f"task failed: {type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"[:300]
    row["cell_s"] = math.nan
    return row


class _Progress:
    """A rich progress bar on stderr (or nothing)."""

    def __init__(self, enabled: bool, total: int, description: str) -> None:
        self._bar: Any = None
        self._task: Any = None
        if enabled and total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), console=Console(stderr=True), transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=total)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def run_sweep(
    grid: Grid,
    out_dir: str | Path,
    *,
    serial: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    formats: Sequence[str] = TABLE_FORMATS,
    show_progress: bool = False,
    on_row: Callable[[Mapping[str, Any]], None] | None = None,
) -> SweepResult:
    """Run every cell of ``grid`` not already finished in ``out_dir`` (see the module docstring).

    Args:
        serial: run the cells in this process, one after another (no Ray).
        address: a Ray cluster's address (``ray://host:10001`` or ``host:6379``); None: a local Ray
            (or the one this process already started).
        num_cpus: CPUs of the local Ray (None: Ray's default, every core); ignored with ``address``.
        formats: table formats (``parquet``, ``csv``).
        show_progress: a progress bar on stderr.
        on_row: called with each row as it is finished (after it is stored).
    """
    if serial and address is not None:
        raise TiercutError("--serial runs without Ray; drop --address")
    if num_cpus is not None and num_cpus < 1:
        raise TiercutError(f"--num-cpus {num_cpus} must be >= 1")
    unknown = [f for f in formats if f not in TABLE_FORMATS]
    if unknown or not formats:
        raise TiercutError(f"table format {(unknown or [''])[0]!r} is not known; use {' and/or '.join(TABLE_FORMATS)}")
    started = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TiercutError(f"sweep output {out} is a file; pass a folder")
    store = CellStore(out)
    cells = expand(grid)
    rows: dict[int, Mapping[str, Any]] = {}
    for cell in cells:
        stored = store.load(cell)
        if stored is not None:
            rows[cell.position] = stored
    pending = [c for c in cells if c.position not in rows]
    reused = len(rows)
    bar = _Progress(show_progress, len(cells), f"sweep {grid.name}")
    for _ in range(reused):
        bar.advance()
    failed = 0

    def finished(cell: Cell, row: Mapping[str, Any], *, store_it: bool = True) -> None:
        if store_it:
            store.save(cell, row)
        rows[cell.position] = row
        bar.advance()
        if on_row is not None:
            on_row(row)

    try:
        if serial:
            workers = 1
            graphs: dict[Any, dict[str, Any] | str] = {}
            for cell in pending:
                key = _model_key(cell.model)
                if key not in graphs:
                    graphs[key] = _graph_or_error(cell.model, grid.granularity)
                finished(cell, run_cell(cell, graphs[key]))
        elif not pending:
            workers = 0  # every cell was finished: no Ray needed
        else:
            workers, failed = _run_on_ray(pending, grid.granularity, address, num_cpus, finished)
    finally:
        bar.stop()
    columns = ["position", "key", "model", "environment", "planner", *grid.settings, "replication", *METRIC_COLUMNS,
               *TIMING_COLUMNS]
    ordered = tuple({name: rows[c.position].get(name) for name in columns} for c in cells if c.position in rows)
    paths: list[Path] = []
    if len(ordered) == len(cells):
        paths = write_table(ordered, out, formats)
        paths.append(write_report(ordered, list(grid.settings), out, f"tiercut sweep {grid.name}"))
    return SweepResult(
        grid=grid.name, rows=ordered, computed=len(pending) - failed, reused=reused, failed=failed,
        mode="serial" if serial else "ray", workers=workers, wall_s=time.perf_counter() - started, paths=tuple(paths),
    )


def _ray_graph_task(model: ModelChoice, granularity: str) -> dict[str, Any] | str:
    return _graph_or_error(model, granularity)


def _ray_cell_task(cell: Cell, graph_data: dict[str, Any] | str) -> dict[str, Any]:
    return run_cell(cell, graph_data)


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to Ray (``address``) or start a local one; True when this call started it (the caller shuts it down)."""
    try:
        import ray
    except ImportError:
        raise TiercutError("Ray is not installed: pip install 'tiercut[sweep]' (or run the sweep with --serial)") from None

    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    try:
        if address is not None:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=num_cpus, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TiercutError(f"cannot start or reach {where}: {first}; check --address (or run with --serial)") from None
    return True


def _run_on_ray(
    pending: Sequence[Cell],
    granularity: str,
    address: str | None,
    num_cpus: int | None,
    finished: Callable[..., None],
) -> tuple[int, int]:
    import ray

    started_here = start_ray(address, num_cpus)
    try:
        workers = int(ray.cluster_resources().get("CPU", 1))
        if not pending:
            return workers, 0
        graph_task = ray.remote(num_cpus=1, max_retries=1)(_ray_graph_task)
        cell_task = ray.remote(num_cpus=1, max_retries=1)(_ray_cell_task)
        graphs: dict[Any, Any] = {}
        for cell in pending:  # one extraction per model; its result stays in the object store, shared by its cells
            key = _model_key(cell.model)
            if key in graphs:
                continue
            if "zoo" in cell.model.identity:  # traced in a task, on any node
                graphs[key] = graph_task.remote(cell.model, granularity)
            else:  # a file only this machine may have: read here, its graph shipped through the object store
                graphs[key] = ray.put(_graph_or_error(cell.model, granularity))
        running = {cell_task.remote(cell, graphs[_model_key(cell.model)]): cell for cell in pending}
        failed = 0
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                cell = running.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failed += 1
                    finished(cell, _crashed(cell, exc), store_it=False)
                    continue
                finished(cell, row)
        return workers, failed
    finally:
        if started_here:
            ray.shutdown()


__all__ = ["SweepResult", "run_sweep", "start_ray"]
