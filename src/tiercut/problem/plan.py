"""A planner's answer: :class:`Plan` (one user) and :class:`MultiPlan` (several users).

A plan holds a placement and the figures the cost model computes for it
(docs/DESIGN.md's ``plan`` JSON contract); every figure can be recomputed from
the problem alone (:func:`tiercut.cost.evaluate`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tiercut.problem.shares import Shares
from tiercut.problem.types import SCHEMA_VERSION
from tiercut.serialization import from_json_float, json_contract, json_float, jsonable, optional_float


# ---------------------------------------------------------------- plan
@dataclass(frozen=True)
class Plan:
    """A placement and its figures, as computed by the cost model.

    Attributes:
        algorithm: the planner's registry name.
        placement: node -> device, graph inputs included (on the source).
        latency_s, energy_source_j, energy_total_j, cost: the cost model's
            figures of the placement (inf when it is not evaluable, e.g. a
            transfer over a missing link; written as null in JSON).
        objective_value: the problem objective's value of the placement.
        solve_s: wall-clock seconds the planner took.
        feasible: the placement is evaluable and breaks no constraint.
        optimal: the planner proved the placement optimal for the problem.
        gap: relative optimality gap where the planner reports one (ILP).
        bound: a proven lower bound of the objective where the planner has
            one (ILP; after a time-out the optimum lies between it and
            ``objective_value``).
        settings: the planner's constructor keywords (``get_params()``).
        violations: one line per broken constraint (empty when feasible).
        memory_bytes: device -> parameter bytes placed on it.
        note: anything the planner wants a reader to know (e.g. "constraints
            ignored by this algorithm; use ilp").
        cut_compression: node -> cut codec of each tensor sent compressed
            (JALAD; the problem's ``cut_compression`` options; empty: raw).
        accuracy_loss: the summed accuracy loss of those tensors.
        pipeline_stages: pipeline stage (device, or link direction ``a->b``) -> busy
            seconds per query (docs/cost-model.md "Throughput"); empty when the
            placement is not evaluable or was evaluated by another layer.
        bottleneck_s: the largest stage time; ``throughput_qps`` is its inverse
            (inf / 0 when not evaluable).
    """

    algorithm: str
    placement: Mapping[str, str]
    latency_s: float
    energy_source_j: float
    energy_total_j: float
    cost: float
    objective_value: float
    solve_s: float
    feasible: bool
    optimal: bool
    gap: float | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    violations: tuple[str, ...] = ()
    memory_bytes: Mapping[str, int] = field(default_factory=dict)
    note: str = ""
    bound: float | None = None
    cut_compression: Mapping[str, str] = field(default_factory=dict)
    accuracy_loss: float = 0.0
    pipeline_stages: Mapping[str, float] = field(default_factory=dict)
    bottleneck_s: float = math.inf

    @property
    def throughput_qps(self) -> float:
        """Queries per second of the pipelined stream: ``1 / bottleneck_s``."""
        if self.bottleneck_s <= 0:
            return math.inf
        return 0.0 if math.isinf(self.bottleneck_s) else 1.0 / self.bottleneck_s

    def metric(self, name: str) -> float:
        """A figure by metric name (``latency``, ``energy_source``, ``energy_total``, ``cost``)."""
        return {
            "latency": self.latency_s,
            "energy_source": self.energy_source_j,
            "energy_total": self.energy_total_j,
            "cost": self.cost,
        }[name]

    def devices_used(self) -> list[str]:
        return list(dict.fromkeys(self.placement.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "algorithm": self.algorithm,
            "placement": dict(self.placement),
            "latency_s": json_float(self.latency_s),
            **_figures_to_dict(self),
            **_outcome_to_dict(self),
            "bound": None if self.bound is None else json_float(self.bound),
            "memory_bytes": dict(self.memory_bytes),
            "cut_compression": dict(self.cut_compression),
            "accuracy_loss": self.accuracy_loss,
            "pipeline_stages": dict(self.pipeline_stages),
            "bottleneck_s": json_float(self.bottleneck_s),
            "throughput_qps": json_float(self.throughput_qps),
        }

    @classmethod
    @json_contract("plan", version=SCHEMA_VERSION, hint="pass the 'plan' object of 'tiercut plan --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            algorithm=str(data["algorithm"]),
            placement={str(k): str(v) for k, v in data["placement"].items()},
            latency_s=from_json_float(data["latency_s"]),
            **_figures_from_dict(data),
            **_outcome_from_dict(data),
            memory_bytes={str(k): int(v) for k, v in dict(data.get("memory_bytes", {})).items()},
            bound=optional_float(data.get("bound")),
            cut_compression={str(k): str(v) for k, v in dict(data.get("cut_compression", {})).items()},
            accuracy_loss=float(data.get("accuracy_loss", 0.0)),
            pipeline_stages={str(k): float(v) for k, v in dict(data.get("pipeline_stages", {})).items()},
            bottleneck_s=from_json_float(data.get("bottleneck_s")),
        )


@dataclass(frozen=True)
class UserFigures:
    """One user's figures under the equal-share model."""

    latency_s: float
    energy_source_j: float
    energy_total_j: float
    cost: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_s": json_float(self.latency_s),
            "energy_source_j": json_float(self.energy_source_j),
            "energy_total_j": json_float(self.energy_total_j),
            "cost": json_float(self.cost),
        }

    @classmethod
    @json_contract("multi-user plan's user figures", hint="write it with MultiPlan.to_dict of this tiercut")
    def from_dict(cls, data: Mapping[str, Any]) -> UserFigures:
        return cls(*(from_json_float(data[k]) for k in ("latency_s", "energy_source_j", "energy_total_j", "cost")))


@dataclass(frozen=True)
class MultiPlan:
    """Placements of every user's DNN and the equal-share figures.

    Attributes:
        algorithm: the planner's registry name.
        placements: user -> (node -> device).
        users: user -> its figures under the equal-share model.
        latency_mean_s, latency_max_s: over users.
        energy_source_j, energy_total_j, cost: summed over users.
        objective_value: the multi-user objective's value.
        solve_s, feasible, optimal, gap, settings, violations, note: as in :class:`Plan`.
        shares: each user's fraction of every resource it uses (resource allocation,
            :mod:`tiercut.cost.allocation`); None: the equal-share model.
        convergence: a joint planner's objective after each of its iterations (JMDP/JPDRA), else empty.
    """

    algorithm: str
    placements: Mapping[str, Mapping[str, str]]
    users: Mapping[str, UserFigures]
    latency_mean_s: float
    latency_max_s: float
    energy_source_j: float
    energy_total_j: float
    cost: float
    objective_value: float
    solve_s: float
    feasible: bool
    optimal: bool
    gap: float | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    violations: tuple[str, ...] = ()
    note: str = ""
    shares: Shares | None = None
    convergence: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "algorithm": self.algorithm,
            "placements": {u: dict(p) for u, p in self.placements.items()},
            "shares": None if self.shares is None else self.shares.to_dict(),
            "convergence": [json_float(v) for v in self.convergence],
            "users": {u: f.to_dict() for u, f in self.users.items()},
            "latency_mean_s": json_float(self.latency_mean_s),
            "latency_max_s": json_float(self.latency_max_s),
            **_figures_to_dict(self),
            **_outcome_to_dict(self),
        }

    @classmethod
    @json_contract("multi-user plan", version=SCHEMA_VERSION, hint="write it with MultiPlan.to_dict of this tiercut")
    def from_dict(cls, data: Mapping[str, Any]) -> MultiPlan:
        return cls(
            algorithm=str(data["algorithm"]),
            placements={str(u): {str(k): str(v) for k, v in p.items()} for u, p in data["placements"].items()},
            users={str(u): UserFigures.from_dict(f) for u, f in data["users"].items()},
            latency_mean_s=from_json_float(data["latency_mean_s"]),
            latency_max_s=from_json_float(data["latency_max_s"]),
            **_figures_from_dict(data),
            **_outcome_from_dict(data),
            shares=None if data.get("shares") is None else Shares.from_dict(data["shares"]),
            convergence=tuple(from_json_float(v) for v in data.get("convergence", ())),
        )


# ---------------------------------------------------------------- the fields Plan and MultiPlan share
_FIGURES = ("energy_source_j", "energy_total_j", "cost")


def _figures_to_dict(plan: Plan | MultiPlan) -> dict[str, Any]:
    return {name: json_float(getattr(plan, name)) for name in _FIGURES}


def _figures_from_dict(data: Mapping[str, Any]) -> dict[str, float]:
    return {name: from_json_float(data[name]) for name in _FIGURES}


def _outcome_to_dict(plan: Plan | MultiPlan) -> dict[str, Any]:
    """How the planner's run ended: objective, time, feasibility, optimality, settings, notes."""
    return {
        "objective_value": json_float(plan.objective_value),
        "solve_s": plan.solve_s,
        "feasible": plan.feasible,
        "optimal": plan.optimal,
        "gap": None if plan.gap is None else json_float(plan.gap),
        "settings": {k: jsonable(v) for k, v in plan.settings.items()},
        "violations": list(plan.violations),
        "note": plan.note,
    }


def _outcome_from_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "objective_value": from_json_float(data.get("objective_value")),
        "solve_s": float(data.get("solve_s", 0.0)),
        "feasible": bool(data["feasible"]),
        "optimal": bool(data["optimal"]),
        "gap": optional_float(data.get("gap")),
        "settings": dict(data.get("settings", {})),
        "violations": tuple(str(v) for v in data.get("violations", ())),
        "note": str(data.get("note", "")),
    }


__all__ = ["MultiPlan", "Plan", "UserFigures"]
