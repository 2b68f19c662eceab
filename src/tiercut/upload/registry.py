"""The one registry of upload planners and the front door :func:`plan_upload`.

A new upload planner registers with ONE line in :data:`UPLOAD_PLANNERS`
(no registration by import side effect).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tiercut.errors import TiercutError
from tiercut.problem import Plan, Problem
from tiercut.upload.base import DEFAULT_OFFLOADING_PLANNER, DEFAULT_UPLOAD_PLANNER, UploadPlanner
from tiercut.upload.direct import DirectUploadPlanner
from tiercut.upload.efficiency import EfficiencyUploadPlanner, RecursiveEfficiencyUploadPlanner
from tiercut.upload.exhaustive import ExhaustiveUploadPlanner
from tiercut.upload.ionn import IONNUploadPlanner
from tiercut.upload.types import UploadPlan

UPLOAD_PLANNERS: dict[str, type[UploadPlanner]] = {
    "direct": DirectUploadPlanner,
    "ionn": IONNUploadPlanner,
    "efficiency": EfficiencyUploadPlanner,
    "recursive-efficiency": RecursiveEfficiencyUploadPlanner,
    "exhaustive": ExhaustiveUploadPlanner,
}


def get_upload_planner(algorithm: str, **settings: Any) -> UploadPlanner:
    """An instance of the upload planner registered as ``algorithm`` with ``settings``."""
    try:
        cls = UPLOAD_PLANNERS[algorithm]
    except KeyError:
        raise TiercutError(
            f"upload planner {algorithm!r} is not known; use one of {', '.join(UPLOAD_PLANNERS)} (see 'tiercut upload --list')"
        ) from None
    return cls().set_params(**settings)


def plan_upload(
    problem: Problem,
    algorithm: str = DEFAULT_UPLOAD_PLANNER,
    *,
    target: Plan | Mapping[str, str] | None = None,
    **settings: Any,
) -> UploadPlan:
    """Plan the upload of ``problem``'s server partition with the planner ``algorithm`` (:data:`DEFAULT_UPLOAD_PLANNER`).

    ``target`` is the partition-offloading plan (or placement) whose nodes on
    one server are P1; without it the planner's ``offloading`` setting plans
    one (:data:`DEFAULT_OFFLOADING_PLANNER` by default).
    """
    return get_upload_planner(algorithm, **settings).solve(problem, target)


__all__ = ["DEFAULT_OFFLOADING_PLANNER", "DEFAULT_UPLOAD_PLANNER", "UPLOAD_PLANNERS", "get_upload_planner", "plan_upload"]
