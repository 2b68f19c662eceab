"""Multi-server, multi-user uploading: the migration seed's improvement.

Xue, Wu and Li, "DNN Migration in IoTs" (the seed), "Improvement of
Partition-Uploading Plan": (1) a partition-offloading plan over several
servers (the seed uses PSO; any multi-user planner of :mod:`tiercut.plan`
does) decides which server holds which of each user's nodes -- a P1 per
(user, server); (2) an existing uploading algorithm divides each P1 into
partitions P3 and orders them.

Here each (user, server) pair gets an :class:`~tiercut.upload.UploadPlan`
from the chosen upload planner, on the user's problem under docs/DESIGN.md's
equal-share model for the offloading plan (a server used by ``n`` users
runs each at ``1/n`` of its speed, a link used by ``n`` users gives each
``1/n`` of its bandwidth, uploads included) and restricted to the client and
that server. A user's uploads to different servers run in parallel on their
own links; its merged stage timeline uses, from each arrival on, the best
placement of everything arrived anywhere over the client and the servers
the plan gives it (:mod:`tiercut.upload.analytic`). The simulator
(:mod:`tiercut.sim`) replaces the equal shares with real queueing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tiercut.cost import evaluate, shared_problem
from tiercut.cost.multiuser import usage
from tiercut.errors import TiercutError
from tiercut.plan import MultiPlacementResult, make_multi_plan
from tiercut.problem import MultiPlan, MultiUserProblem, Problem
from tiercut.upload.analytic import StageSolver, build_stages, default_query_count, direct_upload_s, upload_metrics
from tiercut.upload.base import DEFAULT_UPLOAD_PLANNER, upload_problem_issue
from tiercut.upload.registry import get_upload_planner
from tiercut.upload.types import MultiUploadPlan, Stage, UploadPlan, UserUploadPlan


def offloading_plan(
    problem: MultiUserProblem,
    offloading: str | MultiPlan | Mapping[str, Mapping[str, str]],
    settings: Mapping[str, Any] | None = None,
) -> MultiPlan:
    """The multi-user partition-offloading plan: planned by name, given, or built from placements."""
    if isinstance(offloading, MultiPlan):
        return offloading
    if isinstance(offloading, str):
        from tiercut.plan import get_planner

        return get_planner(offloading, **dict(settings or {})).solve_multi(problem)
    return make_multi_plan(problem, "given", MultiPlacementResult(offloading), 0.0, {})


def shared_user_problems(problem: MultiUserProblem, placements: Mapping[str, Mapping[str, str]]) -> dict[str, Problem]:
    """Each user's problem with the equal-share speeds of ``placements`` (compute stretched, bandwidth divided)."""
    device_users: dict[str, int] = {}
    link_users: dict[frozenset[str], int] = {}
    for user in problem.users:
        devices, links = usage(user.problem, placements[user.name])
        for d in devices:
            device_users[d] = device_users.get(d, 0) + 1
        for key in links:
            link_users[key] = link_users.get(key, 0) + 1
    return {u.name: shared_problem(u.problem, device_users, link_users) for u in problem.users}


def user_servers(problem: Problem, placement: Mapping[str, str]) -> list[str]:
    """Servers (non-source devices) holding nodes of ``placement``, in device order."""
    used = {d for n, d in placement.items() if d != problem.source and not problem.graph[n].is_input}
    return [d for d in problem.device_names if d in used]


def plan_user_upload(
    user: str,
    problem: Problem,
    placement: Mapping[str, str],
    algorithm: str,
    *,
    n_queries: int | None = None,
    settings: Mapping[str, Any] | None = None,
) -> UserUploadPlan:
    """One user's upload plans to every server of ``placement`` and the merged stage timeline."""
    settings = dict(settings or {})
    for key in ("server", "offloading"):
        if key in settings:
            raise TiercutError(f"upload setting {key!r} is decided by the offloading plan here; drop it")
    if "n_queries" in settings:
        raise TiercutError("give n_queries as its own argument, not among the upload settings")
    reason = upload_problem_issue(problem)
    if reason is not None:
        raise TiercutError(f"user {user!r}: {reason}")
    servers = user_servers(problem, placement)
    plans: dict[str, UploadPlan] = {}
    targets: dict[str, list[str]] = {}
    for server in servers:
        targets[server] = [n for n, d in placement.items() if d == server]
        planner = get_upload_planner(algorithm, **settings, n_queries=n_queries)
        pair = problem.restricted_to([problem.source, server])
        plans[server] = planner.solve(pair, {n: server for n in targets[server]})
    scope = problem.restricted_to([problem.source, *servers])
    if servers:
        solver = StageSolver(scope)
        stages = build_stages(scope, {s: p.partitions for s, p in plans.items()}, solver)
    else:
        local = scope.local_placement()
        stages = (Stage(0.0, local, evaluate(scope, local).latency_s, {}),)
    end = max((p.upload_end_s for p in plans.values()), default=0.0)
    n = n_queries or default_query_count(stages[0].latency_s, direct_upload_s(scope, targets))
    return UserUploadPlan(
        user=user,
        source=problem.source,
        algorithm=algorithm,
        target=dict(placement),
        servers=plans,
        stages=stages,
        metrics=upload_metrics(stages, end, n),
    )


def user_plan_from_upload(user: str, plan: UploadPlan) -> UserUploadPlan:
    """One server's :class:`UploadPlan` as a :class:`UserUploadPlan` (same stages and metrics)."""
    stages = tuple(
        Stage(s.from_s, s.placement, s.latency_s, dict(s.arrived) or {plan.server: k}) for k, s in enumerate(plan.stages)
    )
    return UserUploadPlan(
        user=user,
        source=plan.source,
        algorithm=plan.algorithm,
        target={n: plan.server for n in plan.target_nodes},
        servers={plan.server: plan},
        stages=stages,
        metrics=plan.metrics,
    )


def plan_multi_upload(
    problem: MultiUserProblem,
    algorithm: str = DEFAULT_UPLOAD_PLANNER,
    *,
    offloading: str | MultiPlan | Mapping[str, Mapping[str, str]] = "pso",
    offloading_settings: Mapping[str, Any] | None = None,
    n_queries: int | None = None,
    **settings: Any,
) -> MultiUploadPlan:
    """Every user's upload plans after a multi-server partition-offloading plan.

    Args:
        problem: the users over shared devices and links.
        algorithm: the upload planner for every (user, server) pair.
        offloading: a registered multi-user planner's name (the seed uses
            PSO), a :class:`~tiercut.problem.MultiPlan`, or user -> placement.
        offloading_settings: settings of the offloading planner.
        n_queries: ``n`` of each user's ``time_for_n_queries_s`` (default:
            the queries issued during a direct upload of its targets).
        settings: settings of the upload planner.
    """
    get_upload_planner(algorithm, **settings)
    offload = offloading_plan(problem, offloading, offloading_settings)
    start = time.perf_counter()
    shared = shared_user_problems(problem, offload.placements)
    users = {
        u.name: plan_user_upload(
            u.name, shared[u.name], offload.placements[u.name], algorithm, n_queries=n_queries, settings=settings
        )
        for u in problem.users
    }
    return MultiUploadPlan(
        algorithm=algorithm,
        offloading=offload,
        users=users,
        settings=dict(get_upload_planner(algorithm, **settings).get_params()),
        solve_s=time.perf_counter() - start,
    )


__all__ = [
    "offloading_plan",
    "plan_multi_upload",
    "plan_user_upload",
    "shared_user_problems",
    "user_plan_from_upload",
    "user_servers",
]
