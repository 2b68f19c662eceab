"""Partition planners: where every layer runs.

- :class:`Planner` (:mod:`tiercut.plan.base`): the one interface;
- :data:`PLANNERS` (:mod:`tiercut.plan.registry`): the one registry;
- :func:`plan`: the front door, ``plan(problem, algorithm="mincut", **settings) -> Plan``.

Each planner family lives in its own module and documents its paper, what it
guarantees and its complexity (``tiercut plan --list``).
"""

from tiercut.plan.base import MultiPlacementResult, PlacementResult, Planner, make_multi_plan, make_plan
from tiercut.plan.registry import PLANNERS, applicable_planners, get_planner, plan

__all__ = [
    "PLANNERS",
    "MultiPlacementResult",
    "PlacementResult",
    "Planner",
    "applicable_planners",
    "get_planner",
    "make_multi_plan",
    "make_plan",
    "plan",
]

# `tiercut.plan(...)` is the front-door step of this stage (tiercut/_front_door.py)
from tiercut._front_door import make_callable

make_callable(__name__)
