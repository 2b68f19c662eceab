"""Early exits: exit branches, joint training, confidence rules, and the expected-cost layer.

- :mod:`tiercut.exits.branches`: BranchyNet side classifiers added after chosen layers (torch.fx);
- :mod:`tiercut.exits.train`: joint training on scikit-learn's digits (BranchyNet's weighted loss);
- :mod:`tiercut.exits.confidence`: entropy / max-softmax rules, per-sample measurements, threshold tuning;
- :mod:`tiercut.exits.types`: :class:`ExitBranch` and the exits file :class:`ExitModel`;
- :mod:`tiercut.exits.build`: ``tiercut exits add`` end to end;
- :mod:`tiercut.exits.cost`: :class:`ExitProblem` and the expected latency/energy over exits, a layer over
  :func:`tiercut.cost.evaluate` (a query that exits early sends nothing further).

The planners that use them are :mod:`tiercut.plan.edgent` and :mod:`tiercut.plan.ddnn`.
"""

from tiercut.exits.confidence import RULES, ExitMeasurements, Routing, curve, route, tune_thresholds
from tiercut.exits.types import FINAL, ExitBranch, ExitModel, load_exit_model

__all__ = [
    "FINAL",
    "RULES",
    "ExitBranch",
    "ExitMeasurements",
    "ExitModel",
    "Routing",
    "curve",
    "load_exit_model",
    "route",
    "tune_thresholds",
]
