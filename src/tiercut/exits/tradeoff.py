"""The accuracy-latency trade-off of an exit plan, and confidence thresholds chosen along it.

Edgent (Li, Zhou, Chen, "Edge AI: On-Demand Accelerating Deep Neural
Network Inference via Edge Computing", IEEE TWC 2019) trades accuracy for
latency with the exit point: each exit is a point (its accuracy, the
latency of the right-sized model ending there). With several active exits
(DDNN, BranchyNet) the knob is the confidence thresholds: a side exit that
lets more queries out lowers the expected latency and, once it lets out
queries it is less sure of than the later exits, the accuracy.

:func:`threshold_tradeoff` traces that curve for a placement: for each
allowed accuracy drop ``d`` the thresholds are tuned from the measured
accuracy/exit-rate curves (:func:`~tiercut.exits.confidence.tune_thresholds`:
each side exit lets out the most samples whose accuracy stays at least the
last active exit's minus ``d``), and the point is the routed accuracy and
the expected latency of the cost model's exit layer (docs/EARLY_EXITS.md:
``E[latency] = sum_k p_k * latency(query_k)``, each query's latency from
:func:`~tiercut.exits.cost.evaluate_expected`, which does not depend on the
thresholds). :func:`choose_thresholds` picks the point a requirement asks
for: the most accurate under a latency SLO, or the fastest above an
accuracy floor. Tuning with a fixed ``d`` (``tiercut exits add
--accuracy-drop``) ignores the deployment; this chooses along the curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError
from tiercut.exits.confidence import route, tune_thresholds

#: accuracy drops swept by default (0: exits answer as well as the last exit; 1: every side exit fires at once)
DEFAULT_DROPS = (0.0, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)


@dataclass(frozen=True)
class TradeoffPoint:
    """One point of a plan's accuracy-latency curve.

    Attributes:
        accuracy_drop: the drop the thresholds were tuned for.
        thresholds: side exit -> threshold.
        exit_rates: per active exit (measured on the held-out split).
        accuracy: routed accuracy.
        latency_s: expected latency (cost model).
    """

    accuracy_drop: float
    thresholds: Mapping[str, float]
    exit_rates: tuple[float, ...]
    accuracy: float
    latency_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy_drop": self.accuracy_drop, "thresholds": dict(self.thresholds),
                "exit_rates": list(self.exit_rates), "accuracy": self.accuracy, "latency_s": self.latency_s}


def threshold_tradeoff(
    ep: Any, placement: Mapping[str, str], active: Sequence[str], drops: Sequence[float] = DEFAULT_DROPS
) -> list[TradeoffPoint]:
    """The accuracy-latency curve of ``placement`` with ``active`` exits over thresholds tuned for ``drops``."""
    from tiercut.exits.cost import evaluate_expected

    active = ep.check_active(list(active))
    if any(not 0.0 <= d <= 1.0 for d in drops):
        raise TiercutError("accuracy drops must lie within 0..1")
    per_exit = [q.latency_s for q in evaluate_expected(ep, placement, active).queries]
    last = ep.measurements.accuracy(active[-1])
    out = []
    for d in sorted(set(drops)):
        thresholds = tune_thresholds(ep.measurements, active[:-1], ep.rule, min_exit_accuracy=max(0.0, last - d))
        routing = route(ep.measurements, active, ep.rule, thresholds)
        latency = sum(p * t for p, t in zip(routing.exit_rates, per_exit, strict=True) if p > 0)
        out.append(TradeoffPoint(d, thresholds, routing.exit_rates, routing.accuracy, latency))
    return out


def choose_thresholds(
    points: Sequence[TradeoffPoint], *, latency_slo_s: float | None = None, accuracy_min: float | None = None
) -> TradeoffPoint | None:
    """The most accurate point within ``latency_slo_s`` (then the faster), or with ``accuracy_min`` the fastest
    point at least that accurate (then the more accurate); both: the SLO first among those above the floor.
    Without either, the most accurate point. None when no point meets the requirement."""
    candidates = [p for p in points
                  if (latency_slo_s is None or p.latency_s <= latency_slo_s * (1 + 1e-9))
                  and (accuracy_min is None or p.accuracy >= accuracy_min - 1e-12)]
    if not candidates:
        return None
    if latency_slo_s is None and accuracy_min is not None:
        return min(candidates, key=lambda p: (p.latency_s, -p.accuracy))
    return min(candidates, key=lambda p: (-p.accuracy, p.latency_s))


__all__ = ["DEFAULT_DROPS", "TradeoffPoint", "choose_thresholds", "threshold_tradeoff"]
