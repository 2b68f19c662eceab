"""The partition problem and its answer (docs/DESIGN.md's ``problem`` and ``plan`` contracts).

* :mod:`tiercut.problem.types`: :class:`Problem` (graph, devices, links,
  source, per-node compute times, objective, constraints) and its parts,
  :class:`MultiUserProblem`;
* :mod:`tiercut.problem.plan`: :class:`Plan` and :class:`MultiPlan`, a
  placement and the cost model's figures of it;
* :mod:`tiercut.problem.build`: :func:`build_problem` and
  :func:`build_multi_user_problem`, from a graph and an
  :class:`~tiercut.env.Environment` (the one place that talks to
  :mod:`tiercut.profile`).

Import the public names from here (``from tiercut.problem import Problem``).
"""

from tiercut.problem.build import (
    build_multi_user_problem,
    build_problem,
    compute_table_for,
    load_profile_file,
    resolve_devices,
)
from tiercut.problem.compression import CutCodec, CutCompression, TensorCompression
from tiercut.problem.joint import JointPlan, JointProblem, ModelFigures
from tiercut.problem.plan import MultiPlan, Plan, UserFigures
from tiercut.problem.shares import Shares
from tiercut.problem.types import (
    AGGREGATES,
    METRICS,
    OBJECTIVES,
    SCHEMA_VERSION,
    Constraints,
    MultiUserProblem,
    Objective,
    Problem,
    ProblemDevice,
    UserProblem,
)

__all__ = [
    "AGGREGATES",
    "METRICS",
    "OBJECTIVES",
    "SCHEMA_VERSION",
    "Constraints",
    "CutCodec",
    "CutCompression",
    "JointPlan",
    "JointProblem",
    "ModelFigures",
    "MultiPlan",
    "MultiUserProblem",
    "Objective",
    "Plan",
    "Problem",
    "ProblemDevice",
    "Shares",
    "TensorCompression",
    "UserFigures",
    "UserProblem",
    "build_multi_user_problem",
    "build_problem",
    "compute_table_for",
    "load_profile_file",
    "resolve_devices",
]

# `tiercut.problem(...)` is the front-door step of this stage (tiercut/_front_door.py)
from tiercut._front_door import make_callable

make_callable(__name__)
