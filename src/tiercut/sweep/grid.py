"""The sweep grid: a YAML file naming models x environments x planners x settings (x simulator replications).

A grid is data only: it names zoo models, ``.onnx`` files, layer-graph or
problem JSON files, environment presets or files, registered planners and
plain values; nothing in it is imported or called (a ``package.module:factory``
model is refused). Example::

    name: presets
    models:
      - resnet18                                    # a zoo name, an .onnx or a graph JSON file
      - {model: alexnet, input_shape: [1, 3, 64, 64]}
    environments: [three-tier, neurosurgeon-wifi]   # presets or YAML files (relative to the grid)
    planners:
      - mincut
      - {name: ga, settings: {seed: 1, generations: 30}}
    settings:                                       # the cross product of these values
      objective: [latency, energy_source]
    simulate:                                       # optional: simulate every plan
      queries: 20
      rate_hz: 5.0                                  # Poisson arrivals (default: back to back)
      replications: 3                               # one cell per replication, seeds 0..2

Every error is one line naming the field (``grid g.yaml: planners.1: ...``).
:func:`expand` turns a grid into its cells in a fixed order (models, then
environments, planners, settings, replications); :class:`Cell.key` hashes
everything that decides a cell's result.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tiercut.errors import TiercutError

#: cells at most in one grid (each is a task; a larger sweep is several grids)
MAX_CELLS = 100_000
#: the problem settings a grid may vary (keywords of :func:`tiercut.pipeline.problem.problem`)
SETTING_KEYS = (
    "objective",
    "source",
    "latency_budget_s",
    "energy_budget_j",
    "energy_total_budget_j",
    "cost_budget",
    "private_layers",
    "memory",
    "preprocess",
)
#: bump when a cell's row changes meaning: stored cells of another format are recomputed
CELL_FORMAT = 1

Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Strict):
    model: str = Field(min_length=1, max_length=4096)
    input_shape: tuple[int, ...] | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not 1 <= len(value) <= 8 or any(d < 1 for d in value)):
            raise ValueError("input_shape must be 1 to 8 positive integers, e.g. [1, 3, 224, 224]")
        return value


class PlannerEntry(_Strict):
    name: str = Field(min_length=1, max_length=100)
    settings: dict[str, Scalar] = Field(default_factory=dict)
    label: str | None = Field(default=None, min_length=1, max_length=200)


class SimulateEntry(_Strict):
    queries: int = Field(default=20, ge=1, le=100_000)
    rate_hz: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    replications: int = Field(default=1, ge=1, le=1000)


class GridModel(_Strict):
    name: str = Field(default="sweep", min_length=1, max_length=200)
    models: tuple[ModelEntry | str, ...] = Field(min_length=1)
    environments: tuple[str, ...] = Field(min_length=1)
    planners: tuple[PlannerEntry | str, ...] = Field(min_length=1)
    settings: dict[str, tuple[Scalar | None, ...]] = Field(default_factory=dict)
    simulate: SimulateEntry | None = None
    granularity: Literal["module", "function", "block"] = "module"

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
        for key, values in value.items():
            if key not in SETTING_KEYS:
                raise ValueError(f"setting {key!r} is not one a grid can vary; use {', '.join(SETTING_KEYS)}")
            if not values:
                raise ValueError(f"setting {key!r} lists no values; give at least one")
            for v in values:
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"setting {key!r} holds {v!r}; give finite numbers")
        return value


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("ModelEntry", "PlannerEntry", "str")))
    msg = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    shown = ""
    if not isinstance(value, (Mapping, list, tuple)) and err["type"] != "missing" and repr(value) not in msg:
        shown = f" (got {value!r:.60})"
    return f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}"


# --------------------------------------------------------------------- typed grid
@dataclass(frozen=True)
class ModelChoice:
    """One model of the grid: its spec (a zoo name or an absolute file path), input shape and label."""

    spec: str
    input_shape: tuple[int, ...] | None
    label: str
    identity: Mapping[str, Any]  # what decides its graph: zoo name + torchvision, or the file's SHA-256


@dataclass(frozen=True)
class EnvironmentChoice:
    """One environment: its label and its :class:`~tiercut.env.Environment` as JSON (so a cluster needs no file)."""

    label: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class PlannerChoice:
    """One planner: registry name, constructor settings and label."""

    name: str
    settings: Mapping[str, Any]
    label: str


@dataclass(frozen=True)
class SimulateChoice:
    queries: int
    rate_hz: float | None
    replications: int


@dataclass(frozen=True)
class Grid:
    """A validated grid (:func:`load_grid`)."""

    name: str
    models: tuple[ModelChoice, ...]
    environments: tuple[EnvironmentChoice, ...]
    planners: tuple[PlannerChoice, ...]
    settings: Mapping[str, tuple[Any, ...]]
    simulate: SimulateChoice | None
    granularity: str

    @property
    def size(self) -> int:
        combos = math.prod(len(v) for v in self.settings.values()) if self.settings else 1
        reps = self.simulate.replications if self.simulate is not None else 1
        return len(self.models) * len(self.environments) * len(self.planners) * combos * reps


@dataclass(frozen=True)
class Cell:
    """One task of a sweep: a model on an environment planned by a planner with settings (and a replication).

    Attributes:
        model, environment, planner: the choices.
        settings: problem settings (:data:`SETTING_KEYS`) of this cell.
        simulate: simulator settings (None: plan only).
        replication: the simulator replication (its arrival seed).
        granularity: graph granularity.
        position: the cell's place in the grid's order.
    """

    model: ModelChoice
    environment: EnvironmentChoice
    planner: PlannerChoice
    settings: Mapping[str, Any]
    simulate: SimulateChoice | None
    replication: int
    granularity: str
    position: int = field(default=0, compare=False)

    def inputs(self) -> dict[str, Any]:
        """Everything that decides the cell's result (hashed into :meth:`key`)."""
        from tiercut import __version__

        return {
            "format": CELL_FORMAT,
            "tiercut": __version__,
            "model": dict(self.model.identity),
            "input_shape": list(self.model.input_shape) if self.model.input_shape else None,
            "granularity": self.granularity,
            "environment": self.environment.data,
            "planner": {"name": self.planner.name, "settings": dict(self.planner.settings)},
            "settings": dict(self.settings),
            "simulate": None
            if self.simulate is None
            else {"queries": self.simulate.queries, "rate_hz": self.simulate.rate_hz, "replication": self.replication},
        }

    def key(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`inputs`."""
        text = json.dumps(self.inputs(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def labels(self) -> dict[str, Any]:
        """The cell's columns in the results table."""
        return {
            "model": self.model.label,
            "environment": self.environment.label,
            "planner": self.planner.label,
            **{key: self.settings.get(key) for key in self.settings},
            "replication": self.replication,
        }


# --------------------------------------------------------------------- loading
def _model_choice(entry: ModelEntry | str, base_dir: Path, where: str) -> ModelChoice:
    from tiercut.graph.cache import package_version
    from tiercut.graph.models import ZOO

    if isinstance(entry, str):
        entry = ModelEntry(model=entry)
    spec = entry.model
    if spec in ZOO:
        identity = {"zoo": spec, "torchvision": package_version("torchvision")}
        return ModelChoice(spec, entry.input_shape, entry.name or spec, identity)
    if ":" in spec and not Path(spec).exists() and not (base_dir / spec).exists():
        raise TiercutError(
            f"{where}: model {spec!r} would import code; a grid is data only: use a zoo name, an .onnx file or a graph JSON file"
        )
    path = Path(spec) if Path(spec).is_absolute() else base_dir / spec
    if path.suffix.lower() not in (".onnx", ".json"):
        raise TiercutError(
            f"{where}: model {spec!r} is not a zoo model ({', '.join(ZOO)}), an .onnx file or a graph JSON file"
        )
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise TiercutError(f"{where}: cannot read model file {path}: {exc.strerror or exc}") from None
    return ModelChoice(str(path.resolve()), entry.input_shape, entry.name or path.stem, {"file_sha256": digest})


def _environment_choice(spec: str, base_dir: Path, where: str) -> EnvironmentChoice:
    from tiercut.env import load_environment

    candidate = base_dir / spec
    target: str | Path = candidate if not Path(spec).is_absolute() and candidate.exists() else spec
    try:
        environment = load_environment(target)
    except TiercutError as exc:
        raise TiercutError(f"{where}: {exc}") from None
    label = Path(spec).stem if str(target).endswith((".yaml", ".yml", ".json")) else spec
    return EnvironmentChoice(label, environment.to_dict())


def _planner_choice(entry: PlannerEntry | str, where: str) -> PlannerChoice:
    from tiercut.plan.registry import PLANNERS, get_planner

    if isinstance(entry, str):
        entry = PlannerEntry(name=entry)
    if entry.name not in PLANNERS:
        raise TiercutError(f"{where}: planner {entry.name!r} is not registered; use one of {', '.join(PLANNERS)}")
    try:
        get_planner(entry.name, **entry.settings)
    except TiercutError as exc:
        raise TiercutError(f"{where}: {exc}") from None
    except TypeError as exc:
        raise TiercutError(f"{where}: planner {entry.name!r} does not take these settings ({exc})") from None
    label = entry.label or (
        entry.name if not entry.settings else f"{entry.name}({','.join(f'{k}={v}' for k, v in sorted(entry.settings.items()))})"
    )
    return PlannerChoice(entry.name, dict(entry.settings), label)


def grid_from_mapping(data: Any, *, label: str = "grid", base_dir: Path | None = None) -> Grid:
    """Validate a parsed grid (every error one line, prefixed with ``label``) and resolve its models and environments."""
    base = base_dir or Path.cwd()
    if not isinstance(data, Mapping):
        raise TiercutError(f"{label}: a grid is a mapping with models, environments and planners; see tiercut sweep --help")
    try:
        parsed = GridModel.model_validate(dict(data))
    except ValidationError as exc:
        raise TiercutError(f"{label}: {_first_error(exc)}") from None
    models = tuple(_model_choice(m, base, f"{label}: models.{i}") for i, m in enumerate(parsed.models))
    environments = tuple(_environment_choice(e, base, f"{label}: environments.{i}") for i, e in enumerate(parsed.environments))
    planners = tuple(_planner_choice(p, f"{label}: planners.{i}") for i, p in enumerate(parsed.planners))
    for what, labels in (
        ("models", [m.label for m in models]),
        ("environments", [e.label for e in environments]),
        ("planners", [p.label for p in planners]),
    ):
        seen = {x for x in labels if labels.count(x) > 1}
        if seen:
            raise TiercutError(f"{label}: {what} lists {sorted(seen)[0]!r} twice; drop one or give each a distinct name/label")
    if "objective" in parsed.settings:
        from tiercut.problem import Objective

        for i, value in enumerate(parsed.settings["objective"]):
            try:
                Objective.parse(str(value))
            except TiercutError as exc:
                raise TiercutError(f"{label}: settings.objective.{i}: {exc}") from None
    simulate = None
    if parsed.simulate is not None:
        simulate = SimulateChoice(parsed.simulate.queries, parsed.simulate.rate_hz, parsed.simulate.replications)
    grid = Grid(parsed.name, models, environments, planners, dict(parsed.settings), simulate, parsed.granularity)
    if grid.size > MAX_CELLS:
        raise TiercutError(f"{label}: the grid has {grid.size} cells, more than {MAX_CELLS}; split it into several grids")
    return grid


def load_grid(path: str | Path) -> Grid:
    """Read and validate a grid file (YAML, or JSON by its suffix); paths in it are relative to its folder."""
    from tiercut.datafiles import read_data_file

    path = Path(path)
    data = read_data_file(path, "grid")
    return grid_from_mapping(data, label=f"grid {path}", base_dir=path.resolve().parent)


def expand(grid: Grid) -> list[Cell]:
    """Every cell of ``grid`` in its fixed order (models, environments, planners, settings, replications)."""
    keys = list(grid.settings)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid.settings[k] for k in keys))]
    reps = range(grid.simulate.replications) if grid.simulate is not None else range(1)
    cells = []
    for model, environment, planner, settings, replication in itertools.product(
        grid.models, grid.environments, grid.planners, combos, reps
    ):
        cells.append(Cell(model, environment, planner, settings, grid.simulate, replication, grid.granularity, len(cells)))
    return cells


__all__ = [
    "CELL_FORMAT",
    "MAX_CELLS",
    "SETTING_KEYS",
    "Cell",
    "EnvironmentChoice",
    "Grid",
    "ModelChoice",
    "PlannerChoice",
    "SimulateChoice",
    "expand",
    "grid_from_mapping",
    "load_grid",
]
