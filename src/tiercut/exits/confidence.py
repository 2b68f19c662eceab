"""Confidence rules, measured exit behaviour, and threshold tuning.

A query reaching a side exit leaves there when the exit is confident:

- ``entropy`` (BranchyNet, Teerapittayanon et al., ICPR 2016, Sec. III-B):
  ``H(p) = -sum_c p_c log p_c`` (nats) of the exit's softmax; it exits when
  ``H(p) < threshold``;
- ``max_softmax``: the largest softmax probability; it exits when
  ``max_c p_c >= threshold`` (the score DDNN's normalised-entropy rule and
  most later early-exit work reduce to for a single exit).

:class:`ExitMeasurements` keeps, for every sample of the held-out split
and every exit, both scores and whether the exit's answer is right. Every
exit rate and accuracy of any set of active exits and thresholds is
recomputed from it exactly (:func:`route`), and the thresholds are chosen
from each exit's accuracy/exit-rate curve (:func:`tune_thresholds`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiercut.errors import TiercutError
from tiercut.serialization import json_contract

RULES = ("entropy", "max_softmax")


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise TiercutError(f"confidence rule {rule!r} is not known; use one of {', '.join(RULES)}")
    return rule


def scores_from_logits(logits: Any) -> tuple[np.ndarray, np.ndarray]:
    """(entropy in nats, max softmax probability) of each row of ``logits``."""
    import torch

    logp = torch.log_softmax(logits.double(), dim=1)
    p = logp.exp()
    entropy = -(p * logp).sum(1)
    return entropy.numpy(), p.max(1).values.numpy()


def fires(scores: np.ndarray, rule: str, threshold: float) -> np.ndarray:
    """Which samples a side exit lets out under ``rule`` at ``threshold``."""
    check_rule(rule)
    return scores < threshold if rule == "entropy" else scores >= threshold


@dataclass(frozen=True)
class ExitMeasurements:
    """Per-sample measurements of every exit on the held-out split.

    Attributes:
        exits: exit names, side exits in depth order, the final exit last.
        entropy, max_prob: (exits x samples) scores.
        correct: (exits x samples) booleans, the exit's answer is the label.
    """

    exits: tuple[str, ...]
    entropy: np.ndarray
    max_prob: np.ndarray
    correct: np.ndarray

    def __post_init__(self) -> None:
        shape = (len(self.exits), self.correct.shape[1] if self.correct.ndim == 2 else -1)
        for name in ("entropy", "max_prob", "correct"):
            a = getattr(self, name)
            if a.ndim != 2 or a.shape != shape or shape[1] < 1:
                raise TiercutError(f"exit measurements: {name} must be {len(self.exits)} rows of one entry per sample")

    @property
    def n_samples(self) -> int:
        return int(self.correct.shape[1])

    def index(self, exit_name: str) -> int:
        try:
            return self.exits.index(exit_name)
        except ValueError:
            raise TiercutError(f"no exit {exit_name!r}; exits are {', '.join(self.exits)}") from None

    def scores(self, exit_name: str, rule: str) -> np.ndarray:
        k = self.index(exit_name)
        return self.entropy[k] if check_rule(rule) == "entropy" else self.max_prob[k]

    def accuracy(self, exit_name: str) -> float:
        """The exit's accuracy when every sample is classified there."""
        return float(self.correct[self.index(exit_name)].mean())

    def to_dict(self) -> dict[str, Any]:
        return {
            "exits": list(self.exits),
            "entropy": [[float(v) for v in row] for row in self.entropy],
            "max_prob": [[float(v) for v in row] for row in self.max_prob],
            "correct": [[int(v) for v in row] for row in self.correct],
        }

    @classmethod
    @json_contract("exit measurements", hint="re-create them with 'tiercut exits add'")
    def from_dict(cls, data: Mapping[str, Any]) -> ExitMeasurements:
        try:
            return cls(
                tuple(str(e) for e in data["exits"]),
                np.asarray(data["entropy"], dtype=float),
                np.asarray(data["max_prob"], dtype=float),
                np.asarray(data["correct"], dtype=bool),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise TiercutError(f"exit measurements are malformed ({exc}); re-create them with 'tiercut exits add'") from None

    @classmethod
    def from_logits(cls, names: Sequence[str], logits: Sequence[Any], labels: Any) -> ExitMeasurements:
        ent, mp, ok = [], [], []
        for lg in logits:
            e, m = scores_from_logits(lg)
            ent.append(e)
            mp.append(m)
            ok.append((lg.argmax(1) == labels).numpy())
        return cls(tuple(names), np.stack(ent), np.stack(mp), np.stack(ok).astype(bool))


@dataclass(frozen=True)
class Routing:
    """Where the held-out samples leave, for an ordered list of active exits.

    Attributes:
        active: the active exits in depth order; the last always answers.
        exit_rates: fraction of all samples leaving at each active exit (sum 1).
        accuracy_when_exiting: accuracy among the samples leaving there (None if none).
        accuracy: overall accuracy.
        taken: per sample, the index in ``active`` of the exit it left at.
    """

    active: tuple[str, ...]
    exit_rates: tuple[float, ...]
    accuracy_when_exiting: tuple[float | None, ...]
    accuracy: float
    taken: np.ndarray


def route(
    measurements: ExitMeasurements, active: Sequence[str], rule: str, thresholds: Mapping[str, float]
) -> Routing:
    """Walk every held-out sample through ``active`` exits: it leaves at the first side exit that fires under
    ``rule`` and its ``thresholds`` (exit name -> threshold), else at the last active exit."""
    check_rule(rule)
    if not active:
        raise TiercutError("no active exit; a query must leave somewhere")
    idx = [measurements.index(a) for a in active]
    if idx != sorted(idx):
        raise TiercutError(f"active exits {', '.join(active)} are not in depth order")
    n = measurements.n_samples
    taken = np.full(n, len(active) - 1)
    open_ = np.ones(n, dtype=bool)
    for pos, name in enumerate(active[:-1]):
        if name not in thresholds:
            raise TiercutError(f"exit {name!r} has no threshold; tune or give one")
        hit = open_ & fires(measurements.scores(name, rule), rule, float(thresholds[name]))
        taken[hit] = pos
        open_ &= ~hit
    right = measurements.correct[np.array(idx)[taken], np.arange(n)]
    rates, accs = [], []
    for pos in range(len(active)):
        mask = taken == pos
        rates.append(float(mask.mean()))
        accs.append(float(right[mask].mean()) if mask.any() else None)
    return Routing(tuple(active), tuple(rates), tuple(accs), float(right.mean()), taken)


@dataclass(frozen=True)
class CurvePoint:
    """One threshold of an exit's accuracy/exit-rate curve (over the samples that reach it)."""

    threshold: float
    exit_rate: float
    accuracy: float | None


def curve(measurements: ExitMeasurements, exit_name: str, rule: str, reach: np.ndarray | None = None) -> list[CurvePoint]:
    """The exit's curve: for each distinct score as threshold, the fraction of the samples in ``reach``
    (default all) that leave and their accuracy, from "nobody leaves" to "everybody leaves"."""
    scores = measurements.scores(exit_name, rule)
    ok = measurements.correct[measurements.index(exit_name)]
    mask = np.ones(measurements.n_samples, dtype=bool) if reach is None else reach
    s, c = scores[mask], ok[mask]
    if len(s) == 0:
        return []
    values = np.unique(s)
    if rule == "entropy":  # exits when H < t: thresholds just above each value, plus 0 (nobody)
        candidates = np.concatenate([[0.0], np.nextafter(values, np.inf)])
    else:  # exits when p >= t: each value, plus just above the largest (nobody)
        candidates = np.concatenate([[np.nextafter(values[-1], np.inf)], values[::-1]])
    points = []
    for t in candidates:
        hit = fires(s, rule, float(t))
        points.append(CurvePoint(float(t), float(hit.mean()), float(c[hit].mean()) if hit.any() else None))
    return points


def tune_thresholds(
    measurements: ExitMeasurements, side_exits: Sequence[str], rule: str, *, min_exit_accuracy: float
) -> dict[str, float]:
    """Per side exit (in depth order), the threshold letting out the most of the samples that reach it while
    the samples it lets out are right at least ``min_exit_accuracy`` of the time (read off the exit's
    accuracy/exit-rate curve over those samples; BranchyNet picks its thresholds the same way, from the
    curve). An exit that cannot meet the target lets nobody out."""
    if not 0.0 <= min_exit_accuracy <= 1.0:
        raise TiercutError(f"target exit accuracy {min_exit_accuracy!r} must be within 0..1")
    reach = np.ones(measurements.n_samples, dtype=bool)
    out: dict[str, float] = {}
    for name in side_exits:
        points = curve(measurements, name, rule, reach)
        best = points[0] if points else CurvePoint(0.0 if rule == "entropy" else 1.0 + 1e-9, 0.0, None)
        for p in points:
            if p.accuracy is not None and p.accuracy >= min_exit_accuracy - 1e-12 and p.exit_rate > best.exit_rate:
                best = p
        out[name] = best.threshold
        reach = reach & ~fires(measurements.scores(name, rule), rule, best.threshold)
    return out


__all__ = [
    "RULES",
    "CurvePoint",
    "ExitMeasurements",
    "Routing",
    "check_rule",
    "curve",
    "fires",
    "route",
    "scores_from_logits",
    "tune_thresholds",
]
