"""How conditions change over an episode: bandwidth and server-load processes.

A process is anything with ``values(times_s, rng) -> ndarray`` (the
:class:`ConditionProcess` protocol): the value at each of the given times
(seconds, increasing), drawing any randomness from ``rng`` so that a seeded
generator gives the same series every time. The environment asks each link's
process for bytes per second and each server's for a load factor (the
equal-share model's number of users sharing the server: compute times on it
are that many times longer, docs/cost-model.md "Multi-user").

Three kinds, small and swappable (the simulator's scenario traces, or
another generator, plug in the same way). A link's bandwidth may also be the
simulator's :class:`tiercut.sim.BandwidthTrace` itself (the project's one
trace type: it has ``values``), and :meth:`tiercut.sim.BandwidthTrace.from_process`
samples any of these processes into one (a random trace for the simulator
and PANDA's online control):

- :class:`PiecewiseConstant`: a recorded or scripted series, ``points`` of
  ``(time_s, value)`` as the simulator's bandwidth traces
  (:class:`tiercut.sim.BandwidthTrace`, :meth:`PiecewiseConstant.from_sim_trace`);
- :class:`MarkovChain`: a discrete-time Markov chain over levels (the
  Gilbert-Elliott good/bad channel of Gilbert, Bell Syst. Tech. J. 1960 and
  Elliott 1963, with more levels); the chain moves once per ``step_s``;
- :class:`LogRandomWalk`: a mean-reverting random walk of the logarithm (a
  discretised Ornstein-Uhlenbeck process), for bandwidth that drifts rather
  than jumps.

None of them carries a figure from the field: the levels, rates and
volatilities are the caller's (the benchmark states its own as assumptions).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from tiercut.errors import TiercutError


@runtime_checkable
class ConditionProcess(Protocol):
    """A value (bytes per second, or a load factor) over time."""

    def values(self, times_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The value at each of ``times_s`` (increasing seconds), all finite and > 0."""


#: a link's bandwidth over time (bytes per second).
BandwidthProcess = ConditionProcess
#: a server's load factor over time (>= 1: the number of users sharing it).
LoadProcess = ConditionProcess


def _check_positive(values: Sequence[float], what: str) -> None:
    if not values:
        raise TiercutError(f"{what} has no values; give at least one")
    if any(not (math.isfinite(v) and v > 0) for v in values):
        raise TiercutError(f"{what}: every value must be a finite number > 0, got {list(values)!r}")


@dataclass(frozen=True)
class Constant:
    """The same value at every time."""

    value: float

    def __post_init__(self) -> None:
        _check_positive([self.value], "constant process")

    def values(self, times_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.full(len(times_s), float(self.value))


@dataclass(frozen=True)
class PiecewiseConstant:
    """From ``points[i][0]`` seconds on, the value is ``points[i][1]`` (before the first point: the first value).

    ``period_s`` repeats the series (None: the last value holds for ever).
    ``random_offset`` starts each episode at a random point of one period
    (drawn from ``rng``), so one recorded trace gives many episodes.
    """

    points: tuple[tuple[float, float], ...]
    period_s: float | None = None
    random_offset: bool = False

    def __post_init__(self) -> None:
        times = [float(t) for t, _ in self.points]
        _check_positive([float(v) for _, v in self.points], "piecewise-constant process")
        if any(not math.isfinite(t) or t < 0 for t in times) or any(b <= a for a, b in itertools.pairwise(times)):
            raise TiercutError("piecewise-constant process: times must be finite, >= 0 and strictly increasing")
        if self.period_s is not None and not (math.isfinite(self.period_s) and self.period_s > times[-1]):
            raise TiercutError(f"piecewise-constant process: period_s {self.period_s!r} must be after the last point")
        if self.random_offset and self.period_s is None:
            raise TiercutError("piecewise-constant process: random_offset needs a period_s to wrap around")

    @classmethod
    def from_sim_trace(cls, trace: object, **kwargs: object) -> PiecewiseConstant:
        """The process of a simulator bandwidth trace (:class:`tiercut.sim.BandwidthTrace`, bytes per second)."""
        points = getattr(trace, "points", None)
        if points is None:
            raise TiercutError("from_sim_trace takes a tiercut.sim.BandwidthTrace (it has no points)")
        return cls(tuple((float(t), float(v)) for t, v in points), **kwargs)  # type: ignore[arg-type]

    def values(self, times_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        times = np.asarray(times_s, dtype=float)
        if self.period_s is not None:
            offset = float(rng.uniform(0.0, self.period_s)) if self.random_offset else 0.0
            times = np.mod(times + offset, self.period_s)
        from tiercut.sim.model import piecewise_values  # one reading of a piecewise-constant series

        return piecewise_values(self.points, times)


@dataclass(frozen=True)
class MarkovChain:
    """A Markov chain over ``levels``, moving once every ``step_s`` seconds.

    ``transition[i][j]`` is the chance of going from level ``i`` to ``j`` in
    one move (rows sum to 1). :meth:`sticky` builds the usual one: stay with
    ``stay_probability``, else jump to another level uniformly. The first
    level is drawn from ``initial`` (None: the chain's stationary
    distribution).
    """

    levels: tuple[float, ...]
    transition: tuple[tuple[float, ...], ...]
    step_s: float = 1.0
    initial: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _check_positive(list(self.levels), "Markov chain levels")
        k = len(self.levels)
        matrix = np.asarray(self.transition, dtype=float)
        if matrix.shape != (k, k):
            raise TiercutError(f"Markov chain: transition must be {k}x{k} for {k} levels, got shape {matrix.shape}")
        if (matrix < 0).any() or not np.allclose(matrix.sum(axis=1), 1.0):
            raise TiercutError("Markov chain: transition rows must be probabilities summing to 1")
        if not (math.isfinite(self.step_s) and self.step_s > 0):
            raise TiercutError(f"Markov chain: step_s {self.step_s!r} must be a finite number > 0")
        if self.initial is not None:
            start = np.asarray(self.initial, dtype=float)
            if start.shape != (k,) or (start < 0).any() or not math.isclose(start.sum(), 1.0):
                raise TiercutError(f"Markov chain: initial must be {k} probabilities summing to 1")

    @classmethod
    def sticky(cls, levels: Sequence[float], stay_probability: float, step_s: float = 1.0) -> MarkovChain:
        """Stay at the current level with ``stay_probability``, else move to one of the others at random."""
        if not 0.0 <= stay_probability <= 1.0:
            raise TiercutError(f"Markov chain: stay_probability {stay_probability!r} must be in [0, 1]")
        k = len(levels)
        if k == 1:
            return cls((float(levels[0]),), ((1.0,),), step_s)
        move = (1.0 - stay_probability) / (k - 1)
        rows = tuple(tuple(stay_probability if i == j else move for j in range(k)) for i in range(k))
        return cls(tuple(float(v) for v in levels), rows, step_s)

    def stationary(self) -> np.ndarray:
        """The stationary distribution (left eigenvector of eigenvalue 1)."""
        matrix = np.asarray(self.transition, dtype=float)
        values, vectors = np.linalg.eig(matrix.T)
        vec = np.real(vectors[:, int(np.argmin(np.abs(values - 1.0)))])
        vec = np.abs(vec)
        return vec / vec.sum()

    def values(self, times_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        times = np.asarray(times_s, dtype=float)
        if len(times) == 0:
            return np.empty(0)
        moves = np.floor((times - times[0]) / self.step_s + 1e-9).astype(np.int64)
        matrix = np.cumsum(np.asarray(self.transition, dtype=float), axis=1)
        start = np.asarray(self.initial, dtype=float) if self.initial is not None else self.stationary()
        state = int(np.searchsorted(np.cumsum(start), rng.random() * start.sum(), side="right"))
        state = min(state, len(self.levels) - 1)
        draws = rng.random(int(moves[-1]))
        path = np.empty(int(moves[-1]) + 1, dtype=np.int64)
        path[0] = state
        for i, u in enumerate(draws, start=1):
            state = min(int(np.searchsorted(matrix[state], u, side="right")), len(self.levels) - 1)
            path[i] = state
        return np.asarray(self.levels, dtype=float)[path[moves]]


@dataclass(frozen=True)
class LogRandomWalk:
    """A mean-reverting random walk of ``log(value)`` (a discretised Ornstein-Uhlenbeck process).

    Every ``step_s`` seconds ``y = log(value / median)`` moves to
    ``(1 - reversion) * y + volatility * N(0, 1)``; values are clipped to
    ``[low, high]``. The first value is drawn from the walk's stationary
    spread (``volatility / sqrt(1 - (1 - reversion)^2)``).
    """

    median: float
    volatility: float = 0.3
    reversion: float = 0.1
    low: float | None = None
    high: float | None = None
    step_s: float = 1.0

    def __post_init__(self) -> None:
        _check_positive([self.median], "random walk median")
        if not (math.isfinite(self.volatility) and self.volatility >= 0):
            raise TiercutError(f"random walk: volatility {self.volatility!r} must be >= 0")
        if not 0.0 < self.reversion <= 1.0:
            raise TiercutError(f"random walk: reversion {self.reversion!r} must be in (0, 1]")
        if not (math.isfinite(self.step_s) and self.step_s > 0):
            raise TiercutError(f"random walk: step_s {self.step_s!r} must be a finite number > 0")
        low = self.low if self.low is not None else 0.0
        if self.low is not None:
            _check_positive([self.low], "random walk low")
        if self.high is not None and not (math.isfinite(self.high) and self.high > low):
            raise TiercutError(f"random walk: high {self.high!r} must be a finite number above low")

    def values(self, times_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        times = np.asarray(times_s, dtype=float)
        if len(times) == 0:
            return np.empty(0)
        moves = np.floor((times - times[0]) / self.step_s + 1e-9).astype(np.int64)
        keep = 1.0 - self.reversion
        spread = self.volatility / math.sqrt(max(1e-12, 1.0 - keep * keep))
        noise = rng.standard_normal(int(moves[-1]) + 1)
        walk = np.empty(int(moves[-1]) + 1)
        walk[0] = spread * noise[0]
        for i in range(1, len(walk)):
            walk[i] = keep * walk[i - 1] + self.volatility * noise[i]
        values = self.median * np.exp(walk[moves])
        low = self.low if self.low is not None else 1e-300
        high = self.high if self.high is not None else np.inf
        return np.clip(values, low, high)


__all__ = [
    "BandwidthProcess",
    "ConditionProcess",
    "Constant",
    "LoadProcess",
    "LogRandomWalk",
    "MarkovChain",
    "PiecewiseConstant",
]
