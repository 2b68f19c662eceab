"""Joint multi-user partitioning and resource allocation by alternating optimisation (JMDP / JPDRA).

Papers: Tang, Chen, Zeng, Yu, Chen, "Joint Multi-User DNN Partitioning and
Computational Resource Allocation for Collaborative Edge Intelligence", IEEE
Internet of Things Journal 2020 (arXiv:2007.09072): the survey's JMDP, solved
by Iterative Alternating Optimization (IAO) between the users' partition
points and the edge server's compute shares; He, Guo, Guo, Qiu, Qi, "Joint DNN
Partition Deployment and Resource Allocation for Delay-Sensitive Deep
Learning Inference in IoT", IEEE IoT Journal 7(10):9241-9254, 2020 (JPDRA:
partition, deployment and bandwidth/compute allocation jointly). tiercut's
planner generalises both to any graph, any number of servers and links, and
the multi-user objective of the problem (mean or max latency, energies,
cost).

:class:`JointAllocationPlanner`, exactly:

1. start from the equal-share placements of the best-response planner
   (:class:`~tiercut.plan.multiuser.BestResponsePlanner` with the same
   ``inner``; ``start="best-response"``) or every user on its own device
   (``start="local"``);
2. **allocation step**: the optimal shares of every shared device and link
   for the current placements (:func:`tiercut.cost.allocation.allocate`:
   closed form for the mean; for the max latency, bisection when every user
   competes on one resource, else the Perron eigenvector (both exact); SLSQP
   for a max with other metrics weighted in);
3. **partition step**: for each user in turn, two proposals solved exactly
   by the single-user planner ``inner`` on the user's response problem
   (:func:`~tiercut.plan.multiuser.response_problem`): its compute times and
   bandwidths stretched by ``1 / share`` of its current shares (resources it
   does not use yet: the equal share it would get), and by the equal shares;
   each proposal is re-allocated (step 2) and adopted when the joint
   objective with its optimal shares improves (Deb's rule: feasible first,
   then the objective, by a relative ``1e-9``);
4. repeat rounds of 3 until no user changes (converged) or ``max_rounds``;
   a user whose proposals were already solved on the current state (no
   adoption since) is skipped: its response problems, hence its proposals
   (the inner planner is deterministic), would be the same.

The objective after the start's allocation and after each round is the
plan's ``convergence`` (non-increasing by construction), and the plan's
``shares`` are the last allocation's, so its figures recompute from JSON
(``evaluate_users(problem, placements, shares)``).

Guarantee: with ``start="best-response"`` never worse than the best-response
planner's equal-share plan (the optimal shares of a placement are never worse
than its equal shares, and step 3 only adopts improvements); a point no
single user's proposal improves, not the joint optimum (a heuristic: the
joint problem is a mixed-integer nonlinear program).
Complexity: O(max_rounds * users * (2 inner solves + 2 allocations)).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tiercut.cost import evaluate_users
from tiercut.cost.allocation import Allocation, allocate
from tiercut.cost.multiuser import usage
from tiercut.plan.base import DEFAULT_PLANNER, MultiPlacementResult, Planner, make_multi_plan
from tiercut.plan.multiuser import START, BestResponsePlanner, response_problem
from tiercut.problem import MultiPlan, MultiUserProblem, Shares

#: relative improvement a proposal must make to be adopted.
IMPROVEMENT_RTOL = 1e-9


@dataclass
class _State:
    placements: dict[str, dict[str, str]]
    allocation: Allocation
    key: tuple[int, float]


@dataclass
class JointRun:
    """How an alternating run went: objective per round, changes, convergence."""

    objective_per_round: list[float] = field(default_factory=list)
    rounds: int = 0
    changes: int = 0
    converged: bool = False


def _key(problem: MultiUserProblem, placements: Mapping[str, Mapping[str, str]], shares: Shares) -> tuple[int, float]:
    ev = evaluate_users(problem, placements, shares)
    if not ev.valid:
        return (2, 0.0)
    return (0, ev.objective_value) if ev.feasible else (1, float(len(ev.violations)))


class JointAllocationPlanner(Planner):
    """Alternate each user's partition and every shared resource's allocation until no user improves."""

    name = "jmdp"
    summary = "joint multi-user partition + optimal compute/bandwidth shares, by alternating optimisation (IAO)"
    reference = (
        "Tang et al., Joint Multi-User DNN Partitioning and Computational Resource Allocation for Collaborative "
        "Edge Intelligence, IEEE IoT J 2020 (JMDP, IAO); He et al., Joint DNN Partition Deployment and Resource "
        "Allocation for Delay-Sensitive Deep Learning Inference in IoT, IEEE IoT J 2020 (JPDRA)"
    )
    guarantee = "none for the joint optimum; never worse than best-response's equal-share plan (start=best-response)"
    complexity = "O(max_rounds * users * (2 inner solves + 2 allocations))"
    single_user = False
    multi_user = True
    cheap_fallback = False  # the start went through best response's cheap candidates; shares only improve on them

    def __init__(self, inner: str = DEFAULT_PLANNER, max_rounds: int = 10, start: str = "best-response") -> None:
        self.inner = inner
        self.max_rounds = max_rounds
        self.start = start

    def check_multi(self, problem: MultiUserProblem) -> str | None:
        if self.start not in ("best-response", "local"):
            return f"setting start={self.start!r} is not one of best-response, local"
        if isinstance(self.max_rounds, bool) or not isinstance(self.max_rounds, int) or self.max_rounds < 1:
            return f"setting max_rounds={self.max_rounds!r} must be an integer >= 1"
        if any(u.problem.compresses_cuts for u in problem.users):
            return "cut compression is not part of the multi-user model; drop it from the users' problems"
        return BestResponsePlanner(inner=self.inner).check_multi(problem)

    def _solve_multi(self, problem: MultiUserProblem) -> MultiPlacementResult:
        state, run = self.run(problem)
        note = (f"jmdp (inner {self.inner}, start {self.start}): {run.changes} changes in {run.rounds} rounds, "
                + ("converged (no user improved in the last round)" if run.converged
                   else f"stopped at max_rounds={self.max_rounds}")
                + f"; allocation {state.allocation.method}; objective per round "
                + ", ".join(f"{v:.6g}" for v in run.objective_per_round))
        return MultiPlacementResult(state.placements, optimal=False, note=note, shares=state.allocation.shares,
                                    convergence=tuple(run.objective_per_round))

    # ----------------------------------------------------------- the alternation
    def run(self, problem: MultiUserProblem) -> tuple[_State, JointRun]:
        """The alternating optimisation from the start: the final state and how it went."""
        from tiercut.plan.registry import get_planner

        inner = get_planner(self.inner)
        if self.start == "best-response":
            start = BestResponsePlanner(inner=self.inner, start=START[0]).solve_multi(problem).placements
        else:
            start = BestResponsePlanner(inner=self.inner)._start(problem, inner)
        placements = {u: dict(p) for u, p in start.items()}
        cache: dict[Any, Any] = {}  # each user's share terms per placement, across rounds
        state = self._state(problem, placements, cache)
        run = JointRun(objective_per_round=[state.allocation.objective_value])
        version = 0  # bumped whenever a proposal is adopted
        solved_at: dict[str, int] = {}  # user -> the version its proposals were last solved on
        while run.rounds < self.max_rounds:
            run.rounds += 1
            changed = False
            for user in problem.users:
                if solved_at.get(user.name) == version:
                    continue  # nothing changed since: its response problems, so its proposals, are the same
                solved_at[user.name] = version
                best: _State | None = None
                for multipliers in (self._share_multipliers(problem, state, user.name), None):
                    sub = response_problem(problem, state.placements, user.name, multipliers)
                    if inner.check(sub) is not None:
                        continue
                    answer = dict(inner.solve(sub).placement)
                    if answer == state.placements[user.name]:
                        continue
                    candidate = self._state(problem, {**state.placements, user.name: answer}, cache,
                                            state.allocation.shares)
                    if best is None or candidate.key < best.key:
                        best = candidate
                if best is not None and _improves(best.key, state.key):
                    state = best
                    changed = True
                    run.changes += 1
                    version += 1
            run.objective_per_round.append(state.allocation.objective_value)
            if not changed:
                run.converged = True
                break
        return state, run

    @staticmethod
    def _state(
        problem: MultiUserProblem, placements: dict[str, dict[str, str]], cache: dict[Any, Any], start: Shares | None = None
    ) -> _State:
        allocation = allocate(problem, placements, start=start, cache=cache)
        return _State(placements, allocation, _key(problem, placements, allocation.shares))

    @staticmethod
    def _share_multipliers(
        problem: MultiUserProblem, state: _State, user: str
    ) -> tuple[dict[str, float], dict[frozenset[str], float]]:
        """``1 / share`` of the user's current shares; for resources it does not use, 1 + their other users."""
        mine = state.allocation.shares.user(user)
        devices: dict[str, float] = {}
        links: dict[frozenset[str], float] = {}
        for other in problem.users:
            if other.name == user:
                continue
            devs, lks = usage(other.problem, state.placements[other.name])
            for d in devs:
                devices[d] = devices.get(d, 1.0) + 1.0
            for key in lks:
                links[key] = links.get(key, 1.0) + 1.0
        for d, s in mine["devices"].items():
            devices[d] = 1.0 / s
        for name, s in mine["links"].items():
            links[frozenset(name.split("|"))] = 1.0 / s
        return devices, links


def _improves(new: tuple[int, float], old: tuple[int, float]) -> bool:
    if new[0] != old[0]:
        return new[0] < old[0]
    return new[1] < old[1] - IMPROVEMENT_RTOL * max(abs(old[1]), 1e-300)


def with_optimal_allocation(problem: MultiUserProblem, plan: MultiPlan) -> MultiPlan:
    """``plan`` with the optimal shares of its placements (the allocation step alone, after any multi-user
    planner), its figures recomputed by the cost model with them."""
    start = time.perf_counter()
    allocation = allocate(problem, plan.placements)
    note = f"optimal allocation of the shared resources ({allocation.method}) after {plan.algorithm}"
    result = MultiPlacementResult(plan.placements, optimal=False, note="; ".join(filter(None, [plan.note, note])),
                                  shares=allocation.shares)
    return make_multi_plan(problem, plan.algorithm, result, plan.solve_s + time.perf_counter() - start, plan.settings)


__all__ = ["IMPROVEMENT_RTOL", "JointAllocationPlanner", "JointRun", "with_optimal_allocation"]
