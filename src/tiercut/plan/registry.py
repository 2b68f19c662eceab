"""The one registry of planners: name -> Planner class, and the front door :func:`plan`.

A new planner registers with ONE line in :data:`PLANNERS` (no registration by
import side effect). ``tiercut plan --list`` and ``tiercut compare`` read it.
"""

from __future__ import annotations

from typing import Any

from tiercut.errors import TiercutError
from tiercut.plan.base import DEFAULT_PLANNER, Planner
from tiercut.plan.baselines import AllOnPlanner, LocalPlanner
from tiercut.plan.brute_force import BruteForcePlanner
from tiercut.plan.d2d import D2DPlanner
from tiercut.plan.ddnn import DDNNPlanner
from tiercut.plan.dp import DynamicProgrammingPlanner
from tiercut.plan.edgent import EdgentPlanner
from tiercut.plan.ga import GAPlanner
from tiercut.plan.greedy import GreedyPlanner
from tiercut.plan.ilp import ILPPlanner
from tiercut.plan.jmdp import JointAllocationPlanner
from tiercut.plan.mincut import MinCutPlanner
from tiercut.plan.multiuser import BestResponsePlanner
from tiercut.plan.neurosurgeon import NeurosurgeonPlanner
from tiercut.plan.panda import PandaPlanner
from tiercut.plan.pso import PSOPlanner
from tiercut.plan.sa import SAPlanner
from tiercut.plan.shortest_path import ShortestPathPlanner
from tiercut.plan.spatial import SpatialPlanner
from tiercut.plan.throughput_dp import ThroughputDPPlanner
from tiercut.plan.throughput_mincut import ThroughputMinCutPlanner
from tiercut.plan.variants import MCDNNPlanner
from tiercut.problem import JointPlan, JointProblem, MultiPlan, MultiUserProblem, Plan, Problem

PLANNERS: dict[str, type[Planner]] = {
    "local": LocalPlanner,
    "all-on": AllOnPlanner,
    "neurosurgeon": NeurosurgeonPlanner,
    "mincut": MinCutPlanner,
    "shortest-path": ShortestPathPlanner,
    "dp": DynamicProgrammingPlanner,
    "ilp": ILPPlanner,
    "brute-force": BruteForcePlanner,
    "greedy": GreedyPlanner,
    "pso": PSOPlanner,
    "ga": GAPlanner,
    "sa": SAPlanner,
    "best-response": BestResponsePlanner,
    "spatial": SpatialPlanner,
    "edgent": EdgentPlanner,
    "ddnn": DDNNPlanner,
    "mcdnn": MCDNNPlanner,
    "throughput-mincut": ThroughputMinCutPlanner,
    "throughput-dp": ThroughputDPPlanner,
    "d2d": D2DPlanner,
    "jmdp": JointAllocationPlanner,
    "panda": PandaPlanner,
}


def get_planner(algorithm: str, **settings: Any) -> Planner:
    """An instance of the planner registered as ``algorithm`` with ``settings``."""
    try:
        cls = PLANNERS[algorithm]
    except KeyError:
        raise TiercutError(
            f"planner {algorithm!r} is not known; use one of {', '.join(PLANNERS)} (see 'tiercut plan --list')"
        ) from None
    planner = cls()
    return planner.set_params(**settings)


def plan(
    problem: Problem | MultiUserProblem | JointProblem, algorithm: str = DEFAULT_PLANNER, **settings: Any
) -> Plan | MultiPlan | JointPlan:
    """Solve ``problem`` with the planner ``algorithm`` (a single- or multi-user problem; :data:`DEFAULT_PLANNER` by
    default); a :class:`JointProblem` goes to the joint planners (``joint-ilp`` by default)."""
    if isinstance(problem, JointProblem):  # several models on shared devices: the joint planners
        return plan_joint(problem, DEFAULT_JOINT_PLANNER if algorithm == DEFAULT_PLANNER else algorithm, **settings)
    planner = get_planner(algorithm, **settings)
    if isinstance(problem, MultiUserProblem):
        return planner.solve_multi(problem)
    return planner.solve(problem)


def applicable_planners(problem: Problem | MultiUserProblem, names: list[str] | None = None) -> list[str]:
    """Registry names (in registry order) whose default-settings planner accepts ``problem``."""
    out = []
    for name in names or list(PLANNERS):
        if get_planner(name).applicable(problem):
            out.append(name)
    return out


# several models on shared devices (JointProblem, the shared-capacity model): their own small registry
from tiercut.plan.joint import DEFAULT_JOINT_PLANNER, JOINT_PLANNERS, get_joint_planner, plan_joint  # noqa: E402

__all__ = [
    "DEFAULT_JOINT_PLANNER",
    "DEFAULT_PLANNER",
    "JOINT_PLANNERS",
    "PLANNERS",
    "applicable_planners",
    "get_joint_planner",
    "get_planner",
    "plan",
    "plan_joint",
]
