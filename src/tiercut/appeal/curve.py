"""Accuracy vs fraction sent to the cloud as the appeal threshold sweeps (AppealNet's trade-off curve).

For held-out inputs with the small model's answer, the big model's answer
and an appeal score ``q`` per input (AppealNet's predictor head, or a
baseline score such as one minus the small model's top softmax), the routed
answer at threshold ``t`` is the big model's where ``q > t`` and the small
model's elsewhere. The fraction offloaded is non-increasing in ``t`` by
construction (the set ``{q > t}`` shrinks as ``t`` grows). Accuracy is *not*
monotone in general: appealing an input the small model got right and the
big model gets wrong lowers it; it moves from the big model's accuracy (``t``
below every score) to the small model's (``t`` at or above every score).

Li et al., "AppealNet: An Efficient and Highly-Accurate Edge/Cloud
Collaborative Architecture for DNN Inference", DAC 2021 (arXiv:2105.04104).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiercut.errors import TiercutError


@dataclass(frozen=True)
class CurvePoint:
    """One threshold of the sweep: what fraction is appealed and how accurate the routed answers are."""

    threshold: float
    fraction_offloaded: float
    accuracy: float

    def to_dict(self) -> dict[str, float]:
        return {"threshold": self.threshold, "fraction_offloaded": self.fraction_offloaded, "accuracy": self.accuracy}


@dataclass(frozen=True)
class RoutedAnswers:
    """Per held-out input: the appeal score and whether each model answers it correctly."""

    score: np.ndarray
    small_correct: np.ndarray
    big_correct: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.score)
        if not n or len(self.small_correct) != n or len(self.big_correct) != n:
            raise TiercutError("routed answers need one score and one correctness per model for each input (and >= 1 input)")

    def offloaded(self, threshold: float) -> np.ndarray:
        """The inputs appealed at ``threshold`` (score strictly above it)."""
        return self.score > threshold

    def point(self, threshold: float) -> CurvePoint:
        sent = self.offloaded(threshold)
        correct = np.where(sent, self.big_correct, self.small_correct)
        return CurvePoint(float(threshold), float(sent.mean()), float(correct.mean()))


def check_threshold(threshold: float) -> float:
    """A threshold is a finite number in [0, 1] (scores are probabilities)."""
    if not (isinstance(threshold, (int, float)) and np.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise TiercutError(f"appeal threshold {threshold!r} must be a number from 0 to 1 (e.g. --threshold 0.3)")
    return float(threshold)


def routing_curve(answers: RoutedAnswers, thresholds: Sequence[float] | None = None) -> list[CurvePoint]:
    """The curve at ``thresholds`` (default: 0, 0.05, ..., 1), in increasing threshold order."""
    ts = np.linspace(0.0, 1.0, 21) if thresholds is None else np.array([check_threshold(t) for t in thresholds])
    return [answers.point(float(t)) for t in np.sort(ts)]


def router_answers(router: Any, x: Any, y: Any, score: str = "predictor") -> RoutedAnswers:
    """Score and correctness of ``router`` on inputs ``x`` with labels ``y``.

    ``score="predictor"``: AppealNet's predictor head, ``sigmoid(appeal_logit)``;
    ``score="max_softmax"``: the baseline ``1 - max softmax`` of the small model's answer.
    """
    import torch

    with torch.no_grad():
        logits, appeal = router.small(x)
        big = router.big(x)
    if score == "predictor":
        q = torch.sigmoid(appeal.squeeze(1))
    elif score == "max_softmax":
        q = 1.0 - torch.softmax(logits, dim=1).max(dim=1).values
    else:
        raise TiercutError(f"appeal score {score!r} is not known; use predictor or max_softmax")
    return RoutedAnswers(
        q.numpy().astype(float), (logits.argmax(1) == y).numpy(), (big.argmax(1) == y).numpy()
    )


__all__ = ["CurvePoint", "RoutedAnswers", "check_threshold", "router_answers", "routing_curve"]
