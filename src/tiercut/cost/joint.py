"""The shared-capacity model of several DNNs on shared devices and links (docs/cost-model.md "Several DNNs").

Model ``m`` (query rate ``r_m`` [1/s]) placed by ``x_m`` keeps every pipeline
stage ``s`` (a device, or a link direction; :mod:`tiercut.cost.throughput`)
busy ``stage_s(x_m)`` seconds per query. The stage's *utilisation* is

    U_s = sum_m r_m * stage_s(x_m)      (busy seconds per second)

and the system keeps up with every rate iff ``max_s U_s <= 1``. Objectives:

- ``throughput``: minimise ``U = max_s U_s``; ``1 / U`` is the factor by which
  every rate can grow together before a stage saturates;
- ``latency``: minimise the models' one-query latencies ``T(x_m)`` (the
  sequential model), by ``mean`` per query (``sum_m r_m T_m / sum_m r_m``) or
  ``max`` over models, subject to ``U <= 1`` (a violation otherwise). Queueing
  delay under load is not part of it (the simulator measures it).

Memory: a device holds every model's parameters at once (the sum over models
``<= memory``, when a model enforces memory). Each model's own pins and budgets
hold for it. Implemented once here on top of :func:`tiercut.cost.evaluate` (and
:func:`tiercut.cost.evaluate_many` for the vectorised form); no planner
re-implements it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from tiercut.cost.model import BUDGET_RTOL, Evaluation, evaluate
from tiercut.cost.throughput import stage_names
from tiercut.errors import TiercutError
from tiercut.problem.joint import JointProblem


@dataclass(frozen=True)
class JointEvaluation:
    """The shared-capacity figures of one joint placement.

    Attributes:
        models: model -> its own :class:`~tiercut.cost.Evaluation` (memory
            checked jointly, so not in it).
        utilisation: stage -> ``sum_m r_m stage_s(x_m)``.
        max_utilisation, bottleneck_stage: the largest and its stage.
        latency_mean_s (per query, rate-weighted), latency_max_s: over models.
        objective_value: the joint objective (inf when not valid).
        memory_bytes: device -> every model's parameter bytes on it.
        valid: every model's placement is valid.
        violations: one line per broken rule (model's own, memory, overload).
    """

    models: Mapping[str, Evaluation]
    utilisation: Mapping[str, float]
    max_utilisation: float
    bottleneck_stage: str
    latency_mean_s: float
    latency_max_s: float
    objective_value: float
    memory_bytes: Mapping[str, int]
    valid: bool
    violations: tuple[str, ...]

    @property
    def feasible(self) -> bool:
        return not self.violations


def _unshared(problem) -> object:
    return replace(problem, constraints=replace(problem.constraints, memory=False))


def joint_objective(problem: JointProblem, max_utilisation: float, latency_mean_s: float, latency_max_s: float) -> float:
    """The joint objective from the aggregated figures."""
    if problem.objective.kind == "throughput":
        return max_utilisation
    return latency_mean_s if problem.objective.aggregate == "mean" else latency_max_s


def evaluate_joint(problem: JointProblem, placements: Mapping[str, Mapping[str, str]]) -> JointEvaluation:
    """Every figure of a joint placement under the shared-capacity model."""
    for name in placements:
        problem.model(name)
    stages = stage_names(problem.models[0].problem)
    utilisation = dict.fromkeys(stages, 0.0)
    memory = dict.fromkeys(problem.device_names, 0)
    evaluations: dict[str, Evaluation] = {}
    violations: list[str] = []
    for model in problem.models:
        if model.name not in placements:
            raise TiercutError(f"no placement for model {model.name!r}; give one per model")
        ev = evaluate(_unshared(model.problem), placements[model.name])
        evaluations[model.name] = ev
        violations.extend(f"model {model.name!r}: {v}" for v in ev.violations)
        for stage, seconds in ev.pipeline_stages.items():
            utilisation[stage] += model.query_rate_hz * seconds
        for d, b in ev.memory_bytes.items():
            memory[d] += b
    valid = all(ev.valid for ev in evaluations.values())
    enforce = any(m.problem.constraints.memory for m in problem.models)
    for device in problem.models[0].problem.devices:
        limit = device.memory_bytes
        if enforce and limit is not None and memory[device.name] > limit:
            violations.append(f"{device.name!r} holds {memory[device.name]:,} parameter bytes of all models, over its "
                              f"memory of {limit:,}")
    if not valid:
        inf = math.inf
        return JointEvaluation(evaluations, utilisation, inf, "", inf, inf, inf, memory, False, tuple(violations))
    stage = max(utilisation, key=lambda k: utilisation[k]) if utilisation else ""
    peak = float(utilisation[stage]) if stage else 0.0
    rates = np.array([m.query_rate_hz for m in problem.models])
    latencies = np.array([evaluations[m.name].latency_s for m in problem.models])
    mean = float(rates @ latencies / rates.sum())
    worst = float(latencies.max())
    if problem.objective.kind == "latency" and peak > 1.0 * (1 + BUDGET_RTOL):
        violations.append(f"stage {stage!r} is overloaded: utilisation {peak:.4g} > 1 at these rates")
    return JointEvaluation(
        models=evaluations, utilisation=utilisation, max_utilisation=peak, bottleneck_stage=stage,
        latency_mean_s=mean, latency_max_s=worst, objective_value=joint_objective(problem, peak, mean, worst),
        memory_bytes=memory, valid=True, violations=tuple(violations),
    )


__all__ = ["JointEvaluation", "evaluate_joint", "joint_objective"]
