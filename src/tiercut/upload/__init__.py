"""Partition-uploading plans: which pieces of a model go up to a server, in which order.

The migration seed (dnn-migration-in-iots) after IONN (Jeong et al.,
SoCC'18): the client keeps answering queries while the server-side
partition P1 goes up as finer partitions P3, each query using whatever has
arrived.

- :class:`UploadPlanner` (:mod:`tiercut.upload.base`): the one interface;
- :data:`UPLOAD_PLANNERS` (:mod:`tiercut.upload.registry`): ``direct``,
  ``ionn``, ``efficiency``, ``recursive-efficiency`` and the brute-force
  reference ``exhaustive``;
- :func:`plan_upload`: the front door for one client and one server,
  ``plan_upload(problem, algorithm=DEFAULT_UPLOAD_PLANNER) -> UploadPlan``
  (:data:`DEFAULT_UPLOAD_PLANNER`, ``recursive-efficiency``; the server
  partition P1 from :data:`DEFAULT_OFFLOADING_PLANNER`, ``mincut``);
- :func:`plan_multi_upload`: several users over several servers after a
  multi-user partition-offloading plan (PSO...) -> :class:`MultiUploadPlan`;
- :mod:`tiercut.upload.analytic`: the IONN model (stages, queries back to
  back, metrics) that recomputes any plan from its problem and partitions.
"""

from tiercut.upload.analytic import (
    QuerySlot,
    StageSolver,
    best_placement,
    build_stages,
    check_upload_plan,
    curve,
    default_query_count,
    evaluate_upload,
    query_schedule,
    upload_metrics,
)
from tiercut.upload.base import DEFAULT_OFFLOADING_PLANNER, DEFAULT_UPLOAD_PLANNER, GroupResult, UploadPlanner
from tiercut.upload.multi import plan_multi_upload, plan_user_upload, user_plan_from_upload
from tiercut.upload.registry import UPLOAD_PLANNERS, get_upload_planner, plan_upload
from tiercut.upload.types import MultiUploadPlan, Stage, UploadMetrics, UploadPartition, UploadPlan, UserUploadPlan

__all__ = [
    "DEFAULT_OFFLOADING_PLANNER",
    "DEFAULT_UPLOAD_PLANNER",
    "UPLOAD_PLANNERS",
    "GroupResult",
    "MultiUploadPlan",
    "QuerySlot",
    "Stage",
    "StageSolver",
    "UploadMetrics",
    "UploadPartition",
    "UploadPlan",
    "UploadPlanner",
    "UserUploadPlan",
    "best_placement",
    "build_stages",
    "check_upload_plan",
    "curve",
    "default_query_count",
    "evaluate_upload",
    "get_upload_planner",
    "plan_multi_upload",
    "plan_upload",
    "plan_user_upload",
    "query_schedule",
    "upload_metrics",
    "user_plan_from_upload",
]
