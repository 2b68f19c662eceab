"""The pipeline, step by step: model -> graph -> problem -> plan -> upload -> simulate / run -> report.

Each step is one function returning a typed result; the ``tiercut``
commands are thin wrappers over them (parse the options, call a step, print
or write), and ``tiercut/__init__.py`` re-exports them as the Python API.

=====================  ===========================================  =====================================
step                   function                                     result
=====================  ===========================================  =====================================
model                  :func:`load_model`                           :class:`~tiercut.graph.ModelSource`
profile                :func:`profile`                              :class:`~tiercut.profile.Profile`
graph                  :func:`graph` / :func:`capture`              ``LayerGraph`` / ``CapturedModel``
problem                :func:`problem` / :func:`multi_user_problem` ``Problem`` / ``MultiUserProblem``
plan                   :func:`plan` / :func:`compare`               ``Plan`` / :class:`Comparison`
upload                 :func:`plan_uploads`                         :class:`UploadResult`
simulate               :func:`simulate` / :func:`simulate_scenario` ``SimResult`` / :class:`ScenarioRun`
run                    :func:`run`                                  :class:`RunOutcome`
report                 :func:`report`                               the HTML file's ``Path``
=====================  ===========================================  =====================================

Every step takes ``progress=`` (:mod:`tiercut.pipeline.progress`; silent by
default) and raises :class:`~tiercut.errors.TiercutError` with one line
naming the bad input and the fix.
"""

from tiercut.pipeline.demo import DemoCase, demo_case, demo_cases
from tiercut.pipeline.model import capture, graph, load_model
from tiercut.pipeline.planning import (
    Comparison,
    PlanRecord,
    baselines,
    best_plan,
    compare,
    parse_algorithms,
    placement_segments,
    plan,
    warm_imports,
)
from tiercut.pipeline.problem import environment, multi_user_problem, problem, read_users
from tiercut.pipeline.profile import profile
from tiercut.pipeline.progress import SILENT, Progress, RichProgress, terminal_progress
from tiercut.pipeline.report import report
from tiercut.pipeline.run import RunOutcome, run
from tiercut.pipeline.simulate import ScenarioRun, simulate, simulate_scenario
from tiercut.pipeline.upload import UploadRecord, UploadResult, plan_uploads

__all__ = [
    "SILENT",
    "Comparison",
    "DemoCase",
    "PlanRecord",
    "Progress",
    "RichProgress",
    "RunOutcome",
    "ScenarioRun",
    "UploadRecord",
    "UploadResult",
    "baselines",
    "best_plan",
    "capture",
    "compare",
    "demo_case",
    "demo_cases",
    "environment",
    "graph",
    "load_model",
    "multi_user_problem",
    "parse_algorithms",
    "placement_segments",
    "plan",
    "plan_uploads",
    "problem",
    "profile",
    "read_users",
    "report",
    "run",
    "simulate",
    "simulate_scenario",
    "terminal_progress",
    "warm_imports",
]
