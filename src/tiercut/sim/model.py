"""What a simulation is made of: users, their query arrivals, bandwidth traces, settings.

All plain frozen dataclasses; :mod:`tiercut.sim.scenario` builds them from a
validated YAML file, and Python code can build them directly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tiercut.errors import TiercutError
from tiercut.problem import Problem
from tiercut.sim.core import DISCIPLINES
from tiercut.upload.types import UserUploadPlan

#: how a query's work is ordered.
EXECUTIONS = ("sequential", "overlapped")


@dataclass(frozen=True)
class BackToBack:
    """Closed loop: the next query is issued when the previous one completes (plus ``think_s``).

    The IONN model's "queries back to back from t = 0" (migration seed,
    "Query Thread": "immediately propose a new query after the previous
    query is completed").
    """

    think_s: float = 0.0
    kind: str = field(default="back-to-back", init=False)


@dataclass(frozen=True)
class Poisson:
    """Open loop: queries arrive as a Poisson process of ``rate_hz`` (they may overlap)."""

    rate_hz: float
    kind: str = field(default="poisson", init=False)


@dataclass(frozen=True)
class Periodic:
    """Open loop: a query every ``interval_s`` from the user's join time."""

    interval_s: float
    kind: str = field(default="periodic", init=False)


@dataclass(frozen=True)
class TraceArrivals:
    """Open loop: queries at the given absolute times (seconds, increasing)."""

    times_s: tuple[float, ...]
    kind: str = field(default="trace", init=False)


ArrivalProcess = BackToBack | Poisson | Periodic | TraceArrivals


@dataclass(frozen=True)
class SimUser:
    """One user: its problem, its upload plan and how its queries arrive.

    Attributes:
        name: unique name.
        problem: the user's single-user problem; its device names are the
            simulation's (the source is the user's client).
        plan: the user's uploads and stage placements (one server: wrap an
            :class:`~tiercut.upload.UploadPlan` with
            :func:`tiercut.upload.multi.user_plan_from_upload`). None: no
            upload, every query runs with ``placement``.
        tiled_stages: tiled stages run on top of ``placement`` (:class:`tiercut.spatial.problem.TiledStage`;
            ``problem`` then a :class:`~tiercut.spatial.problem.SpatialProblem`, ``plan`` None): each query's
            stage is scattered, computed in parallel and gathered (:func:`tiercut.sim.program.compile_tiled_program`).
        placement: the fixed placement when ``plan`` is None (default: all
            on the client); the servers are assumed to hold those weights.
        cut_compression: with ``placement``: node -> cut codec of the tensors
            sent compressed (a plan's ``cut_compression``, JALAD): encode on
            the sender, the compressed bytes on the links, decode on the
            receiver (:mod:`tiercut.cost.cut_compression`).
        arrivals: the query arrival process.
        join_s: when the user appears (its uploads start then).
        leave_s: when it stops issuing queries and uploading (None: never).
        max_queries: stop issuing after this many queries (None: no limit).
        seed: random seed of its arrival process.
        shares: resource (a device name, or a link channel ``a|b`` / ``a>b``) -> this user's share weight
            under processor sharing (a multi-user plan's resource shares, :class:`tiercut.problem.Shares`;
            :func:`user_shares`); a resource not named weighs 1. Empty: equal sharing among jobs.
    """

    name: str
    problem: Problem
    plan: UserUploadPlan | None = None
    placement: Mapping[str, str] | None = None
    cut_compression: Mapping[str, str] = field(default_factory=dict)
    tiled_stages: tuple[Any, ...] = ()
    arrivals: ArrivalProcess = field(default_factory=BackToBack)
    join_s: float = 0.0
    leave_s: float | None = None
    max_queries: int | None = None
    seed: int = 0
    shares: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        label = f"user {self.name!r}"
        if not (math.isfinite(self.join_s) and self.join_s >= 0):
            raise TiercutError(f"{label}: join_s {self.join_s!r} must be a finite number >= 0")
        if self.leave_s is not None and not self.leave_s > self.join_s:
            raise TiercutError(f"{label}: leave_s {self.leave_s!r} must be after join_s {self.join_s!r}")
        if self.max_queries is not None and self.max_queries < 1:
            raise TiercutError(f"{label}: max_queries {self.max_queries!r} must be >= 1")
        arrivals = self.arrivals
        if isinstance(arrivals, BackToBack) and not (math.isfinite(arrivals.think_s) and arrivals.think_s >= 0):
            raise TiercutError(f"{label}: think_s {arrivals.think_s!r} must be >= 0")
        if isinstance(arrivals, Poisson) and not (math.isfinite(arrivals.rate_hz) and arrivals.rate_hz > 0):
            raise TiercutError(f"{label}: Poisson rate_hz {arrivals.rate_hz!r} must be > 0")
        if isinstance(arrivals, Periodic) and not (math.isfinite(arrivals.interval_s) and arrivals.interval_s > 0):
            raise TiercutError(f"{label}: interval_s {arrivals.interval_s!r} must be > 0")
        if isinstance(arrivals, TraceArrivals):
            times = arrivals.times_s
            if any(not math.isfinite(t) or t < 0 for t in times) or any(b < a for a, b in itertools.pairwise(times)):
                raise TiercutError(f"{label}: trace times must be finite, >= 0 and increasing")
        if any(not (isinstance(w, (int, float)) and math.isfinite(w) and w > 0) for w in self.shares.values()):
            raise TiercutError(f"{label}: every resource share must be a finite number > 0")
        if self.cut_compression and self.plan is not None:
            raise TiercutError(f"{label}: cut_compression goes with a fixed placement, not an upload plan")
        if self.tiled_stages and self.plan is not None:
            raise TiercutError(f"{label}: tiled stages run on a fixed placement; give no upload plan (upload: none)")
        if self.tiled_stages and self.cut_compression:
            raise TiercutError(f"{label}: tiled stages and cut compression are not simulated together; drop one")
        if self.plan is not None and self.plan.source != self.problem.source:
            raise TiercutError(
                f"{label}: its upload plan is for client {self.plan.source!r}, its problem's is {self.problem.source!r}"
            )


def piecewise_values(points: Sequence[tuple[float, float]], times_s: Any) -> np.ndarray:
    """The value of a piecewise-constant series (from ``points[i][0]`` on it is ``points[i][1]``) at each of
    ``times_s``; before the first point, the first value. Shared by :class:`BandwidthTrace` and the gym's
    :class:`tiercut.gym.processes.PiecewiseConstant` so the two cannot read a series differently."""
    at = np.array([float(t) for t, _ in points])
    level = np.array([float(v) for _, v in points])
    index = np.clip(np.searchsorted(at, np.asarray(times_s, dtype=float), side="right") - 1, 0, None)
    return level[index]


@dataclass(frozen=True)
class BandwidthTrace:
    """A link's bandwidth over time: from ``points[i][0]`` seconds on it is ``points[i][1]`` bytes/s.

    The project's one bandwidth-trace type: the simulator replays it on the link (``SimConfig.traces``,
    before its first point the link keeps its nominal figure), PANDA's online control samples it once per
    time slot (:meth:`slots`, :mod:`tiercut.plan.panda`, :mod:`tiercut.sim.online`), and the gym takes it as
    a link's bandwidth process (:meth:`values`, the :class:`tiercut.gym.processes.ConditionProcess`
    protocol). Random traces come from the gym's generators (Markov chain, log random walk) through
    :meth:`from_process`; one value per slot through :meth:`from_slots`.
    """

    a: str
    b: str
    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        times = [t for t, _ in self.points]
        if not self.points:
            raise TiercutError(f"bandwidth trace of link {self.a}-{self.b} has no points; give [[time_s, bytes_per_s], ...]")
        if any(not math.isfinite(t) or t < 0 for t in times) or any(b <= a for a, b in itertools.pairwise(times)):
            raise TiercutError(f"bandwidth trace of link {self.a}-{self.b}: times must be >= 0 and strictly increasing")
        if any(not (math.isfinite(bw) and bw >= 0) for _, bw in self.points):
            raise TiercutError(f"bandwidth trace of link {self.a}-{self.b}: bandwidths must be finite and >= 0")

    @classmethod
    def from_slots(cls, a: str, b: str, bandwidth_bytes_per_s: Sequence[float], slot_s: float = 1.0) -> BandwidthTrace:
        """Slot ``k`` (from ``k * slot_s`` seconds) at ``bandwidth_bytes_per_s[k]`` (repeats merged)."""
        if not (isinstance(slot_s, (int, float)) and math.isfinite(slot_s) and slot_s > 0):
            raise TiercutError(f"bandwidth trace of link {a}-{b}: slot_s {slot_s!r} must be a finite number > 0")
        if len(bandwidth_bytes_per_s) == 0:
            raise TiercutError(f"bandwidth trace of link {a}-{b} has no slots; give one bandwidth per slot")
        points: list[tuple[float, float]] = []
        for k, value in enumerate(bandwidth_bytes_per_s):
            if not points or points[-1][1] != float(value):
                points.append((k * float(slot_s), float(value)))
        return cls(a, b, tuple(points))

    @classmethod
    def from_process(cls, a: str, b: str, process: Any, times_s: Sequence[float], rng: np.random.Generator) -> BandwidthTrace:
        """Sample a condition process (:mod:`tiercut.gym.processes`: Markov chain, log random walk, ...) at
        ``times_s`` (increasing) into a trace: a random trace for the simulator and PANDA."""
        values = np.asarray(process.values(np.asarray(times_s, dtype=float), rng), dtype=float)
        points: list[tuple[float, float]] = []
        for t, value in zip(times_s, values, strict=True):
            if not points or points[-1][1] != float(value):
                points.append((float(t), float(value)))
        return cls(a, b, tuple(points))

    def values(self, times_s: Any, rng: Any = None) -> np.ndarray:
        """Bytes per second at each of ``times_s`` (before the first point, the first value); ``rng`` unused
        (the gym's :class:`~tiercut.gym.processes.ConditionProcess` protocol: a trace is not random)."""
        return piecewise_values(self.points, times_s)

    def at(self, time_s: float) -> float | None:
        """Bytes per second at ``time_s``; None before the first point (the link's nominal figure then)."""
        if time_s < self.points[0][0]:
            return None
        return float(piecewise_values(self.points, [time_s])[0])

    def slots(self, slot_s: float, n_slots: int, before: float | None = None) -> np.ndarray:
        """[n_slots] the bandwidth at the start of each slot of ``slot_s`` (``before``: the value before the
        first point, the link's nominal figure; None: the first value)."""
        if not (math.isfinite(slot_s) and slot_s > 0 and n_slots >= 1):
            raise TiercutError("slots need slot_s > 0 and n_slots >= 1")
        times = np.arange(n_slots) * float(slot_s)
        out = piecewise_values(self.points, times)
        if before is not None:
            out[times < self.points[0][0]] = before
        return out


@dataclass(frozen=True)
class SimConfig:
    """How to simulate.

    Attributes:
        duration_s: simulated seconds (None: until no user has anything left
            to do, which needs ``max_queries``, ``leave_s`` or trace arrivals).
        execution: ``sequential`` (one layer run or one transfer of a query at
            a time: docs/cost-model.md, what the analytic model assumes)
            or ``overlapped`` (a layer starts when its inputs are there;
            branches on different devices run in parallel).
        upload_shares_link: uploads share the client-server link with query
            tensors (True) or have a channel of the link's bandwidth of their
            own (False: the IONN model's assumption).
        disciplines: device -> ``ps`` (processor sharing) or ``fifo``.
        default_discipline: for devices not in ``disciplines``.
        traces: bandwidth traces of links.
        record_ops: keep every query's operations (where and when each ran).
    """

    duration_s: float | None = None
    execution: str = "sequential"
    upload_shares_link: bool = True
    disciplines: Mapping[str, str] = field(default_factory=dict)
    default_discipline: str = "ps"
    traces: tuple[BandwidthTrace, ...] = ()
    record_ops: bool = False

    def __post_init__(self) -> None:
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise TiercutError(f"duration_s {self.duration_s!r} must be a finite number > 0")
        if self.execution not in EXECUTIONS:
            raise TiercutError(f"execution {self.execution!r} is not known; use {' or '.join(EXECUTIONS)}")
        for device, discipline in {**self.disciplines, "default": self.default_discipline}.items():
            if discipline not in DISCIPLINES:
                raise TiercutError(f"discipline {discipline!r} of {device!r} is not known; use ps or fifo")


def user_shares(shares: Any, user: str) -> dict[str, float]:
    """``user``'s share weights for :attr:`SimUser.shares` from a multi-user plan's
    :class:`tiercut.problem.Shares`: its device fractions, and each link fraction on the link's shared
    channel (``a|b``) and on both directions' channels (``a>b``, ``b>a``) of a directional link."""
    mine = shares.user(user)
    out = dict(mine["devices"])
    for name, share in mine["links"].items():
        a, b = name.split("|")
        out.update({name: share, f"{a}>{b}": share, f"{b}>{a}": share})
    return out


__all__ = [
    "EXECUTIONS",
    "ArrivalProcess",
    "BackToBack",
    "BandwidthTrace",
    "Periodic",
    "Poisson",
    "SimConfig",
    "SimUser",
    "TraceArrivals",
    "piecewise_values",
    "user_shares",
]
