"""The two models of input-aware routing (AppealNet) on scikit-learn's digits.

AppealNet (Li, Li, Tian, Jiang, Xu, "AppealNet: An Efficient and
Highly-Accurate Edge/Cloud Collaborative Architecture for DNN Inference",
DAC 2021, arXiv:2105.04104) puts a *two-head* network on the edge device: a
shared feature extractor, an approximator head (the answer) and a predictor
head (whether the input should be appealed to the big model in the cloud).

- :class:`TwoHeadNet` (:func:`appeal_small`): the device's model; it sees the
  8x8 digit pooled to 4x4 (a deliberately small, cheap model: one linear
  feature layer) and returns ``(logits, appeal_logit)``; the predictor head
  reads the shared features and the approximator's softmax;
- :func:`appeal_big`: the cloud's model, issue 14's digits CNN
  (:func:`tiercut.exits.models.digits_cnn`).
"""

from __future__ import annotations

from typing import Any

from tiercut.exits.models import NUM_CLASSES, digits_cnn

#: both models take one 1x8x8 digit
INPUT_SHAPE = (1, 1, 8, 8)


def _two_head_class() -> Any:
    import torch
    from torch import nn

    class TwoHeadNet(nn.Module):
        """AppealNet's two-head network: features -> (approximator logits, predictor logit)."""

        def __init__(self, hidden: int = 32) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, hidden), nn.ReLU())
            self.approximator = nn.Linear(hidden, NUM_CLASSES)
            self.predictor = nn.Sequential(nn.Linear(hidden + NUM_CLASSES, 16), nn.ReLU(), nn.Linear(16, 1))

        def forward(self, x: Any) -> tuple[Any, Any]:
            f = self.features(x)
            logits = self.approximator(f)
            return logits, self.predictor(torch.cat([f, torch.softmax(logits, dim=1)], dim=1))

    return TwoHeadNet


def appeal_small(hidden: int = 32) -> Any:
    """The device's two-head network (4x4-pooled digits, ``hidden`` features): ``(logits, appeal_logit)``."""
    return _two_head_class()(hidden)


def appeal_big() -> Any:
    """The cloud's model: the digits CNN of :mod:`tiercut.exits.models` (10 logits)."""
    return digits_cnn()


__all__ = ["INPUT_SHAPE", "appeal_big", "appeal_small"]
