"""Many users from one template: rename a problem's devices and its upload plan.

Large simulations (a thousand users over a hundred servers) rarely need a
thousand different plans: users with the same model on the same kind of
client and server have the same problem up to device names. Planning once
and renaming is exact and keeps building the simulation cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from tiercut.errors import TiercutError
from tiercut.problem import Constraints, Problem
from tiercut.upload.types import Stage, UploadPlan, UserUploadPlan


def _rn(mapping: Mapping[str, str], name: str) -> str:
    return mapping.get(name, name)


def rename_devices(problem: Problem, mapping: Mapping[str, str], name: str | None = None) -> Problem:
    """``problem`` with devices renamed by ``mapping`` (devices not in it keep their names)."""
    targets = [_rn(mapping, d.name) for d in problem.devices]
    if len(set(targets)) != len(targets):
        raise TiercutError(f"renaming the devices of {problem.name!r} would give two devices one name")
    cons = problem.constraints
    return replace(
        problem,
        devices=tuple(replace(d, name=_rn(mapping, d.name)) for d in problem.devices),
        links=tuple(replace(k, a=_rn(mapping, k.a), b=_rn(mapping, k.b)) for k in problem.links),
        source=_rn(mapping, problem.source),
        compute_s={n: {_rn(mapping, d): s for d, s in row.items()} for n, row in problem.compute_s.items()},
        constraints=Constraints(
            memory=cons.memory,
            latency_budget_s=cons.latency_budget_s,
            energy_source_budget_j=cons.energy_source_budget_j,
            energy_total_budget_j=cons.energy_total_budget_j,
            cost_budget=cons.cost_budget,
            pinned={n: _rn(mapping, d) for n, d in cons.pinned.items()},
        ),
        provenance={_rn(mapping, d): p for d, p in problem.provenance.items()},
        name=name if name is not None else problem.name,
    )


def _stage(stage: Stage, mapping: Mapping[str, str]) -> Stage:
    return Stage(
        stage.from_s,
        {n: _rn(mapping, d) for n, d in stage.placement.items()},
        stage.latency_s,
        {_rn(mapping, s): k for s, k in stage.arrived.items()},
    )


def rename_upload_plan(plan: UploadPlan, mapping: Mapping[str, str]) -> UploadPlan:
    """An :class:`UploadPlan` with its devices renamed."""
    return replace(
        plan,
        server=_rn(mapping, plan.server),
        source=_rn(mapping, plan.source),
        stages=tuple(_stage(s, mapping) for s in plan.stages),
    )


def rename_user_plan(plan: UserUploadPlan, mapping: Mapping[str, str], user: str | None = None) -> UserUploadPlan:
    """A :class:`UserUploadPlan` with its devices (and optionally its user) renamed."""
    return UserUploadPlan(
        user=user if user is not None else plan.user,
        source=_rn(mapping, plan.source),
        algorithm=plan.algorithm,
        target={n: _rn(mapping, d) for n, d in plan.target.items()},
        servers={_rn(mapping, s): rename_upload_plan(p, mapping) for s, p in plan.servers.items()},
        stages=tuple(_stage(s, mapping) for s in plan.stages),
        metrics=plan.metrics,
    )


__all__ = ["rename_devices", "rename_upload_plan", "rename_user_plan"]
