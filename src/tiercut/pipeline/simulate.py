"""The simulate step: queries (and uploads) event by event in the discrete-event simulator.

- :func:`simulate` -- one user: a problem, optionally an upload plan (the
  partitions arrive while it queries), a number of back-to-back queries;
- :func:`simulate_scenario` -- a scenario YAML file (many users, arrivals,
  bandwidth traces; :mod:`tiercut.sim.scenario`), set up and run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.pipeline.progress import SILENT, Progress
from tiercut.problem import Plan, Problem
from tiercut.sim import SimConfig, SimResult
from tiercut.upload import UploadPlan, UserUploadPlan


def simulate(
    problem: Problem,
    upload: UploadPlan | Any | None = None,
    *,
    plan: Plan | None = None,
    queries: int = 20,
    config: SimConfig | None = None,
    user: str = "client",
    progress: Progress = SILENT,
) -> SimResult:
    """Simulate one user issuing ``queries`` back-to-back queries on ``problem``.

    ``upload`` (an :class:`UploadPlan`, or an :class:`UploadResult` of
    :func:`tiercut.plan_uploads`): the server partition arrives piece by piece
    while the queries run; ``plan``: a fixed placement instead (everything
    already in place); neither: every query runs on the source.
    """
    from tiercut.sim import SimUser
    from tiercut.sim import simulate as run_simulation
    from tiercut.upload import user_plan_from_upload

    if queries < 1:
        raise TiercutError(f"queries {queries} must be >= 1")
    if upload is not None and plan is not None:
        raise TiercutError("give an upload plan or a fixed plan to simulate, not both")
    if upload is not None and not isinstance(upload, (UploadPlan, UserUploadPlan)):
        upload = upload.plan  # an UploadResult
    user_plan = user_plan_from_upload(user, upload) if isinstance(upload, UploadPlan) else upload
    placement = None if plan is None else dict(plan.placement)
    sim_user = SimUser(user, problem, plan=user_plan, placement=placement, max_queries=queries)
    with progress.step(f"simulating {queries} queries of {problem.name}"):
        return run_simulation([sim_user], config or SimConfig())


@dataclass(frozen=True)
class ScenarioRun:
    """A simulated scenario: its name, result, and the plans and problems set up for it.

    With mobility, ``mobility`` holds every strategy's run
    (:class:`tiercut.sim.mobile.MobilityComparison`) and ``result`` is the first strategy's.
    """

    name: str
    result: SimResult
    problems: dict[str, Problem]
    plans: dict[str, UserUploadPlan | None]
    mobility: Any = None
    online: Any = None

    def to_dict(self, *, include_queries: bool = False) -> dict[str, Any]:
        """``{"scenario", "result", "analytic"}`` (and ``"mobility"``): what ``tiercut simulate --json`` prints."""
        data = {
            "scenario": self.name,
            "result": self.result.to_dict(include_queries=include_queries),
            "analytic": {u: (None if p is None else p.metrics.to_dict()) for u, p in self.plans.items()},
        }
        if self.mobility is not None:
            data["mobility"] = self.mobility.to_dict(include_queries=include_queries)
        if self.online is not None:  # a controller: scenario (tiercut.sim.online); "result" is its first run's
            data["online"] = self.online.to_dict(include_slots=include_queries)
        return data


def simulate_scenario(
    scenario: str | Path | Any, *, allow_code: bool = False, progress: Progress = SILENT,
    strategies: list[str] | None = None,
) -> ScenarioRun:  # fmt: skip
    """Set up (graphs, problems, upload plans) and run a scenario file (or a parsed :class:`Scenario`).

    ``strategies``: with a ``mobility:`` section, the hand-over strategies to compare instead of the
    scenario's (:data:`tiercut.sim.STRATEGIES`); each is simulated on the same users and movements.
    """
    from tiercut.sim.scenario import Scenario, build_scenario, load_scenario

    loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario, allow_code=allow_code)
    with progress.step(f"setting up scenario {loaded.label}: models, problems, upload plans"):
        built = build_scenario(loaded)
    if strategies is not None and built.mobility is None:
        raise TiercutError(f"--strategies compares hand-over strategies; scenario {loaded.label} has no mobility: section")
    duration = built.simulation.config.duration_s
    if built.control is not None:  # PANDA's online control: one simulated run per V, then the baselines
        from tiercut.sim.online import simulate_online

        sim = built.simulation
        with progress.step(f"simulating {built.name} under PANDA's controller"):

            def tick_o(label: str, now: float, total: float) -> None:
                progress.advance(round(now, 1), round(total, 1), f"simulated s ({label})")

            online = simulate_online(sim.users, sim.config, built.control, progress=tick_o)
        return ScenarioRun(built.name, online.runs[0].result, built.problems, built.plans, online=online)
    if built.mobility is not None:
        from dataclasses import replace

        from tiercut.sim.mobile import MobileSimulation, MobilityComparison
        from tiercut.sim.scenario import mobility_strategy

        chosen = list(built.strategies)
        if strategies is not None:
            chosen = [mobility_strategy(loaded, name) for name in dict.fromkeys(strategies)]
            if not chosen:
                raise TiercutError("--strategies is empty; give e.g. static,reactive,proactive,oracle")
        comparison = MobilityComparison()
        sim = built.simulation
        for strategy in chosen:
            with progress.step(f"simulating {built.name} ({strategy.name})"):

                def tick_m(now: float, total: float) -> None:
                    progress.advance(round(now, 1), round(total, 1), "simulated s")

                run = MobileSimulation(sim.users, sim.config, built.mobility, replace(strategy))
                comparison.results.append(run.run(tick_m))
        return ScenarioRun(built.name, comparison.results[0].result, built.problems, built.plans, comparison)
    with progress.step(f"simulating {built.name}"):

        def tick(now: float, total: float) -> None:
            progress.advance(round(now, 1), round(total, 1), "simulated s")

        result = built.simulation.run(tick if duration is not None else None)
    return ScenarioRun(built.name, result, built.problems, built.plans)


__all__ = ["ScenarioRun", "simulate", "simulate_scenario"]
