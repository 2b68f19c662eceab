"""Expected cost of per-input routing (AppealNet): the local path always, the cloud path for the appealed fraction.

AppealNet (Li et al., "AppealNet: An Efficient and Highly-Accurate
Edge/Cloud Collaborative Architecture for DNN Inference", DAC 2021,
arXiv:2105.04104) runs its two-head network on the device for every input
and sends the input to the big model in the cloud when the predictor head
appeals it. With ``f`` the fraction of inputs appealed, every figure is::

    E[metric] = metric(local) + f * metric(appeal)

- ``local``: the small two-head model's problem with every node on the
  source (the device runs it for every input);
- ``appeal``: the big model's problem with every non-input node on the
  ``cloud`` device (the input crosses the links to the cloud along its
  routed path and the answer comes back), the cost model's figures of that
  placement (:func:`tiercut.cost.evaluate`).

Both paths are the cost model's own evaluations; this module only weighs
them, so a routing document (:func:`routing_document`: the two problems, the
cloud device and ``f``) recomputes to the same figures anywhere
(:func:`expected_routing_from_dict`). Queueing, and the device waiting for
the cloud while idle, are in ``appeal``'s figures as the sequential model has
them (the source's idle power during the remote part).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiercut.cost.model import Evaluation, evaluate
from tiercut.errors import TiercutError
from tiercut.problem import Problem

#: version of the routing document (``tiercut route eval --json``)
ROUTING_SCHEMA_VERSION = 1
#: the metrics a routing expectation weighs (Evaluation attribute names)
ROUTING_METRICS = ("latency_s", "energy_source_j", "energy_total_j", "cost")


@dataclass(frozen=True)
class ExpectedRouting:
    """The expected figures of routing a fraction ``fraction_offloaded`` of the inputs to the cloud.

    Attributes:
        fraction_offloaded: ``f``, the fraction of inputs appealed (0..1).
        cloud: the device the big model runs on.
        local: the cost model's evaluation of the small model on the source.
        appeal: the cost model's evaluation of the big model on ``cloud``.
    """

    fraction_offloaded: float
    cloud: str
    local: Evaluation
    appeal: Evaluation

    def expected(self, metric: str) -> float:
        """``metric(local) + f * metric(appeal)`` for one of :data:`ROUTING_METRICS`."""
        if metric not in ROUTING_METRICS:
            raise TiercutError(f"routing metric {metric!r} is not known; use one of {', '.join(ROUTING_METRICS)}")
        local, appeal = getattr(self.local, metric), getattr(self.appeal, metric)
        extra = 0.0 if self.fraction_offloaded == 0 else self.fraction_offloaded * appeal
        return float(local + extra)

    @property
    def latency_s(self) -> float:
        return self.expected("latency_s")

    @property
    def energy_source_j(self) -> float:
        return self.expected("energy_source_j")

    @property
    def energy_total_j(self) -> float:
        return self.expected("energy_total_j")

    @property
    def cost(self) -> float:
        return self.expected("cost")

    @property
    def feasible(self) -> bool:
        """Both paths keep every constraint of their problems (the appeal path only matters when ``f > 0``)."""
        return self.local.feasible and (self.fraction_offloaded == 0 or self.appeal.feasible)

    def to_dict(self) -> dict[str, Any]:
        def figures(ev: Evaluation) -> dict[str, Any]:
            return {m: _finite_or_none(getattr(ev, m)) for m in ROUTING_METRICS} | {"feasible": ev.feasible}

        return {
            "fraction_offloaded": self.fraction_offloaded,
            "cloud": self.cloud,
            **{m: _finite_or_none(self.expected(m)) for m in ROUTING_METRICS},
            "feasible": self.feasible,
            "local": figures(self.local),
            "appeal": figures(self.appeal),
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def check_fraction(fraction: float) -> float:
    if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0.0 <= fraction <= 1.0):
        raise TiercutError(f"fraction offloaded {fraction!r} must be a number from 0 to 1")
    return float(fraction)


def expected_routing(small: Problem, big: Problem, cloud: str, fraction_offloaded: float) -> ExpectedRouting:
    """The expected figures (module docstring) of appealing ``fraction_offloaded`` of the inputs to ``cloud``."""
    f = check_fraction(fraction_offloaded)
    if small.source != big.source:
        raise TiercutError(f"the small model's source {small.source!r} and the big model's {big.source!r} differ; "
                           "both problems must start on the same device")
    if cloud not in big.device_names:
        raise TiercutError(f"cloud device {cloud!r} is not a device of the big model's problem; "
                           f"devices are {', '.join(big.device_names)}")
    if cloud == big.source:
        raise TiercutError(f"cloud device {cloud!r} is the source; name the device the big model runs on (--cloud)")
    local = evaluate(small, {n.name: small.source for n in small.graph})
    appeal = evaluate(big, {n.name: (big.source if n.is_input else cloud) for n in big.graph})
    return ExpectedRouting(f, cloud, local, appeal)


def routing_document(small: Problem, big: Problem, cloud: str, fraction_offloaded: float) -> dict[str, Any]:
    """The JSON document of a routing expectation: both problems, the cloud, ``f`` and the figures."""
    expected = expected_routing(small, big, cloud, fraction_offloaded)
    return {
        "schema_version": ROUTING_SCHEMA_VERSION,
        "small_problem": small.to_dict(),
        "big_problem": big.to_dict(),
        "cloud": cloud,
        "fraction_offloaded": expected.fraction_offloaded,
        "expected": expected.to_dict(),
    }


def expected_routing_from_dict(data: Mapping[str, Any]) -> ExpectedRouting:
    """Recompute a routing document's figures from its problems, cloud and fraction alone."""
    if not isinstance(data, Mapping):
        raise TiercutError("a routing document is a JSON object with small_problem, big_problem, cloud, fraction_offloaded")
    if data.get("schema_version") != ROUTING_SCHEMA_VERSION:
        raise TiercutError(f"routing document has schema_version {data.get('schema_version')!r}; "
                           f"this tiercut reads {ROUTING_SCHEMA_VERSION}")
    for key in ("small_problem", "big_problem", "cloud", "fraction_offloaded"):
        if key not in data:
            raise TiercutError(f"routing document lacks {key!r}")
    return expected_routing(
        Problem.from_dict(data["small_problem"]), Problem.from_dict(data["big_problem"]), str(data["cloud"]),
        data["fraction_offloaded"],
    )


__all__ = [
    "ROUTING_METRICS",
    "ROUTING_SCHEMA_VERSION",
    "ExpectedRouting",
    "check_fraction",
    "expected_routing",
    "expected_routing_from_dict",
    "routing_document",
]
