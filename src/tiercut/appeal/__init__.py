"""Input-aware routing (AppealNet): a small model on the device, a big one in the cloud, chosen per input.

Li, Li, Tian, Jiang, Xu, "AppealNet: An Efficient and Highly-Accurate
Edge/Cloud Collaborative Architecture for DNN Inference", DAC 2021
(arXiv:2105.04104). A two-head network on the device answers every input
and its predictor head says whether to appeal the input to the big model in
the cloud.

- :mod:`tiercut.appeal.models`: the two-head network and the big model (issue 14's digits CNN);
- :mod:`tiercut.appeal.train`: training both on scikit-learn's digits, the router file (safetensors);
- :mod:`tiercut.appeal.curve`: accuracy vs fraction offloaded as the threshold sweeps (held-out split);
- :mod:`tiercut.appeal.runtime`: per-input routing with the big model on a gRPC worker;
- the expected latency/energy is the cost model's (:mod:`tiercut.cost.input_routing`).

CLI: ``tiercut route train|eval|run``.
"""

from tiercut.appeal.curve import CurvePoint, RoutedAnswers, router_answers, routing_curve
from tiercut.appeal.train import Router, RouterSettings, load_router, save_router, train_router

__all__ = [
    "CurvePoint",
    "RoutedAnswers",
    "Router",
    "RouterSettings",
    "load_router",
    "router_answers",
    "routing_curve",
    "save_router",
    "train_router",
]
