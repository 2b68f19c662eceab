"""Partition planners: where every layer runs.

- :class:`Planner` (:mod:`tiercut.plan.base`): the one interface;
- :data:`PLANNERS` (:mod:`tiercut.plan.registry`): the one registry;
- :func:`plan`: the front door, ``plan(problem, algorithm=DEFAULT_PLANNER, **settings) -> Plan``
  (:data:`DEFAULT_PLANNER`, ``ilp``: exact over any number of devices);
- :func:`plan_joint` (:data:`JOINT_PLANNERS`): several models on shared devices
  (:class:`~tiercut.problem.joint.JointProblem`, the shared-capacity model).

Each planner family lives in its own module and documents its paper, what it
guarantees and its complexity (``tiercut plan --list``).
"""

from tiercut.plan.base import MultiPlacementResult, PlacementResult, Planner, make_multi_plan, make_plan
from tiercut.plan.registry import (
    DEFAULT_JOINT_PLANNER,
    DEFAULT_PLANNER,
    JOINT_PLANNERS,
    PLANNERS,
    applicable_planners,
    get_joint_planner,
    get_planner,
    plan,
    plan_joint,
)

__all__ = [
    "DEFAULT_JOINT_PLANNER",
    "DEFAULT_PLANNER",
    "JOINT_PLANNERS",
    "PLANNERS",
    "MultiPlacementResult",
    "PlacementResult",
    "Planner",
    "applicable_planners",
    "get_joint_planner",
    "get_planner",
    "make_multi_plan",
    "make_plan",
    "plan",
    "plan_joint",
]

# `tiercut.plan(...)` is the front-door step of this stage (tiercut/_front_door.py)
from tiercut._front_door import make_callable

make_callable(__name__)
