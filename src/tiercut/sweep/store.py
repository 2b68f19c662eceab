"""Where a sweep keeps its results: one JSON file per finished cell, then one table and a report.

``OUT/cells/<key>.json`` holds a finished cell's row under the SHA-256 of
everything that decides it (:meth:`tiercut.sweep.grid.Cell.key`), written to
a temporary file and renamed into place: a sweep stopped at any moment
leaves only whole cells, and the next run of the same (or a larger) grid
reuses them instead of computing them again. A file that cannot be read,
is not the expected JSON or holds another key is ignored and the cell
recomputed. Nothing in these files is code (JSON only).

``OUT/results.parquet`` and ``OUT/results.csv`` hold every cell's row in
the grid's order (pyarrow); ``OUT/report.md`` the summary (the best planner
per model, environment and settings).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.sweep.cell import FLOAT_COLUMNS
from tiercut.sweep.grid import CELL_FORMAT, Cell

#: a stored cell larger than this is not read (a row is a few hundred bytes)
MAX_CELL_BYTES = 1 << 20
#: table formats :func:`write_table` writes
TABLE_FORMATS = ("parquet", "csv")


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _json_safe(value: Any) -> Any:
    """NaN and infinities as None/strings JSON can hold exactly (``"inf"``, ``"-inf"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _from_json(value: Any) -> Any:
    if value is None:
        return math.nan
    if value in ("inf", "-inf"):
        return math.inf if value == "inf" else -math.inf
    return value


class CellStore:
    """Finished cells of sweeps written to ``out_dir`` (see the module docstring)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.cells_dir = self.out_dir / "cells"

    def path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.json"

    def load(self, cell: Cell) -> dict[str, Any] | None:
        """The stored row of ``cell`` (its position set to this grid's), or None when it is not (validly) stored."""
        key = cell.key()
        path = self.path(key)
        try:
            if path.stat().st_size > MAX_CELL_BYTES:
                return None
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(data, dict) or data.get("key") != key or data.get("format") != CELL_FORMAT:
            return None
        row = data.get("row")
        if not isinstance(row, dict) or row.get("key") != key:
            return None
        out = {k: _from_json(v) if k in FLOAT_COLUMNS else v for k, v in row.items()}
        out.update(cell.labels())  # labels are this grid's names for the same inputs
        out["position"] = cell.position
        return out

    def save(self, cell: Cell, row: Mapping[str, Any]) -> None:
        """Store ``row`` as ``cell``'s result (atomically)."""
        body = {
            "format": CELL_FORMAT,
            "key": cell.key(),
            "inputs": cell.inputs(),
            "row": {k: _json_safe(v) for k, v in row.items()},
        }
        text = json.dumps(body, sort_keys=True, allow_nan=False)
        _atomic_write(self.path(body["key"]), lambda p: p.write_text(text, encoding="utf-8"))


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        for name in row:
            if name not in columns:
                columns.append(name)
    return columns


def write_table(rows: Sequence[Mapping[str, Any]], out_dir: str | Path, formats: Sequence[str] = TABLE_FORMATS) -> list[Path]:
    """Write ``rows`` (one per cell, grid order) as ``results.parquet`` and/or ``results.csv``; returns the paths."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq
    except ImportError:
        raise TiercutError("pyarrow is not installed: pip install 'tiercut[sweep]'") from None

    unknown = [f for f in formats if f not in TABLE_FORMATS]
    if unknown:
        raise TiercutError(f"table format {unknown[0]!r} is not known; use {' or '.join(TABLE_FORMATS)}")
    columns = _columns(rows)
    data: dict[str, list[Any]] = {name: [row.get(name) for row in rows] for name in columns}
    arrays = {}
    for name, values in data.items():
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, bool) for v in present):
            arrays[name] = pa.array(values, type=pa.bool_())
        elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            kind = pa.int64() if all(isinstance(v, int) for v in present) else pa.float64()
            arrays[name] = pa.array([None if v is None else (float(v) if kind == pa.float64() else v) for v in values], type=kind)
        else:
            arrays[name] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    table = pa.table(arrays) if arrays else pa.table({})
    out = Path(out_dir)
    paths = []
    for fmt in formats:
        path = out / f"results.{fmt}"
        if fmt == "parquet":
            _atomic_write(path, lambda p: pq.write_table(table, p))
        else:
            _atomic_write(path, lambda p: pa_csv.write_csv(table, p))
        paths.append(path)
    return paths


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``results.parquet`` (or ``.csv``) table, as written."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    path = Path(path)
    table = pq.read_table(path) if path.suffix == ".parquet" else pa_csv.read_csv(path)
    return table.to_pylist()


def report_lines(rows: Sequence[Mapping[str, Any]], setting_keys: Sequence[str]) -> list[str]:
    """A Markdown summary: per model, environment and settings, every planner's objective and the best one."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("replication", 0) not in (0, None):
            continue
        key = (row.get("model"), row.get("environment"), *(row.get(k) for k in setting_keys))
        groups.setdefault(key, []).append(row)
    lines = [
        "| model | environment | " + "".join(f"{k} | " for k in setting_keys) + "planner | objective | latency (ms) | "
        "pipelined (queries/s) | best |",
        "|---|---|" + "---|" * len(setting_keys) + "---|---|---|---|---|",
    ]
    for key, members in groups.items():
        usable = [r for r in members if r.get("feasible") is True and not r.get("error")]
        best = min(usable, key=lambda r: r["objective_value"], default=None)
        for row in members:
            note = row.get("error") or ""
            mark = "yes" if row is best else ""
            cells = [str(k) for k in key] + [
                str(row.get("planner")),
                f"{row['objective_value']:.6g}" if isinstance(row.get("objective_value"), float) else "",
                f"{row['latency_s'] * 1e3:.3f}" if isinstance(row.get("latency_s"), float) else "",
                f"{row['pipelined_qps']:.3f}" if isinstance(row.get("pipelined_qps"), float) else "",
                mark or (note[:80] if note else ""),
            ]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return lines


def write_report(rows: Sequence[Mapping[str, Any]], setting_keys: Sequence[str], out_dir: str | Path, title: str) -> Path:
    """``OUT/report.md``: the summary table of :func:`report_lines`."""
    text = "\n".join([f"# {title}", "", f"{len(rows)} cells.", "", *report_lines(rows, setting_keys), ""])
    path = Path(out_dir) / "report.md"
    _atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path


__all__ = ["MAX_CELL_BYTES", "TABLE_FORMATS", "CellStore", "read_table", "report_lines", "write_report", "write_table"]
