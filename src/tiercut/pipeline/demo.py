"""The demo's cases: one model on one environment, every planner compared, the best plan's upload planned.

AlexNet on ``neurosurgeon-wifi`` (the paper's own setting: a Jetson TK1
and a Tesla K40 over Wi-Fi, where the best plan splits the model and beats
both running everything on the phone and sending everything to the
server), then VGG16 and GoogLeNet on the ``three-tier`` and
``migration-12`` presets. :func:`demo_case` computes one case as a typed
:class:`DemoCase`; ``tiercut demo`` writes and prints them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tiercut.pipeline.planning import Comparison, best_cloud_only, compare
from tiercut.pipeline.problem import problem as problem_step
from tiercut.pipeline.progress import SILENT, Progress
from tiercut.problem import Plan, Problem
from tiercut.upload import UploadPlan

DEMO_MODELS = ("vgg16", "googlenet")
DEMO_ENVS = ("three-tier", "migration-12")
#: cases on presets faithful to their paper, shown first: the split beats local-only and cloud-only
FAITHFUL_CASES = (("alexnet", "neurosurgeon-wifi"),)


def demo_cases(
    models: tuple[str, ...] = DEMO_MODELS,
    envs: tuple[str, ...] = DEMO_ENVS,
    faithful: tuple[tuple[str, str], ...] = FAITHFUL_CASES,
) -> list[tuple[str, str]]:
    """(model, environment) of every case: the faithful ones, then each model on each environment."""
    return [*faithful, *((m, e) for m in models for e in envs)]


@dataclass(frozen=True)
class DemoCase:
    """One model on one environment.

    Attributes:
        model, env: what was planned.
        comparison: every applicable planner's plan.
        best: the recommended planner (feasible, lowest objective, proven optimum first among ties).
        local: the local-only plan (None where it does not apply).
        cloud: the fastest all-on-one-cloud-device plan (None without a feasible one).
        server: the first server the best plan uses (None: it runs everything on the source).
        upload_plans: upload planner -> its plan of the best plan's part on ``server``.
    """

    model: str
    env: str
    comparison: Comparison
    best: str
    local: Plan | None
    cloud: Plan | None
    server: str | None
    upload_plans: dict[str, UploadPlan] = field(default_factory=dict)

    @property
    def problem(self) -> Problem:
        return self.comparison.problem  # type: ignore[return-value]

    @property
    def best_plan(self) -> Plan:
        return self.comparison.plans[self.best]  # type: ignore[return-value]

    @property
    def devices_used(self) -> list[str]:
        """The devices the best plan places layers on, in the environment's order."""
        placed = {self.best_plan.placement[n.name] for n in self.problem.graph if not n.is_input}
        return [d.name for d in self.problem.devices if d.name in placed]

    @property
    def speedup_vs_local(self) -> float:
        """Local-only latency / best latency (nan where local-only cannot run)."""
        ok = self.local is not None and math.isfinite(self.local.latency_s) and self.best_plan.latency_s > 0
        return self.local.latency_s / self.best_plan.latency_s if ok else float("nan")  # type: ignore[union-attr]

    @property
    def speedup_vs_cloud(self) -> float:
        """Cloud-only latency / best latency (nan without a cloud-only plan)."""
        ok = self.cloud is not None and math.isfinite(self.cloud.latency_s) and self.best_plan.latency_s > 0
        return self.cloud.latency_s / self.best_plan.latency_s if ok else float("nan")  # type: ignore[union-attr]

    @property
    def beats_both(self) -> bool:
        """The best plan splits the model over several devices and is faster than local-only and cloud-only."""
        return len(self.devices_used) > 1 and self.speedup_vs_local > 1.0 and self.speedup_vs_cloud > 1.0

    def to_dict(self) -> dict[str, Any]:
        """``{"problem", "plans", "upload_plans"}``: the case file ``tiercut report`` reads."""
        return {**self.comparison.to_dict(), "upload_plans": {k: u.to_dict() for k, u in self.upload_plans.items()}}


def demo_case(model: str, env: str, *, progress: Progress = SILENT) -> DemoCase:
    """Plan ``model`` on ``env`` with every planner, pick the best, plan its upload with every upload planner."""
    from tiercut.upload import UPLOAD_PLANNERS, plan_upload

    with progress.step(f"{model} on {env}"):
        problem = problem_step(model, env, progress=progress)
        comparison = compare(problem, progress=progress)
        best = comparison.best
        if best is None:
            best = next(iter(comparison.plans))
        plans = comparison.plans
        best_plan = plans[best]
        servers = sorted({d for d in best_plan.placement.values() if d != problem.source})  # type: ignore[union-attr]
        server = servers[0] if servers else None
        uploads: dict[str, UploadPlan] = {}
        if server is not None:
            names = [n for n in UPLOAD_PLANNERS if n != "exhaustive"]
            with progress.step(f"planning uploads to {server}"):
                for index, name in enumerate(names):
                    progress.advance(index, len(names), name)
                    uploads[name] = plan_upload(problem, algorithm=name, server=server)
        local = plans.get("local")
        return DemoCase(
            model=model, env=env, comparison=comparison, best=best,
            local=local if isinstance(local, Plan) else None, cloud=best_cloud_only(problem), server=server,
            upload_plans=uploads,
        )


__all__ = ["DEMO_ENVS", "DEMO_MODELS", "FAITHFUL_CASES", "DemoCase", "demo_case", "demo_cases"]
