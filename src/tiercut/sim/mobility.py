"""Mobility: users moving between edge servers' coverage areas, and what their wireless link is meanwhile.

The model (every figure below is a default the scenario may change):

- **Sites.** Each edge server that users may reach over the air stands at a
  point ``(x_m, y_m)``; its coverage area is its Voronoi cell: a user is
  attached to the nearest site (the strongest signal under one path-loss
  law). A **hand-over** is the moment the nearest site changes; it takes
  effect at the next mobility step (``step_s``).
- **Movement.** A user follows a :class:`WaypointPath` (a trace of
  ``(t_s, x_m, y_m)`` points, straight lines at constant speed between
  them), or the random waypoint model (:class:`RandomWaypoint`: pick a
  point uniformly in the area and a speed uniformly in a range, walk
  there, pause, repeat; Johnson and Maltz, "Dynamic Source Routing in Ad
  Hoc Wireless Networks", Mobile Computing 1996, as surveyed by Camp,
  Boleng and Davies, "A Survey of Mobility Models for Ad Hoc Network
  Research", WCMC 2002), seeded. Or an :class:`AttachmentTrace` states the
  attachment and the link's bandwidth directly, ``(t_s, server,
  bytes_per_s[, latency_s])`` piecewise constant, with no geometry.
- **Link rate.** The uplink/downlink between a user's client and its site is
  one channel whose rate is the Shannon capacity of the link budget
  (:class:`ShannonRadio`): ``W * log2(1 + SNR)`` bits/s with
  ``SNR = P_tx - PL(d) - (N0 + 10 log10 W + NF)`` in dB and the 3GPP
  macro-cell path loss ``PL(d) = 128.1 + 37.6 log10(d / 1 km)`` dB (3GPP TR
  36.814 Table A.2.1.1-2, as quoted e.g. in the simulation table of
  https://www.nature.com/articles/s41598-025-96272-4), ``W = 20 MHz`` (the
  largest LTE carrier, 3GPP TS 36.101), ``P_tx = 23 dBm`` (LTE UE power
  class 3, 3GPP TS 36.101; written from memory), thermal noise
  ``N0 = -174 dBm/Hz`` (kT at 290 K) and a receiver noise figure of
  ``9 dB`` (assumed: a common simulation value). Shannon capacity is an
  upper bound real radios do not reach; ``efficiency`` scales it (default
  1, assumed). The rate is sampled every ``step_s`` and held piecewise
  constant in between, exactly as a bandwidth trace
  (:class:`tiercut.sim.BandwidthTrace`). The link's latency is the
  environment's client-site link latency, or ``radio.latency_s``, held
  constant (assumed: propagation over 1 km adds 3.3 us); an attachment
  trace may state it per point.
- **Backhaul.** Sites reach each other over the environment's links (or a
  full mesh of ``backhaul`` links the mobility section adds): a placement
  whose partitions sit on another site than the attached one is reached
  through the attached site, store-and-forward, as the cost model routes
  any transfer (docs/cost-model.md "Routing"); PerDNN's proactive uploads
  travel this way too.
- **What happens at a hand-over.** A query or a partition already on the
  old link finishes there (make-before-break, assumed); everything started
  afterwards uses the new site's link. What a strategy does about the
  partitions is :mod:`tiercut.sim.strategies`.

Everything here is plain frozen data plus pure functions of it: the
simulator (:mod:`tiercut.sim.mobile`) turns it into a process.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from tiercut.env.types import Link
from tiercut.errors import TiercutError
from tiercut.problem import Problem


@dataclass(frozen=True)
class Site:
    """An edge server's antenna: where it stands (metres)."""

    server: str
    x_m: float
    y_m: float


@dataclass(frozen=True)
class WaypointPath:
    """Positions over time: straight lines at constant speed between ``(t_s, x_m, y_m)`` points.

    Before the first point the user stands at it, after the last at the last.
    """

    points: tuple[tuple[float, float, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise TiercutError("a waypoint path has no points; give [[t_s, x_m, y_m], ...]")
        times = [p[0] for p in self.points]
        if any(not math.isfinite(v) for p in self.points for v in p):
            raise TiercutError("a waypoint path's times and coordinates must be finite numbers")
        if times[0] < 0 or any(b <= a for a, b in itertools.pairwise(times)):
            raise TiercutError("a waypoint path's times must be >= 0 and strictly increasing")

    def _segment(self, t: float) -> int:
        points = self.points
        lo, hi = 0, len(points) - 1
        while lo < hi:  # the last point at or before t
            mid = (lo + hi + 1) // 2
            if points[mid][0] <= t:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def position(self, t: float) -> tuple[float, float]:
        """``(x_m, y_m)`` at time ``t``."""
        points = self.points
        if t <= points[0][0]:
            return points[0][1], points[0][2]
        i = self._segment(t)
        if i == len(points) - 1:
            return points[-1][1], points[-1][2]
        (t0, x0, y0), (t1, x1, y1) = points[i], points[i + 1]
        f = (t - t0) / (t1 - t0)
        return x0 + f * (x1 - x0), y0 + f * (y1 - y0)

    def velocity(self, t: float) -> tuple[float, float]:
        """``(vx, vy)`` in m/s at time ``t`` (the current segment's; 0 before the first and after the last point)."""
        points = self.points
        if t < points[0][0] or t >= points[-1][0]:
            return 0.0, 0.0
        i = self._segment(t)
        (t0, x0, y0), (t1, x1, y1) = points[i], points[i + 1]
        return (x1 - x0) / (t1 - t0), (y1 - y0) / (t1 - t0)


@dataclass(frozen=True)
class RandomWaypoint:
    """The random waypoint model (Johnson and Maltz 1996; Camp, Boleng and Davies 2002), seeded.

    Starting at ``start`` (default: a uniform point), the user picks a
    destination uniformly in the ``width_m`` x ``height_m`` area and a speed
    uniformly in ``speed_mps``, walks there in a straight line, pauses a
    uniform time in ``pause_s``, and repeats.
    """

    width_m: float
    height_m: float
    speed_mps: tuple[float, float] = (1.0, 2.0)
    pause_s: tuple[float, float] = (0.0, 0.0)
    seed: int = 0
    start: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not (self.width_m > 0 and self.height_m > 0 and math.isfinite(self.width_m) and math.isfinite(self.height_m)):
            raise TiercutError("random waypoint: width_m and height_m must be finite numbers > 0")
        lo, hi = self.speed_mps
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise TiercutError(f"random waypoint: speed_mps {list(self.speed_mps)} must be [min, max] with 0 < min <= max")
        lo, hi = self.pause_s
        if not (0 <= lo <= hi and math.isfinite(hi)):
            raise TiercutError(f"random waypoint: pause_s {list(self.pause_s)} must be [min, max] with 0 <= min <= max")

    def path(self, duration_s: float) -> WaypointPath:
        """The seeded walk as a :class:`WaypointPath` covering ``[0, duration_s]``."""
        rng = random.Random(self.seed)
        x, y = self.start if self.start is not None else (rng.uniform(0, self.width_m), rng.uniform(0, self.height_m))
        t = 0.0
        points = [(t, x, y)]
        while t < duration_s:
            nx, ny = rng.uniform(0, self.width_m), rng.uniform(0, self.height_m)
            speed = rng.uniform(*self.speed_mps)
            t += max(math.hypot(nx - x, ny - y) / speed, 1e-6)
            x, y = nx, ny
            points.append((t, x, y))
            pause = rng.uniform(*self.pause_s)
            if pause > 0:
                t += pause
                points.append((t, x, y))
        return WaypointPath(tuple(points))


@dataclass(frozen=True)
class AttachmentTrace:
    """The attachment and the link as a trace states them: from ``t_s`` on, ``server`` at ``bytes_per_s``.

    A point may give a fourth figure, the link's one-way latency in seconds
    from then on (absent: the environment's client-site latency, or
    ``radio.latency_s``).
    """

    points: tuple[tuple[float, str, float] | tuple[float, str, float, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise TiercutError("an attachment trace has no points; give [[t_s, server, bytes_per_s], ...]")
        times = [p[0] for p in self.points]
        if times[0] != 0 or any(b <= a for a, b in itertools.pairwise(times)):
            raise TiercutError("an attachment trace starts at t_s 0 and its times increase strictly")
        if any(not (math.isfinite(p[2]) and p[2] > 0) for p in self.points):
            raise TiercutError("an attachment trace's bytes_per_s must be finite numbers > 0")
        if any(len(p) > 3 and not (math.isfinite(p[3]) and p[3] >= 0) for p in self.points):  # type: ignore[misc]
            raise TiercutError("an attachment trace's latency_s (a point's 4th figure) must be a finite number >= 0")


Movement = WaypointPath | RandomWaypoint | AttachmentTrace


@dataclass(frozen=True)
class ShannonRadio:
    """The client-site link rate as a function of distance (module docstring: the figures and their sources).

    Attributes:
        bandwidth_hz: channel width ``W``.
        tx_power_dbm: transmit power.
        noise_dbm_per_hz: thermal noise density ``N0``.
        noise_figure_db: receiver noise figure.
        path_loss_db_at_1km, path_loss_db_per_decade: ``PL(d) = a + b log10(d / 1 km)``.
        min_distance_m: distances below this count as this (the law's near-field limit).
        efficiency: fraction of the Shannon capacity achieved.
        max_bytes_per_s: a cap (None: none).
        latency_s: the link's latency when the environment has no client-site link.
    """

    bandwidth_hz: float = 20e6
    tx_power_dbm: float = 23.0
    noise_dbm_per_hz: float = -174.0
    noise_figure_db: float = 9.0
    path_loss_db_at_1km: float = 128.1
    path_loss_db_per_decade: float = 37.6
    min_distance_m: float = 10.0
    efficiency: float = 1.0
    max_bytes_per_s: float | None = None
    latency_s: float = 0.01

    def __post_init__(self) -> None:
        for name in ("bandwidth_hz", "min_distance_m", "efficiency"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise TiercutError(f"radio {name} {value!r} must be a finite number > 0")
        if self.max_bytes_per_s is not None and not (self.max_bytes_per_s > 0 and math.isfinite(self.max_bytes_per_s)):
            raise TiercutError(f"radio max_bytes_per_s {self.max_bytes_per_s!r} must be a finite number > 0")
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise TiercutError(f"radio latency_s {self.latency_s!r} must be a finite number >= 0")

    def snr_db(self, distance_m: float) -> float:
        d_km = max(distance_m, self.min_distance_m) / 1000.0
        path_loss = self.path_loss_db_at_1km + self.path_loss_db_per_decade * math.log10(d_km)
        noise = self.noise_dbm_per_hz + 10.0 * math.log10(self.bandwidth_hz) + self.noise_figure_db
        return self.tx_power_dbm - path_loss - noise

    def bytes_per_s(self, distance_m: float) -> float:
        """The link's rate at ``distance_m`` from the site, bytes per second (> 0)."""
        snr = 10.0 ** (self.snr_db(distance_m) / 10.0)
        rate = self.efficiency * self.bandwidth_hz * math.log2(1.0 + snr) / 8.0
        rate = max(rate, 1.0)  # never 0: a link that stops forever would stall its transfers
        return rate if self.max_bytes_per_s is None else min(rate, self.max_bytes_per_s)


@dataclass(frozen=True)
class Backhaul:
    """The wired links the mobility section adds between sites the environment does not join (bytes/s, s)."""

    bandwidth_bytes_per_s: float
    latency_s: float = 0.0


#: how the proactive strategy predicts the next site.
PREDICTORS = ("heading", "markov")


@dataclass(frozen=True)
class Mobility:
    """The mobility of a simulation: sites, every user's movement, the radio and the hand-over figures.

    Attributes:
        sites: where the edge servers reachable over the air stand.
        users: user -> its movement (every simulated user needs one).
        radio: the distance -> rate law (:class:`ShannonRadio`).
        step_s: how often positions are sampled (rates piecewise constant in between).
        window_s: the window after a hand-over whose queries count as "around the hand-over".
        lookahead_s: how far ahead the heading predictor extrapolates.
        predictor: ``heading`` (extrapolate the current velocity ``lookahead_s``; users with a
            path) or ``markov`` (the most frequent successor of the current site in the user's
            past hand-overs; first-order Markov location prediction, Song, Kotz, Jain and He,
            "Evaluating location predictors with extensive Wi-Fi mobility data", INFOCOM 2004).
            Users with an :class:`AttachmentTrace` always use ``markov``.
        backhaul: links added between sites no environment link joins (None: add none).
    """

    sites: tuple[Site, ...]
    users: Mapping[str, Movement]
    radio: ShannonRadio = field(default_factory=ShannonRadio)
    step_s: float = 1.0
    window_s: float = 5.0
    lookahead_s: float = 10.0
    predictor: str = "heading"
    backhaul: Backhaul | None = None

    def __post_init__(self) -> None:
        if not self.sites:
            raise TiercutError("mobility needs at least one site: [{server, x_m, y_m}, ...]")
        names = [s.server for s in self.sites]
        if len(set(names)) != len(names):
            raise TiercutError("mobility: two sites name the same server; keep one")
        for name in ("step_s", "window_s", "lookahead_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise TiercutError(f"mobility {name} {value!r} must be a finite number > 0")
        if self.predictor not in PREDICTORS:
            raise TiercutError(f"mobility predictor {self.predictor!r} is not known; use {' or '.join(PREDICTORS)}")
        for user, movement in self.users.items():
            if isinstance(movement, AttachmentTrace):
                for point in movement.points:
                    server = point[1]
                    if server not in names:
                        raise TiercutError(f"mobility of user {user!r}: server {server!r} is not a site; sites are "
                                           f"{', '.join(names)}")  # fmt: skip

    @property
    def servers(self) -> list[str]:
        return [s.server for s in self.sites]

    def nearest(self, x: float, y: float) -> tuple[str, float]:
        """(the nearest site's server, its distance in metres); ties go to the site listed first."""
        best = min(self.sites, key=lambda s: math.hypot(s.x_m - x, s.y_m - y))
        return best.server, math.hypot(best.x_m - x, best.y_m - y)

    def path(self, user: str, duration_s: float) -> WaypointPath | None:
        """The user's path over ``[0, duration_s]`` (None for an attachment trace)."""
        movement = self.users[user]
        if isinstance(movement, RandomWaypoint):
            return movement.path(duration_s)
        return movement if isinstance(movement, WaypointPath) else None


@dataclass(frozen=True, slots=True)
class LinkSample:
    """From ``t_s`` on (until the next sample) the user is attached to ``server`` at ``bandwidth_bytes_per_s``
    (and ``latency_s``; None: the link's own)."""

    t_s: float
    server: str
    bandwidth_bytes_per_s: float
    latency_s: float | None = None


def link_timeline(mobility: Mobility, user: str, duration_s: float) -> tuple[LinkSample, ...]:
    """The user's attachment and link rate over ``[0, duration_s]``, piecewise constant, one sample per change."""
    if user not in mobility.users:
        raise TiercutError(f"mobility gives no movement for user {user!r}; give every user one")
    movement = mobility.users[user]
    samples: list[LinkSample] = []
    if isinstance(movement, AttachmentTrace):
        samples = [LinkSample(float(p[0]), p[1], float(p[2]), float(p[3]) if len(p) > 3 else None)  # type: ignore[misc]
                   for p in movement.points if p[0] < duration_s]  # fmt: skip
    else:
        path = mobility.path(user, duration_s)
        assert path is not None
        steps = max(1, math.ceil(duration_s / mobility.step_s))
        for k in range(steps):
            t = k * mobility.step_s
            server, distance = mobility.nearest(*path.position(t))
            rate = mobility.radio.bytes_per_s(distance)
            if not samples or samples[-1].server != server or samples[-1].bandwidth_bytes_per_s != rate:
                samples.append(LinkSample(t, server, rate))
    return tuple(samples)


@dataclass(frozen=True, slots=True)
class Handover:
    """A user's attachment moving from ``old`` to ``new`` at ``t_s``."""

    user: str
    t_s: float
    old: str
    new: str

    def to_dict(self) -> dict[str, object]:
        return {"user": self.user, "t_s": self.t_s, "old": self.old, "new": self.new}


def handovers(user: str, timeline: tuple[LinkSample, ...]) -> list[Handover]:
    """The hand-overs of a timeline (where the server changes)."""
    return [Handover(user, b.t_s, a.server, b.server) for a, b in itertools.pairwise(timeline)
            if a.server != b.server]  # fmt: skip


def predict_heading(mobility: Mobility, path: WaypointPath, t: float) -> str | None:
    """The next site the user's current heading leads to within ``lookahead_s`` (None: none, or standing still).

    Extrapolates the velocity at ``t`` in a straight line (it does not read
    the path's future turns: the prediction is what the user's motion so
    far shows, and can be wrong).
    """
    x, y = path.position(t)
    vx, vy = path.velocity(t)
    if vx == 0.0 and vy == 0.0:
        return None
    here, _ = mobility.nearest(x, y)
    n = max(1, math.ceil(mobility.lookahead_s / mobility.step_s))
    for k in range(1, n + 1):
        dt = k * mobility.lookahead_s / n
        server, _ = mobility.nearest(x + vx * dt, y + vy * dt)
        if server != here:
            return server
    return None


def predict_markov(history: list[Handover], current: str) -> str | None:
    """The most frequent successor of ``current`` in ``history`` (ties: the most recent); None without history."""
    counts: dict[str, tuple[int, int]] = {}
    for i, h in enumerate(history):
        if h.old == current:
            n, _ = counts.get(h.new, (0, 0))
            counts[h.new] = (n + 1, i)
    if not counts:
        return None
    return max(counts, key=lambda s: counts[s])


# ---------------------------------------------------------------- problems
def mobile_problem(problem: Problem, mobility: Mobility) -> Problem:
    """``problem`` with a wireless link from its client to every site and the backhaul between sites.

    The client's links to sites keep the environment's latency (else
    ``radio.latency_s``); their bandwidth here is a placeholder the run
    replaces (the simulator sets each link's rate from the timeline).
    Sites no path of links joins get ``mobility.backhaul`` links, or the
    one-line error asking for them.
    """
    client = problem.source
    for server in mobility.servers:
        if server not in problem.device_names:
            raise TiercutError(f"mobility site {server!r} is not a device of user problem {problem.name or client!r}")
    sites = set(mobility.servers)
    links = []
    for link in problem.links:
        ends = {link.a, link.b}
        if client in ends and ends & sites:
            continue  # replaced by the wireless link below
        links.append(link)
    for server in mobility.servers:
        known = problem.link(client, server)
        latency = known.latency_s if known is not None else mobility.radio.latency_s
        links.append(Link(client, server, 1.0, latency))
    have = {frozenset((k.a, k.b)) for k in links}
    if mobility.backhaul is not None:
        for i, a in enumerate(mobility.servers):
            for b in mobility.servers[i + 1 :]:
                if frozenset((a, b)) not in have:
                    links.append(Link(a, b, mobility.backhaul.bandwidth_bytes_per_s, mobility.backhaul.latency_s))
    out = replace(problem, links=tuple(links), routing_links=None)
    wired = attached_problem(out, mobility.servers[0], 1.0, mobility)
    for server in mobility.servers[1:]:
        if not wired.reachable(mobility.servers[0], server):
            raise TiercutError(
                f"mobility: sites {mobility.servers[0]!r} and {server!r} are joined by no links; give the "
                "environment links between them or mobility backhaul: {bandwidth_bytes_per_s, latency_s}"
            )
    return out


def attached_problem(
    problem: Problem, server: str, bandwidth_bytes_per_s: float, mobility: Mobility, latency_s: float | None = None
) -> Problem:
    """The mobile ``problem`` while its client is attached to ``server`` at ``bandwidth_bytes_per_s``.

    The client's only wireless link is the one to ``server`` (with that
    rate, and ``latency_s`` when given); the other sites are reached
    through it and the backhaul.
    """
    client = problem.source
    sites = set(mobility.servers)
    links = []
    for link in problem.links:
        ends = {link.a, link.b}
        if client in ends and ends & sites:
            if server in ends:
                latency = link.latency_s if latency_s is None else float(latency_s)
                links.append(replace(link, bandwidth_bytes_per_s=float(bandwidth_bytes_per_s), latency_s=latency))
            continue
        links.append(link)
    return replace(problem, links=tuple(links), routing_links=None)


__all__ = [
    "PREDICTORS",
    "AttachmentTrace",
    "Backhaul",
    "Handover",
    "LinkSample",
    "Mobility",
    "Movement",
    "RandomWaypoint",
    "ShannonRadio",
    "Site",
    "WaypointPath",
    "attached_problem",
    "handovers",
    "link_timeline",
    "mobile_problem",
    "predict_heading",
    "predict_markov",
]
