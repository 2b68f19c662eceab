"""Joint placement of several users' DNNs over shared servers (equal-share model).

The DNN-migration seed's multi-user experiment (2 clients, 5 edge and 5 cloud
servers) "simply appl[ies] the PSO algorithm to obtain the corresponding
offloading position of the DNN subtasks in a multi-user edge-cloud
collaborative environment". In tiercut that is the registered ``pso`` (and
``ga``, ``sa``, ``greedy``) planner given a
:class:`~tiercut.problem.MultiUserProblem`: a particle is the users' placements
side by side and the swarm is scored by the equal-share model
(:func:`tiercut.cost.evaluate_users_many`; a server used by ``n`` users gives
each ``1/n`` of its speed, a link ``1/n`` of its bandwidth).

This module adds the other classic multi-user scheme, iterative best response
(alternating optimisation: Tang et al., "Joint multi-user DNN partitioning and
computational resource allocation for collaborative edge intelligence", IEEE
IoT Journal 2020, the survey's IAO; best-response dynamics of congestion
games, Rosenthal 1973). With the other users' placements fixed, one user's
latency and cost under equal sharing are exactly its single-user figures on a
problem whose device times are multiplied by ``1 + (other users on the
device)`` (that device's compute power and price per second divided by it:
the user is charged its own work) and whose link bandwidths are divided by
``1 + (other users on the link)`` (the user counts itself wherever it places
a node or sends a tensor), with each device's memory reduced by the other
users' parameters. So each user's *best response* is solved exactly by a
single-user planner (``inner``, default the ILP, which keeps the user's
budgets, pins and the remaining memory) for latency and cost objectives; its
energies are exact too except for the radio on a shared link and the idle
power of a source other users compute on, which a single-user problem cannot
express (:func:`tiercut.cost.multiuser.shared_problem`; docs/cost-model.md).

:class:`BestResponsePlanner`, exactly:

1. start from every user on its own device (``start="local"``; a node that
   cannot run there takes its first allowed device) or from every user's
   optimum as if it were alone (``start="solo"``);
2. a round visits the users in order; for each, build its response problem
   from the others' current placements, solve it with ``inner``, and adopt
   the new placement when
   - ``accept="joint"``: the joint objective improves (Deb's rule: feasible
     first, then the multi-user objective, else the constraint excess) --
     the joint objective never gets worse, so the run ends; or
   - ``accept="selfish"``: the user's own objective improves (pure
     best-response dynamics, which may cycle; the best joint placement met
     is returned);
3. stop after a round in which no user changed (converged: with ``selfish``
   a pure Nash equilibrium of the sharing game, with ``joint`` a point no
   single user's best response improves) or after ``max_rounds`` rounds;
4. when a cheap candidate (every user on one device) is better than the
   point reached, run the rounds again from that candidate, so the answer
   is never worse than the cheap candidates and "converged" still means
   step 3 (returning the candidate as it is would not).

Guarantee: none for the joint optimum (a heuristic); with ``accept="joint"``
never worse than the start (the all-local placement). Deterministic.
Complexity: O(max_rounds * users * cost of one ``inner`` solve).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from tiercut.cost import compile_problem, compile_users, decode, encode, evaluate, evaluate_users_many, memory_bytes
from tiercut.cost.multiuser import shared_problem, usage
from tiercut.plan._population import Scores, better
from tiercut.plan.base import DEFAULT_PLANNER, MultiPlacementResult, Planner, no_worse_than_cheap_multi
from tiercut.problem import MultiUserProblem, Objective, Problem

ACCEPT = ("joint", "selfish")
START = ("local", "solo")


def response_problem(
    problem: MultiUserProblem,
    placements: dict[str, dict[str, str]],
    user: str,
    multipliers: tuple[dict[str, float], dict[frozenset[str], float]] | None = None,
) -> Problem:
    """User ``user``'s single-user problem with the other users' placements fixed.

    Compute times on a device are multiplied by 1 + the number of other users
    computing there, link bandwidths divided by 1 + the number of other users
    sending over the link, device memory reduced by the other users'
    parameters; the objective is the multi-user objective's metrics. A
    placement's latency and cost on this problem equal the user's figures under
    :func:`tiercut.cost.evaluate_users` with the others fixed, its energies
    too except where :func:`~tiercut.cost.multiuser.shared_problem` says. ``multipliers``
    (device -> factor, link key -> factor; e.g. ``1 / share`` of resource
    shares, :mod:`tiercut.plan.jmdp`) replace the equal-share factors of the
    resources they name.
    """
    me = problem.user(user)
    device_users: dict[str, int] = {d: 1 for d in problem.device_names}
    link_users = {link.key: 1 for link in problem.links}
    others_bytes = dict.fromkeys(problem.device_names, 0)
    for other in problem.users:
        if other.name == user:
            continue
        devices, links = usage(other.problem, placements[other.name])
        for d in devices:
            device_users[d] += 1
        for key in links:
            link_users[key] = link_users.get(key, 1) + 1
        for device, nbytes in memory_bytes(other.problem, placements[other.name]).items():
            others_bytes[device] += nbytes  # its distinct parameters per device (shared weights once)
    if multipliers is not None:
        device_users = {**device_users, **multipliers[0]}
        link_users = {**link_users, **multipliers[1]}
    sources = sum(1 for u in problem.users if u.problem.source == me.problem.source)
    shared = shared_problem(me.problem, device_users, link_users, float(sources))
    memory = any(u.problem.constraints.memory for u in problem.users)
    devices = tuple(
        replace(d, memory_bytes=None if d.memory_bytes is None else max(0, d.memory_bytes - others_bytes[d.name]))
        for d in shared.devices
    )
    objective = Objective(problem.objective.kind, dict(problem.objective.weights))
    return replace(
        shared,
        devices=devices,
        constraints=replace(shared.constraints, memory=memory),
        objective=objective,
        name=f"{problem.name or 'multi-user'}: best response of {user}",
    )


class BestResponsePlanner(Planner):
    """Iterative best response: each user re-plans exactly against the others' current sharing."""

    name = "best-response"
    summary = "multi-user iterative best response: each user re-planned exactly (inner planner) against the others"
    reference = (
        "Tang et al., joint multi-user DNN partitioning (iterative alternating optimisation), IEEE IoT J 2020; "
        "best-response dynamics (Rosenthal 1973); DNN-migration seed multi-user setting"
    )
    guarantee = "none: a heuristic (with accept='joint' never worse than all-local)"
    complexity = "O(max_rounds * users * one inner solve)"
    single_user = False
    multi_user = True

    def __init__(self, inner: str = DEFAULT_PLANNER, max_rounds: int = 20, accept: str = "joint", start: str = "local") -> None:
        self.inner = inner
        self.max_rounds = max_rounds
        self.accept = accept
        self.start = start

    def check_multi(self, problem: MultiUserProblem) -> str | None:
        from tiercut.plan.registry import PLANNERS

        if self.inner not in PLANNERS or self.inner == self.name:
            return f"inner planner {self.inner!r} is not a registered single-user planner (e.g. ilp, dp, mincut)"
        if not PLANNERS[self.inner].single_user:
            return f"inner planner {self.inner!r} plans multi-user problems only; use a single-user planner such as ilp"
        if self.accept not in ACCEPT:
            return f"setting accept={self.accept!r} is not one of {', '.join(ACCEPT)}"
        if self.start not in START:
            return f"setting start={self.start!r} is not one of {', '.join(START)}"
        if isinstance(self.max_rounds, bool) or not isinstance(self.max_rounds, int) or self.max_rounds < 1:
            return f"setting max_rounds={self.max_rounds!r} must be an integer >= 1"
        return None

    def _solve_multi(self, problem: MultiUserProblem) -> MultiPlacementResult:
        from tiercut.plan.registry import get_planner

        inner = get_planner(self.inner)
        run = self._respond(problem, inner, self._start(problem, inner))
        note = run.note(self)
        # issue 10's rule (never worse than a cheap candidate) would otherwise swap in a candidate that no
        # user has responded to; best response continues from it instead, so "converged" stays true
        cheap = no_worse_than_cheap_multi(problem, MultiPlacementResult(run.best, optimal=False))
        if cheap.placements != run.best:
            first = run
            run = self._respond(problem, inner, {u: dict(p) for u, p in cheap.placements.items()})
            note = (f"{run.note(self)}; restarted from every user on one device, a cheap candidate better than the "
                    f"point the run from start {self.start} reached ({first.changes} changes in {first.rounds} rounds)")
        return MultiPlacementResult(run.best, optimal=False, note=note)

    def _start(self, problem: MultiUserProblem, inner: Planner) -> dict[str, dict[str, str]]:
        placements: dict[str, dict[str, str]] = {}
        for user in problem.users:
            if self.start == "solo" and inner.check(user.problem) is None:
                placements[user.name] = dict(inner.solve(user.problem).placement)
            else:
                comp = compile_problem(user.problem)
                local = np.where(comp.allowed[:, comp.source], comp.source, np.argmax(comp.allowed, axis=1))
                placements[user.name] = decode(comp, local)
        return placements

    def _respond(self, problem: MultiUserProblem, inner: Planner, placements: dict[str, dict[str, str]]) -> _Run:
        """Rounds of best responses from ``placements`` until no user changes or ``max_rounds``."""
        cm = compile_users(problem)

        def joint(placements: dict[str, dict[str, str]]) -> Scores:
            row = np.concatenate([encode(cu.problem, placements[u.name]) for cu, u in zip(cm.users, problem.users, strict=True)])
            return Scores.of(evaluate_users_many(cm, row[None, :]))

        current = joint(placements)
        run = _Run(best=dict(placements))
        best_scores = current
        while run.rounds < self.max_rounds:
            run.rounds += 1
            changed = False
            for user in problem.users:
                sub = response_problem(problem, placements, user.name)
                if inner.check(sub) is not None:
                    run.skipped.add(user.name)
                    continue
                answer = dict(inner.solve(sub).placement)
                if answer == placements[user.name]:
                    continue
                candidate = {**placements, user.name: answer}
                scores = joint(candidate)
                if self.accept == "joint":
                    adopt = bool(better(scores, current)[0])
                else:
                    own_new, own_old = evaluate(sub, answer), evaluate(sub, placements[user.name])
                    adopt = (own_new.feasible, -own_new.objective_value) > (own_old.feasible, -own_old.objective_value)
                if adopt:
                    placements, current = candidate, scores
                    changed = True
                    run.changes += 1
                    if better(current, best_scores)[0]:
                        run.best, best_scores = dict(placements), current
            if not changed:
                run.converged = True
                break
        return run


@dataclass
class _Run:
    """One run of best-response rounds: the best joint placement met and how the run ended."""

    best: dict[str, dict[str, str]]
    rounds: int = 0
    changes: int = 0
    converged: bool = False
    skipped: set[str] = field(default_factory=set)

    def note(self, planner: BestResponsePlanner) -> str:
        text = (f"best response ({planner.accept}, inner {planner.inner}, start {planner.start}): "
                f"{self.changes} changes in {self.rounds} rounds")
        text += (", converged (no user changed in the last round)" if self.converged
                 else f", stopped at max_rounds={planner.max_rounds}")
        if self.skipped:
            text += f"; {planner.inner} cannot plan {', '.join(sorted(self.skipped))}: kept as they were"
        return text


__all__ = ["BestResponsePlanner", "response_problem"]
