"""The cost model (docs/cost-model.md): the one place latency, energy, cost and memory are computed.

- :func:`evaluate` (one placement dict -> :class:`Evaluation`), the reference;
- :mod:`tiercut.cost.routing`: the path a tensor takes between two devices
  (store-and-forward over the fastest path of links, directional figures);
- :func:`compile_problem` + :func:`evaluate_many` (an int array of placements ->
  :class:`BatchEvaluation`), vectorised, identical figures;
- :func:`linear_form`: each metric as per-node plus per-transfer terms, what
  the exact planners build their models from;
- :func:`evaluate_users` / :func:`evaluate_users_many`: the multi-user
  equal-share model.

No planner re-implements any of this.
"""

from tiercut.cost.linear import LinearForm, linear_form, linear_value, transfer_seconds_array
from tiercut.cost.model import (
    BUDGET_RTOL,
    Evaluation,
    Transfer,
    constraint_violations,
    evaluate,
    memory_bytes,
    metric_values,
    objective_value,
    transfer_seconds,
)
from tiercut.cost.multiuser import (
    CompiledMultiUser,
    MultiBatchEvaluation,
    MultiEvaluation,
    compile_users,
    evaluate_users,
    evaluate_users_many,
    multi_objective_value,
    shared_problem,
)
from tiercut.cost.routing import Path, Routing, build_routing
from tiercut.cost.vector import (
    BatchEvaluation,
    CompiledProblem,
    PathTable,
    compile_problem,
    decode,
    encode,
    evaluate_many,
    memory_many,
)

__all__ = [
    "BUDGET_RTOL",
    "BatchEvaluation",
    "CompiledMultiUser",
    "CompiledProblem",
    "Evaluation",
    "LinearForm",
    "MultiBatchEvaluation",
    "MultiEvaluation",
    "Path",
    "PathTable",
    "Routing",
    "Transfer",
    "build_routing",
    "compile_problem",
    "compile_users",
    "constraint_violations",
    "decode",
    "encode",
    "evaluate",
    "evaluate_many",
    "evaluate_users",
    "evaluate_users_many",
    "linear_form",
    "linear_value",
    "memory_bytes",
    "memory_many",
    "metric_values",
    "multi_objective_value",
    "objective_value",
    "shared_problem",
    "transfer_seconds",
    "transfer_seconds_array",
]
