"""tiercut: split deep neural networks across end devices, edge and cloud servers.

The Python API is the pipeline, one function per step (:mod:`tiercut.pipeline`)::

    import tiercut

    env = tiercut.environment("three-tier")             # a preset or a YAML/JSON file
    graph = tiercut.graph("resnet18")                  # or (module, example_inputs)
    problem = tiercut.problem(graph, env.with_link_bandwidth("mobile", "edge", 2e6))
    plan = tiercut.plan(problem, algorithm="ilp")      # a typed Plan
    table = tiercut.compare(problem).to_dataframe()    # one row per planner (needs pandas)
    uploads = tiercut.plan_uploads(problem, "ionn")    # pieces and order of the server partition
    sim = tiercut.simulate(problem, uploads, queries=20)
    tiercut.report([(problem, plan)], "report.html")

Names are imported on first use, so ``import tiercut`` stays cheap (no torch).
See ``docs/python-api.md`` for a whole sweep.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> (module, attribute): the front door, resolved lazily. ``(tiercut, NAME)`` is the
#: subpackage ``tiercut.NAME``, which is also callable as the pipeline step NAME (tiercut/_front_door.py).
_EXPORTS: dict[str, tuple[str, str]] = {
    # model and graph
    "load_model": ("tiercut.pipeline", "load_model"),
    "graph": ("tiercut", "graph"),
    "capture": ("tiercut.pipeline", "capture"),
    "LayerGraph": ("tiercut.graph", "LayerGraph"),
    # environment
    "Environment": ("tiercut.env", "Environment"),
    "Device": ("tiercut.env", "Device"),
    "Link": ("tiercut.env", "Link"),
    "User": ("tiercut.env", "User"),
    "environment": ("tiercut.pipeline", "environment"),
    "load_environment": ("tiercut.env", "load_environment"),
    # problem and plans
    "problem": ("tiercut", "problem"),
    "multi_user_problem": ("tiercut.pipeline", "multi_user_problem"),
    "read_users": ("tiercut.pipeline", "read_users"),
    "Problem": ("tiercut.problem", "Problem"),
    "MultiUserProblem": ("tiercut.problem", "MultiUserProblem"),
    "Objective": ("tiercut.problem", "Objective"),
    "Constraints": ("tiercut.problem", "Constraints"),
    "Plan": ("tiercut.problem", "Plan"),
    "MultiPlan": ("tiercut.problem", "MultiPlan"),
    "PLANNERS": ("tiercut.plan", "PLANNERS"),
    "plan": ("tiercut", "plan"),
    "compare": ("tiercut.pipeline", "compare"),
    "Comparison": ("tiercut.pipeline", "Comparison"),
    "PlanRecord": ("tiercut.pipeline", "PlanRecord"),
    # uploads, simulation, runtime, report
    "UPLOAD_PLANNERS": ("tiercut.upload", "UPLOAD_PLANNERS"),
    "plan_uploads": ("tiercut.pipeline", "plan_uploads"),
    "UploadResult": ("tiercut.pipeline", "UploadResult"),
    "simulate": ("tiercut.pipeline", "simulate"),
    "simulate_scenario": ("tiercut.pipeline", "simulate_scenario"),
    "run": ("tiercut.pipeline", "run"),
    "report": ("tiercut", "report"),
    "TiercutError": ("tiercut.errors", "TiercutError"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'tiercut' has no attribute {name!r}") from None
    if module == "tiercut":
        value = importlib.import_module(f"tiercut.{attribute}")  # a callable step module
    else:
        value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
