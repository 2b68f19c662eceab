"""Re-planning at run time: the links as estimated, the planners as they are, a hysteresis controller.

The pieces, each testable without gRPC:

* :func:`estimated_problem` -- the run's :class:`~tiercut.problem.Problem`
  with each link's figures replaced by its estimate
  (:mod:`tiercut.runtime.estimator`); nothing else changes, so the cost
  model, the planners and the upload planners are the ones of the static
  pipeline (docs/cost-model.md) -- there is no second cost model;
* :func:`replan` -- the registered planner (``plan(problem, algorithm)``)
  on the estimated problem, and the cost model's latency of the placement
  in use on the same problem: the predicted gain of switching;
* :class:`HysteresisController` -- switch only when the relative gain
  ``1 - candidate / current`` stays at or above ``threshold`` (and the
  absolute gain at or above ``min_gain_s``) for ``dwell_s`` seconds
  without a break: a threshold band plus a dwell time, the two classic
  guards against flapping of hand-over control (3GPP's hysteresis and
  time-to-trigger, TS 36.331 5.5.4). A candidate that is the placement in
  use, or a gain that dips below the band, resets the timer.
* :class:`LinkSchedule` -- a bandwidth schedule for links over a run (the
  simulator's :class:`~tiercut.sim.model.BandwidthTrace` points), applied to
  the client's token-bucket shapers (:class:`~tiercut.runtime.links.LinkShaper`)
  or, through any ``apply`` callable, to real shaping (``tc``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.runtime.estimator import ESTIMATORS, LinkEstimate

#: what a controller decision did
ACTIONS = ("stay", "wait", "switch")


@dataclass(frozen=True)
class AdaptSettings:
    """How a run adapts (``tiercut run --adapt``).

    Attributes:
        estimator: ``ewma`` or ``window`` (:mod:`tiercut.runtime.estimator`).
        alpha: the EWMA's weight of a new sample.
        window_s: the windowed estimator's window.
        threshold: least relative predicted gain ``1 - candidate / current`` that counts (0.2: 20 % faster).
        min_gain_s: least absolute predicted gain in seconds that counts.
        dwell_s: how long the gain must hold without a break before the switch.
        interval_s: least time between two decisions (each runs the planner).
        probe_interval_s: a server link no transfer has measured for this long is probed
            (a query on a deployed stage, or a status round trip); 0: no probes.
        algorithm: the partition planner that re-plans (any registered one).
        upload_algorithm: the upload planner that orders a new placement's partitions.
    """

    estimator: str = "ewma"
    alpha: float = 0.25
    window_s: float = 2.0
    threshold: float = 0.2
    min_gain_s: float = 0.0
    dwell_s: float = 1.0
    interval_s: float = 0.1
    probe_interval_s: float = 0.5
    algorithm: str = "mincut"
    upload_algorithm: str = "recursive-efficiency"

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise TiercutError(f"--adapt-estimator {self.estimator!r} is not known; use one of {', '.join(ESTIMATORS)}")
        if not 0 < self.alpha <= 1:
            raise TiercutError(f"--adapt-alpha {self.alpha!r} must be within (0, 1]")
        if not 0 <= self.threshold < 1:
            raise TiercutError(f"--adapt-threshold {self.threshold!r} must be within [0, 1) (0.2: a plan 20 % faster)")
        for name in ("window_s", "min_gain_s", "dwell_s", "interval_s", "probe_interval_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise TiercutError(f"adapt setting {name} is {value!r}; it must be a finite number >= 0")
        if self.window_s <= 0:
            raise TiercutError(f"--adapt-window {self.window_s!r} s must be > 0")

    def estimator_settings(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "window_s": self.window_s}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------- the estimated problem and re-planning
def estimated_problem(problem: Any, estimates: Mapping[frozenset[str], LinkEstimate]) -> Any:
    """``problem`` with each estimated link's bandwidth and latency replaced by the estimate.

    A directional link keeps its ratio of ``b -> a`` to ``a -> b`` bandwidth
    (the estimate is the ``a -> b`` figure) and takes the estimated latency
    both ways. Links without an estimate, devices, compute times, objective
    and constraints stay as they are.
    """
    def replaced(link: Any) -> Any:
        estimate = estimates.get(link.key)
        if estimate is None:
            return link
        ratio = 1.0 if link.bandwidth_bytes_per_s_ba is None else link.bandwidth_bytes_per_s_ba / link.bandwidth_bytes_per_s
        return dataclasses.replace(
            link,
            bandwidth_bytes_per_s=estimate.bandwidth_bytes_per_s,
            bandwidth_bytes_per_s_ba=None if link.bandwidth_bytes_per_s_ba is None else estimate.bandwidth_bytes_per_s * ratio,
            latency_s=estimate.latency_s,
            latency_s_ba=None,
        )

    links = tuple(replaced(link) for link in problem.links)
    routing = None if problem.routing_links is None else tuple(replaced(link) for link in problem.routing_links)
    return dataclasses.replace(problem, links=links, routing_links=routing)


def placement_key(placement: Mapping[str, str], source: str) -> tuple[tuple[str, str], ...]:
    """A placement as a hashable key: the nodes off the source, with their devices (the rest is on the source)."""
    return tuple(sorted((n, d) for n, d in placement.items() if d != source))


@dataclass(frozen=True)
class Replan:
    """One re-planning: the planner's placement on the estimated problem against the one in use.

    Attributes:
        placement: the planner's placement (every node).
        latency_s: its predicted latency on the estimated problem.
        current_latency_s: the cost model's latency of the placement in use on the same problem.
        solve_s: seconds the planner and the cost model took.
    """

    placement: Mapping[str, str]
    latency_s: float
    current_latency_s: float
    solve_s: float

    @property
    def gain(self) -> float:
        """Relative predicted gain ``1 - latency / current`` (0 when the current latency is not finite and positive)."""
        if not (math.isfinite(self.current_latency_s) and self.current_latency_s > 0):
            return 1.0 if math.isfinite(self.latency_s) else 0.0
        return 1.0 - self.latency_s / self.current_latency_s


def replan(problem: Any, estimates: Mapping[frozenset[str], LinkEstimate], current: Mapping[str, str],
           algorithm: str = "mincut") -> Replan:
    """Plan ``problem`` with its links as estimated (the registered planner ``algorithm``) and price ``current``."""
    from tiercut.cost import evaluate
    from tiercut.plan import plan as solve

    begin = time.perf_counter()
    estimated = estimated_problem(problem, estimates)
    planned = solve(estimated, algorithm)
    now = evaluate(estimated, current)
    return Replan(dict(planned.placement), float(planned.latency_s), float(now.latency_s), time.perf_counter() - begin)


# --------------------------------------------------------------------- the controller
@dataclass(frozen=True)
class Decision:
    """One decision of the controller.

    Attributes:
        at_s: when (run seconds).
        action: ``stay`` (no better plan), ``wait`` (a better plan, held for ``held_s`` < dwell), ``switch``.
        gain: the relative predicted gain.
        current_latency_s, candidate_latency_s: the predictions compared.
        held_s: how long the gain has held.
        candidate: the candidate placement's key (nodes off the source).
        solve_s: the re-planning time behind the decision.
    """

    at_s: float
    action: str
    gain: float
    current_latency_s: float
    candidate_latency_s: float
    held_s: float
    candidate: tuple[tuple[str, str], ...] = ()
    solve_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "at_s": self.at_s,
            "action": self.action,
            "gain": self.gain,
            "current_latency_s": self.current_latency_s,
            "candidate_latency_s": self.candidate_latency_s,
            "held_s": self.held_s,
            "candidate_offloaded_nodes": len(self.candidate),
            "solve_s": self.solve_s,
        }


@dataclass(eq=False)
class HysteresisController:
    """Threshold band plus dwell time (see the module doc); pure: time comes in with each call.

    Attributes:
        threshold: least relative gain.
        dwell_s: how long it must hold.
        min_gain_s: least absolute gain in seconds.
    """

    threshold: float = 0.2
    dwell_s: float = 1.0
    min_gain_s: float = 0.0
    _since_s: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 1:
            raise TiercutError(f"hysteresis threshold {self.threshold!r} must be within [0, 1)")
        if not (math.isfinite(self.dwell_s) and self.dwell_s >= 0):
            raise TiercutError(f"dwell {self.dwell_s!r} s must be a finite number >= 0")

    @classmethod
    def of(cls, settings: AdaptSettings) -> HysteresisController:
        return cls(settings.threshold, settings.dwell_s, settings.min_gain_s)

    def reset(self) -> None:
        self._since_s = None

    def decide(self, now_s: float, current_latency_s: float, candidate_latency_s: float,
               candidate: tuple[tuple[str, str], ...], current: tuple[tuple[str, str], ...],
               solve_s: float = 0.0) -> Decision:
        """Compare the candidate with the placement in use at ``now_s`` (non-decreasing across calls)."""
        if not (math.isfinite(current_latency_s) and current_latency_s > 0):
            gain = 1.0 if math.isfinite(candidate_latency_s) else 0.0
        else:
            gain = 1.0 - candidate_latency_s / current_latency_s
        better = (
            candidate != current
            and gain >= self.threshold
            and gain > 0
            and current_latency_s - candidate_latency_s >= self.min_gain_s
        )
        if not better:
            self._since_s = None
            return Decision(now_s, "stay", gain, current_latency_s, candidate_latency_s, 0.0, candidate, solve_s)
        if self._since_s is None:
            self._since_s = now_s
        held = now_s - self._since_s
        if held >= self.dwell_s:
            self._since_s = None
            return Decision(now_s, "switch", gain, current_latency_s, candidate_latency_s, held, candidate, solve_s)
        return Decision(now_s, "wait", gain, current_latency_s, candidate_latency_s, held, candidate, solve_s)


# --------------------------------------------------------------------- bandwidth schedules
@dataclass(frozen=True)
class LinkSchedule:
    """A bandwidth schedule of links over a run: link ``a``-``b`` runs at ``points[i][1]`` B/s from ``points[i][0]`` s.

    The points are the simulator's :class:`~tiercut.sim.model.BandwidthTrace`
    points (:meth:`traces`), so a run and its simulation see the same
    schedule. Rates must be > 0 (a stalled link is the simulator's only).
    """

    links: tuple[tuple[str, str, tuple[tuple[float, float], ...]], ...]

    def __post_init__(self) -> None:
        for a, b, points in self.links:
            if not points:
                raise TiercutError(f"--link-schedule for {a}-{b} has no points; write {a}-{b}=0:10MB/s,5:1MB/s")
            times = [t for t, _ in points]
            if any(not math.isfinite(t) or t < 0 for t in times) or any(y <= x for x, y in itertools.pairwise(times)):
                raise TiercutError(f"--link-schedule for {a}-{b}: times must be >= 0 and strictly increasing")
            if any(not (math.isfinite(r) and r > 0) for _, r in points):
                raise TiercutError(f"--link-schedule for {a}-{b}: every rate must be a finite number > 0 (bytes per second)")
        keys = [frozenset((a, b)) for a, b, _ in self.links]
        if len(set(keys)) != len(keys):
            raise TiercutError("--link-schedule names one link twice; give each link's points once")

    @classmethod
    def parse(cls, texts: Sequence[str]) -> LinkSchedule:
        """From ``A-B=T:RATE,T:RATE`` texts (RATE a number of B/s or with a unit: ``2MB/s``, ``16Mbit/s``)."""
        from tiercut.env.units import RATE, FieldUnit, parse_quantity

        unit = FieldUnit(RATE, "B/s")
        links = []
        for text in texts:
            name, eq, body = text.partition("=")
            a, dash, b = name.strip().partition("-")
            if not eq or not dash or not a or not b or not body.strip():
                raise TiercutError(f"--link-schedule {text!r}: write A-B=TIME:RATE,... e.g. end-edge=0:10MB/s,5:1MB/s,15:10MB/s")
            points = []
            for item in body.split(","):
                at, colon, rate = item.partition(":")
                if not colon:
                    raise TiercutError(f"--link-schedule {text!r}: point {item!r} must be TIME:RATE (seconds:bytes per second)")
                try:
                    points.append((float(at), parse_quantity(rate.strip(), unit, "rate")))
                except ValueError as exc:
                    raise TiercutError(f"--link-schedule {text!r}: {exc}") from None
            links.append((a.strip(), b.strip(), tuple(points)))
        return cls(tuple(links))

    def check_links(self, problem: Any) -> None:
        """Every scheduled link is a link of ``problem``."""
        for a, b, _ in self.links:
            if problem.link(a, b) is None:
                raise TiercutError(
                    f"--link-schedule names link {a}-{b}, which the run's problem lacks; its links: "
                    + ", ".join(f"{k.a}-{k.b}" for k in problem.links)
                )

    def rate_at(self, a: str, b: str, at_s: float) -> float | None:
        """The scheduled rate of link ``a``-``b`` at ``at_s`` (None: not scheduled, or before its first point)."""
        for x, y, points in self.links:
            if frozenset((x, y)) == frozenset((a, b)):
                rate = None
                for t, r in points:
                    if t <= at_s:
                        rate = r
                return rate
        return None

    def traces(self) -> tuple[Any, ...]:
        """The schedule as the simulator's bandwidth traces."""
        from tiercut.sim.model import BandwidthTrace

        return tuple(BandwidthTrace(a, b, points) for a, b, points in self.links)

    def changes(self) -> list[tuple[float, str, str, float]]:
        """Every (time, a, b, rate), in time order."""
        return sorted((t, a, b, r) for a, b, points in self.links for t, r in points)

    def to_dict(self) -> dict[str, Any]:
        return {"links": [{"a": a, "b": b, "points": [list(p) for p in points]} for a, b, points in self.links]}

    def start(self, t0: float, apply: Callable[[str, str, float], None], stop: threading.Event) -> threading.Thread:
        """Apply each change at ``t0 + time`` (``time.monotonic()`` clock) in a daemon thread until ``stop``."""

        def run() -> None:
            for at, a, b, rate in self.changes():
                if stop.wait(max(0.0, t0 + at - time.monotonic())):
                    return
                apply(a, b, rate)

        thread = threading.Thread(target=run, name="tiercut-link-schedule", daemon=True)
        thread.start()
        return thread


def shaper_applier(shapers: Mapping[str, Any], source: str) -> Callable[[str, str, float], None]:
    """Apply a scheduled rate to the client's token-bucket shaper of that link (peer -> its
    :class:`~tiercut.runtime.links.LinkShaper`): the client's sending direction changes rate; the workers
    keep shaping their replies at the environment's rate."""
    from tiercut.runtime.links import LinkSpec

    def apply(a: str, b: str, rate: float) -> None:
        peer = b if a == source else a if b == source else None
        shaper = shapers.get(peer) if peer is not None else None
        if shaper is None:
            return
        with shaper._lock:
            shaper.spec = LinkSpec(rate, shaper.spec.latency_s)

    return apply


__all__ = [
    "ACTIONS",
    "AdaptSettings",
    "Decision",
    "HysteresisController",
    "LinkSchedule",
    "Replan",
    "estimated_problem",
    "placement_key",
    "replan",
    "shaper_applier",
]
