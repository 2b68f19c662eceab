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

The graph cache (:mod:`tiercut.graph.cache`) is per host: each process
reads and writes the cache folder of its own machine and environment
(``TIERCUT_CACHE_DIR``; a cluster's workers have their node's ``ray start``
environment, not the driver's). So the driver is the cache that counts: it
looks a zoo model up in its own cache first (a hit ships the graph through
the object store, no task traces it), and a graph a task traced on any node
comes back through the object store and is stored in the driver's cache
(when the worker's cache key -- tiercut and torch versions -- is the
driver's). A cluster on other hosts therefore needs no shared filesystem;
it needs tiercut (the same version) importable on every node.

``address``: the reachable ``host:port`` is checked first (a TCP connect of
a few seconds), so a wrong address fails at once with one line instead of
Ray's minute of retries.

Ray moves the cells and rows between its own processes; what a cell
carries is plain data (names, numbers, the graph and environment as JSON),
and the grid itself is data (:mod:`tiercut.sweep.grid`).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
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
        nodes: the Ray node ids (hex) the computed cells ran on (empty: serial or nothing computed).
        graphs: model label -> where its graph came from this run: ``file`` (read by the driver), ``cache``
            (the driver's graph cache), ``traced`` (by the driver, serial), ``task`` (a Ray task traced it, or read
            it from its node's cache), ``error``; models without cells left are absent.
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
    nodes: tuple[str, ...] = field(default_factory=tuple)
    graphs: Mapping[str, str] = field(default_factory=dict)

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
            "nodes": list(self.nodes),
            "graphs": dict(self.graphs),
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
    nodes: list[str] = []
    sources: dict[str, str] = {}

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
                    cached = _cached_graph_data(cell.model, grid.granularity) if "zoo" in cell.model.identity else None
                    graphs[key] = cached if cached is not None else _graph_or_error(cell.model, grid.granularity)
                    sources[cell.model.label] = (
                        "error" if isinstance(graphs[key], str) else "cache" if cached is not None
                        else "traced" if "zoo" in cell.model.identity else "file"
                    )
                finished(cell, run_cell(cell, graphs[key]))
        elif not pending:
            workers = 0  # every cell was finished: no Ray needed
        else:
            workers, failed = _run_on_ray(pending, grid.granularity, address, num_cpus, finished, nodes, sources)
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
        nodes=tuple(sorted(set(nodes))), graphs=sources,
    )


def _model_request(model: ModelChoice, granularity: str):
    """The graph request :func:`tiercut.sweep.cell.extract_graph` makes (its cache key is the graph's)."""
    from tiercut.pipeline.model import model_request

    return model_request(model.spec, model.input_shape, granularity=granularity)


def _graph_cache_key(model: ModelChoice, granularity: str) -> str | None:
    """This process's graph-cache key (SHA-256 hex) of ``model``'s graph, None when it has none."""
    from tiercut.graph.cache import cache_key

    try:
        keyed = cache_key(_model_request(model, granularity))
    except TiercutError:
        return None
    return None if keyed is None else keyed[0]


def _cached_graph_data(model: ModelChoice, granularity: str) -> dict[str, Any] | None:
    """``model``'s graph JSON from this process's graph cache, None on a miss (nothing is traced)."""
    from tiercut.graph.cache import cache_dir, cache_key, read_entry

    try:
        keyed = cache_key(_model_request(model, granularity))
    except TiercutError:
        return None
    if keyed is None:
        return None
    graph = read_entry(cache_dir() / f"{keyed[0]}.json", keyed[1])
    return None if graph is None else graph.to_dict()


def _store_graph_data(model: ModelChoice, granularity: str, data: dict[str, Any] | str, key: str | None) -> None:
    """Store a graph a task traced (maybe on another host) in this process's cache, if its key is this one's."""
    from tiercut.graph.cache import store_graph
    from tiercut.graph.types import LayerGraph

    if isinstance(data, str) or key is None or key != _graph_cache_key(model, granularity):
        return
    store_graph(_model_request(model, granularity), LayerGraph.from_dict(data))


def _ray_graph_task(model: ModelChoice, granularity: str) -> tuple[dict[str, Any] | str, str | None]:
    """The graph (or its error) and the worker's cache key of it (the driver stores it under the same key only)."""
    return _graph_or_error(model, granularity), _graph_cache_key(model, granularity)


def _ray_cell_task(cell: Cell, graph_data: dict[str, Any] | str) -> dict[str, Any]:
    """The cell's row and the id of the Ray node that computed it."""
    import ray

    return {"row": run_cell(cell, graph_data), "node": ray.get_runtime_context().get_node_id()}


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Raise a one-line TiercutError unless something accepts a TCP connection at ``address``'s host and port
    (``host:port`` or ``ray://host:port``; ``auto`` and ``local`` are left to Ray)."""
    import socket

    text = address.strip()
    if text in ("auto", "local"):
        return
    rest = text[len("ray://"):] if text.startswith("ray://") else text
    host, sep, port_text = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TiercutError(f"--address {address!r} is not host:port; give the head's host:port (ray start --head "
                           "prints it, 6379 by default) or ray://host:10001")
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TiercutError(f"cannot reach the Ray cluster at {address}: {reason}; check --address (start one with "
                           "ray start --head) or run without it for a local Ray") from None


@contextlib.contextmanager
def _stderr_to(sink: Any):
    """File descriptor 2 (where Ray's C++ core writes) into ``sink`` (a binary temporary file) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(sink.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to Ray (``address``) or start a local one; True when this call started it (the caller shuts it down).

    Connecting to ``address``, Ray's C++ core writes a warning to stderr at every retry (a wrong auth token: one a
    second for about ten seconds); they are caught and the failure is one line (naming the token when that is the
    cause)."""
    try:
        import ray
    except ImportError:
        raise TiercutError("Ray is not installed: pip install 'tiercut[sweep]' (or run the sweep with --serial)") from None

    if address is not None:  # a wrong address fails at once, even when this process already runs a Ray
        check_address(address)
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    with tempfile.TemporaryFile() as sink:
        try:
            if address is not None:
                with _stderr_to(sink):
                    ray.init(address=address, **options)
            else:
                ray.init(num_cpus=num_cpus, **options)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            sink.seek(0)
            said = sink.read().decode(errors="replace") + str(exc)
            if address is not None and ("InvalidAuthToken" in said or isinstance(exc, ray.exceptions.AuthenticationError)):
                raise TiercutError(
                    f"the Ray cluster at {address} refused this driver's auth token; give the cluster's token "
                    "(RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, with RAY_AUTH_MODE=token) or run with --serial"
                ) from None
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
    nodes: list[str] | None = None,
    sources: dict[str, str] | None = None,
) -> tuple[int, int]:
    import ray

    nodes = [] if nodes is None else nodes
    sources = {} if sources is None else sources

    started_here = start_ray(address, num_cpus)
    try:
        workers = int(ray.cluster_resources().get("CPU", 1))
        if not pending:
            return workers, 0
        graph_task = ray.remote(num_cpus=1, max_retries=1, num_returns=2)(_ray_graph_task)
        cell_task = ray.remote(num_cpus=1, max_retries=1)(_ray_cell_task)
        graphs: dict[Any, Any] = {}
        traced: list[tuple[ModelChoice, Any, Any]] = []
        for cell in pending:  # one extraction per model; its result stays in the object store, shared by its cells
            key = _model_key(cell.model)
            if key in graphs:
                continue
            if "zoo" in cell.model.identity:
                cached = _cached_graph_data(cell.model, granularity)
                if cached is not None:  # in the driver's cache: shipped through the object store, not traced again
                    graphs[key] = ray.put(cached)
                    sources[cell.model.label] = "cache"
                else:  # traced in a task, on any node; the driver stores it in its cache when it is back
                    graphs[key], cache_key_ref = graph_task.remote(cell.model, granularity)
                    traced.append((cell.model, graphs[key], cache_key_ref))
                    sources[cell.model.label] = "task"
            else:  # a file only this machine may have: read here, its graph shipped through the object store
                data = _graph_or_error(cell.model, granularity)
                graphs[key] = ray.put(data)
                sources[cell.model.label] = "error" if isinstance(data, str) else "file"
        running = {cell_task.remote(cell, graphs[_model_key(cell.model)]): cell for cell in pending}
        failed = 0
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                cell = running.pop(ref)
                try:
                    answer = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failed += 1
                    finished(cell, _crashed(cell, exc), store_it=False)
                    continue
                nodes.append(str(answer["node"]))
                finished(cell, answer["row"])
        for model, graph_ref, cache_key_ref in traced:
            try:
                data, key = ray.get([graph_ref, cache_key_ref])
            except ray.exceptions.RayError:
                sources[model.label] = "error"
                continue
            if isinstance(data, str):
                sources[model.label] = "error"
            _store_graph_data(model, granularity, data, key)
        return workers, failed
    finally:
        if started_here:
            ray.shutdown()


__all__ = ["SweepResult", "check_address", "run_sweep", "start_ray"]
