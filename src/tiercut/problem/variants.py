"""Model variants (MCDNN): a problem that may run any of several versions of a model, each with its accuracy.

MCDNN (Han, Shen, Philipose, Agarwal, Wolman and Krishnamurthy, "MCDNN: An
Approximation-Based Execution Framework for Deep Stream Processing Under
Resource Constraints", MobiSys 2016) keeps a catalogue of variants of each
model (smaller architectures, compressed versions) with their accuracy and
cost, and per request picks the variant and where it runs so that the
latency, energy and cost budgets hold, preferring the most accurate one.

A :class:`VariantProblem` is that choice's data: one :class:`ModelVariant`
per version, each a full single-user :class:`~tiercut.problem.Problem` over
the same devices and links (its own graph and compute times, the shared
objective and budgets) with its ``accuracy`` (a fraction; measured on the
digits data set for the small digits CNN family, declared with its
``accuracy_source`` for zoo models); ``accuracy_min``, the least accuracy
acceptable; and ``goal``: ``accuracy`` (MCDNN's: the most accurate variant
that meets the budgets, ties by the problem's objective) or ``objective``
(the best objective among variants at least ``accuracy_min`` accurate).

A :class:`VariantPlan` names the chosen variant and carries that variant's
:class:`~tiercut.problem.Plan`: its figures recompute from the JSON alone,
``evaluate(variant_problem.variant(plan.variant).problem, plan.plan.placement)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError
from tiercut.problem.plan import Plan
from tiercut.problem.types import Problem
from tiercut.serialization import json_contract

#: how a variant problem ranks feasible variants
GOALS = ("accuracy", "objective")


@dataclass(frozen=True)
class ModelVariant:
    """One version of the model: its problem and its accuracy (a fraction, 0..1) with where that figure is from."""

    name: str
    problem: Problem
    accuracy: float
    accuracy_source: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise TiercutError("a model variant needs a name, e.g. 'resnet18'")
        if not (isinstance(self.accuracy, (int, float)) and math.isfinite(self.accuracy) and 0 <= self.accuracy <= 1):
            raise TiercutError(
                f"variant {self.name!r} has accuracy {self.accuracy!r}; give a fraction in [0, 1], e.g. 0.698 for 69.8%"
            )
        if not self.accuracy_source.strip():
            raise TiercutError(
                f"variant {self.name!r} gives no accuracy_source; say where its accuracy comes from (measured on ..., "
                "or the paper / model card it is declared in)"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "accuracy": self.accuracy, "accuracy_source": self.accuracy_source,
                "problem": self.problem.to_dict()}

    @classmethod
    @json_contract("model variant", hint="pass the 'problem' object of 'tiercut plan --variants FILE --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> ModelVariant:
        return cls(str(data["name"]), Problem.from_dict(data["problem"]), float(data["accuracy"]),
                   str(data.get("accuracy_source", "")))


@dataclass(frozen=True)
class VariantProblem:
    """The variants one request may run, the least accuracy acceptable and how to rank them (module docstring)."""

    variants: tuple[ModelVariant, ...]
    accuracy_min: float = 0.0
    goal: str = "accuracy"
    name: str = ""

    def __post_init__(self) -> None:
        if not self.variants:
            raise TiercutError("a variant problem needs at least one variant")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise TiercutError(f"variant names must differ; {', '.join(names)} repeats one")
        if self.goal not in GOALS:
            raise TiercutError(f"variant goal {self.goal!r} is not known; use {' or '.join(GOALS)}")
        if not (math.isfinite(self.accuracy_min) and 0 <= self.accuracy_min <= 1):
            raise TiercutError(f"accuracy_min {self.accuracy_min!r} must be a fraction in [0, 1], e.g. 0.7")
        first = self.variants[0].problem
        for variant in self.variants[1:]:
            p = variant.problem
            if p.device_names != first.device_names or p.source != first.source:
                raise TiercutError(
                    f"variant {variant.name!r} is planned on other devices or another source than "
                    f"{self.variants[0].name!r}; every variant must share the environment"
                )
            if p.objective != first.objective or p.constraints.budgets() != first.constraints.budgets():
                raise TiercutError(f"variant {variant.name!r} has another objective or other budgets; they are shared")

    def variant(self, name: str) -> ModelVariant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise TiercutError(f"variant {name!r} is not in the problem; it lists {', '.join(v.name for v in self.variants)}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "variants", "name": self.name, "accuracy_min": self.accuracy_min, "goal": self.goal,
                "variants": [v.to_dict() for v in self.variants]}

    @classmethod
    @json_contract("variant problem", hint="pass the 'problem' object of 'tiercut plan --variants FILE --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> VariantProblem:
        return cls(tuple(ModelVariant.from_dict(v) for v in data["variants"]), float(data.get("accuracy_min", 0.0)),
                   str(data.get("goal", "accuracy")), str(data.get("name", "")))


@dataclass(frozen=True)
class VariantOutcome:
    """One variant's best placement as the planner found it (``plan`` None: below ``accuracy_min``, not planned)."""

    variant: str
    accuracy: float
    plan: Plan | None

    @property
    def eligible(self) -> bool:
        return self.plan is not None and self.plan.feasible

    def to_dict(self) -> dict[str, Any]:
        p = self.plan
        return {
            "variant": self.variant,
            "accuracy": self.accuracy,
            "planned": p is not None,
            "feasible": bool(p is not None and p.feasible),
            "objective_value": None if p is None or not math.isfinite(p.objective_value) else p.objective_value,
            "latency_s": None if p is None else _finite(p.latency_s),
            "energy_source_j": None if p is None else _finite(p.energy_source_j),
            "cost": None if p is None else _finite(p.cost),
            "optimal": bool(p is not None and p.optimal),
        }


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class VariantPlan:
    """The chosen variant and its plan; ``variant`` is "" when no variant meets the budgets and the accuracy floor
    (then ``plan`` is the most accurate planned variant's, infeasible, so the violation shows).

    Attributes:
        algorithm: the planner (``mcdnn``).
        variant: the chosen variant's name.
        accuracy: its accuracy.
        plan: its plan on that variant's problem (figures from the cost model).
        outcomes: every variant's outcome, in the problem's order.
        optimal: the choice is proven best (every planned variant solved exactly).
        solve_s: wall time of the whole choice.
    """

    algorithm: str
    variant: str
    accuracy: float
    plan: Plan
    outcomes: tuple[VariantOutcome, ...]
    optimal: bool
    solve_s: float

    @property
    def feasible(self) -> bool:
        return bool(self.variant) and self.plan.feasible

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "variants",
            "algorithm": self.algorithm,
            "variant": self.variant,
            "accuracy": self.accuracy,
            "feasible": self.feasible,
            "optimal": self.optimal,
            "solve_s": self.solve_s,
            "plan": self.plan.to_dict(),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }

    @classmethod
    @json_contract("variant plan", hint="pass the 'plan' object of 'tiercut plan --variants FILE --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> VariantPlan:
        outcomes = tuple(VariantOutcome(str(o["variant"]), float(o["accuracy"]), None) for o in data.get("outcomes", ()))
        return cls(str(data["algorithm"]), str(data["variant"]), float(data["accuracy"]), Plan.from_dict(data["plan"]),
                   outcomes, bool(data.get("optimal", False)), float(data.get("solve_s", 0.0)))


__all__ = ["GOALS", "ModelVariant", "VariantOutcome", "VariantPlan", "VariantProblem"]
