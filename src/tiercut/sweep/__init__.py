"""``tiercut sweep``: models x environments x planners x settings (x simulator replications) as Ray tasks.

A grid file (:mod:`tiercut.sweep.grid`, data only) expands into cells; each
cell is graph -> problem -> plan (-> simulation) as one row
(:mod:`tiercut.sweep.cell`); :func:`run_sweep` runs the cells on a local Ray,
a cluster, or serially, resumes from the cells a previous run finished
(:mod:`tiercut.sweep.store`) and writes one Parquet/CSV table and a report.
"""

from tiercut.sweep.cell import METRIC_COLUMNS, TIMING_COLUMNS, extract_graph, run_cell
from tiercut.sweep.grid import Cell, Grid, expand, grid_from_mapping, load_grid
from tiercut.sweep.runner import SweepResult, run_sweep, start_ray
from tiercut.sweep.store import CellStore, read_table, write_table

__all__ = [
    "METRIC_COLUMNS",
    "TIMING_COLUMNS",
    "Cell",
    "CellStore",
    "Grid",
    "SweepResult",
    "expand",
    "extract_graph",
    "grid_from_mapping",
    "load_grid",
    "read_table",
    "run_cell",
    "run_sweep",
    "start_ray",
    "write_table",
]
