"""Several DNNs on shared devices and links: :class:`JointProblem` and its answer :class:`JointPlan`.

Each model has its own graph, source and query rate; all share one
environment. The shared-capacity model (docs/cost-model.md "Several DNNs",
:mod:`tiercut.cost.joint`): a stage's (device's, link direction's) utilisation
is the sum over models of ``rate x`` the seconds one query of that model
keeps it busy. Objectives: ``throughput`` (minimise the largest utilisation:
its inverse is how far every rate can grow together before a stage
saturates) or ``latency`` (the mean per query, i.e. rate-weighted, or the max
over models of each model's one-query latency, with every stage's
utilisation at most 1 as a constraint).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.problem.types import SCHEMA_VERSION, Objective, UserProblem
from tiercut.serialization import from_json_float, json_contract, json_float, jsonable, optional_float

#: the objectives of a joint problem
JOINT_OBJECTIVES = ("throughput", "latency")


@dataclass(frozen=True)
class JointProblem:
    """Several models' graphs placed jointly on shared devices and links.

    Attributes:
        models: each a :class:`~tiercut.problem.UserProblem`: its name, its
            single-user problem (graph, source, compute times, its own pins
            and budgets; every model over the same devices and links) and its
            ``query_rate_hz``.
        objective: ``throughput`` or ``latency`` (``aggregate`` mean: per
            query, rate-weighted; max: the slowest model).
        name: a label.
    """

    models: tuple[UserProblem, ...]
    objective: Objective = field(default_factory=lambda: Objective("throughput"))
    name: str = ""

    def __post_init__(self) -> None:
        if not self.models:
            raise TiercutError("a joint problem needs at least one model")
        if self.objective.kind not in JOINT_OBJECTIVES:
            raise TiercutError(
                f"a joint problem's objective is throughput or latency, not {self.objective.kind!r}"
            )
        first = self.models[0]
        names: set[str] = set()
        for model in self.models:
            if model.name in names:
                raise TiercutError(f"joint problem has two models named {model.name!r}; rename one")
            names.add(model.name)
            rate = model.query_rate_hz
            if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
                raise TiercutError(f"model {model.name!r} has query rate {rate!r}; give a rate > 0 queries per second")
            if model.problem.devices != first.problem.devices:
                raise TiercutError(f"model {model.name!r} has other devices than {first.name!r}; share one environment")
            if {k.key: k for k in model.problem.links} != {k.key: k for k in first.problem.links}:
                raise TiercutError(f"model {model.name!r} has other links than {first.name!r}; share one environment")
            if model.problem.cut_compression is not None:
                raise TiercutError(f"model {model.name!r} offers cut compression; the joint model does not model it")

    @property
    def device_names(self) -> list[str]:
        return self.models[0].problem.device_names

    @property
    def total_rate_hz(self) -> float:
        return float(sum(m.query_rate_hz for m in self.models))

    def model(self, name: str) -> UserProblem:
        for model in self.models:
            if model.name == name:
                return model
        raise TiercutError(f"joint problem has no model {name!r}; models are {', '.join(m.name for m in self.models)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "joint",
            "name": self.name,
            "objective": self.objective.to_dict(),
            "models": [m.to_dict() for m in self.models],
        }

    @classmethod
    @json_contract("joint problem", version=SCHEMA_VERSION, hint="write it with 'tiercut plan --models ... --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> JointProblem:
        return cls(
            models=tuple(UserProblem.from_dict(m) for m in data["models"]),
            objective=Objective.from_dict(data.get("objective", {"kind": "throughput"})),
            name=str(data.get("name", "")),
        )


@dataclass(frozen=True)
class ModelFigures:
    """One model's figures in a joint plan: its one-query latency and its own stage loads' bottleneck."""

    latency_s: float
    bottleneck_s: float
    query_rate_hz: float

    def to_dict(self) -> dict[str, Any]:
        return {"latency_s": json_float(self.latency_s), "bottleneck_s": json_float(self.bottleneck_s),
                "query_rate_hz": self.query_rate_hz}

    @classmethod
    @json_contract("joint plan's model figures", hint="write it with JointPlan.to_dict of this tiercut")
    def from_dict(cls, data: Mapping[str, Any]) -> ModelFigures:
        return cls(from_json_float(data["latency_s"]), from_json_float(data["bottleneck_s"]),
                   float(data["query_rate_hz"]))


@dataclass(frozen=True)
class JointPlan:
    """Placements of every model and the shared-capacity figures (:func:`tiercut.cost.joint.evaluate_joint`).

    Attributes:
        algorithm: the joint planner's name.
        placements: model -> (node -> device).
        models: model -> its figures.
        utilisation: stage -> sum over models of rate x busy seconds per query.
        max_utilisation: the largest (the throughput objective's value).
        bottleneck_stage: its stage.
        latency_mean_s: the per-query (rate-weighted) mean latency; latency_max_s: the slowest model's.
        objective_value, solve_s, feasible, optimal, gap, settings, violations, note: as in a :class:`Plan`.
    """

    algorithm: str
    placements: Mapping[str, Mapping[str, str]]
    models: Mapping[str, ModelFigures]
    utilisation: Mapping[str, float]
    max_utilisation: float
    bottleneck_stage: str
    latency_mean_s: float
    latency_max_s: float
    objective_value: float
    solve_s: float
    feasible: bool
    optimal: bool
    gap: float | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    violations: tuple[str, ...] = ()
    note: str = ""

    @property
    def throughput_scale(self) -> float:
        """How far every model's rate can grow together before a stage saturates (``1 / max_utilisation``)."""
        if self.max_utilisation <= 0:
            return math.inf
        return 0.0 if math.isinf(self.max_utilisation) else 1.0 / self.max_utilisation

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "algorithm": self.algorithm,
            "placements": {m: dict(p) for m, p in self.placements.items()},
            "models": {m: f.to_dict() for m, f in self.models.items()},
            "utilisation": dict(self.utilisation),
            "max_utilisation": json_float(self.max_utilisation),
            "bottleneck_stage": self.bottleneck_stage,
            "throughput_scale": json_float(self.throughput_scale),
            "latency_mean_s": json_float(self.latency_mean_s),
            "latency_max_s": json_float(self.latency_max_s),
            "objective_value": json_float(self.objective_value),
            "solve_s": self.solve_s,
            "feasible": self.feasible,
            "optimal": self.optimal,
            "gap": None if self.gap is None else json_float(self.gap),
            "settings": {k: jsonable(v) for k, v in self.settings.items()},
            "violations": list(self.violations),
            "note": self.note,
        }

    @classmethod
    @json_contract("joint plan", version=SCHEMA_VERSION, hint="pass the 'plan' object of 'tiercut plan --models ... --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> JointPlan:
        return cls(
            algorithm=str(data["algorithm"]),
            placements={str(m): {str(k): str(v) for k, v in p.items()} for m, p in data["placements"].items()},
            models={str(m): ModelFigures.from_dict(f) for m, f in data["models"].items()},
            utilisation={str(k): float(v) for k, v in data["utilisation"].items()},
            max_utilisation=from_json_float(data["max_utilisation"]),
            bottleneck_stage=str(data.get("bottleneck_stage", "")),
            latency_mean_s=from_json_float(data["latency_mean_s"]),
            latency_max_s=from_json_float(data["latency_max_s"]),
            objective_value=from_json_float(data["objective_value"]),
            solve_s=float(data.get("solve_s", 0.0)),
            feasible=bool(data["feasible"]),
            optimal=bool(data["optimal"]),
            gap=optional_float(data.get("gap")),
            settings=dict(data.get("settings", {})),
            violations=tuple(str(v) for v in data.get("violations", ())),
            note=str(data.get("note", "")),
        )


__all__ = ["JOINT_OBJECTIVES", "JointPlan", "JointProblem", "ModelFigures"]
