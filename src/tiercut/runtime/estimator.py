"""Link estimation from the client's own transfers: bandwidth and latency per link, EWMA or windowed.

The client sees every byte it moves: each confirmed upload (one message of
the bundle's bytes, client -> server) and each query forward (the values
sent and the reply received, with the workers' compute spans inside it).
:func:`forward_samples` turns a forward into the seconds its bytes spent on
the link (the forward's wall time minus the time the peer spent computing
or forwarding further), :func:`upload_sample` an upload attempt. Probes
(:class:`~tiercut.runtime.adaptive.AdaptiveClient`) add samples on links no
query currently uses.

A sample says ``seconds = messages * latency + nbytes * g`` where ``g`` is
seconds per byte (``1 / bandwidth``), the cost model's ``latency + bytes /
bandwidth`` per message.

The **latency** is, for both estimators, the windowed minimum of the
small samples (under ``small_bytes``, where the bytes hardly matter) over
``latency_window_s`` (default 10 s), per message: BBR's ``min_rtt`` filter
(Cardwell et al., "BBR: congestion-based congestion control", ACM Queue
14(5), 2016, whose window is 10 s). Everything else in a small sample --
the worker answering a status request, the serialisation, a loaded CPU --
only adds to it, so the minimum is the estimate least biased by them.

The **bandwidth** (seconds per byte ``g``, from the samples of at least
``small_bytes`` after taking off ``messages * latency``), two estimators:

* :class:`EwmaEstimator` -- an exponentially weighted moving average, as
  TCP smooths its round-trip time (Jacobson, "Congestion avoidance and
  control", SIGCOMM'88; RFC 6298's ``SRTT``). Averaging ``g`` rather than
  the rate weights each sample by the time it took (the harmonic mean of
  rates), which is what the cost model's ``bytes / bandwidth`` needs.
  ``alpha = 0.25`` (default): a sample's weight halves every 2.4 samples and
  a step change is 90 % tracked after 8 samples -- a few queries, well
  inside a dwell of a second at tens of queries per second -- while one
  outlier moves the estimate by a quarter of its error. (RFC 6298 uses 1/8
  for RTTs sampled every round trip; samples here come one per query, so a
  faster gain keeps the reaction within the dwell.)
* :class:`WindowedEstimator` -- the median over the samples of the last
  ``window_s`` seconds, the last estimate kept when the window is empty.
  Robust to outliers (a garbage collection pause, a worker busy with an
  upload) and forgets the past completely after ``window_s`` (default 2 s:
  several samples per window at the query rates of the runtime), at the
  price of a reaction delay of about half a window.

Both start from a prior (the environment's figures of the link) and never
return a bandwidth or latency outside ``(0, inf)`` / ``[0, inf)``.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tiercut.errors import TiercutError

#: samples under this many bytes inform the latency only
DEFAULT_SMALL_BYTES = 2048
#: how long the latency's minimum filter remembers a sample (BBR's min_rtt window)
DEFAULT_LATENCY_WINDOW_S = 10.0
#: the part of a sample's time left for its bytes at least (a latency estimate larger than a sample's time)
_MIN_BYTE_SHARE = 0.1


def link_key(a: str, b: str) -> frozenset[str]:
    """The key of the link between ``a`` and ``b`` (either order), as :attr:`tiercut.env.Link.key`."""
    return frozenset((a, b))


@dataclass(frozen=True)
class LinkSample:
    """One observation of a link.

    Attributes:
        at_s: when it ended (seconds since the run started).
        nbytes: bytes that crossed the link (both directions of a forward together).
        seconds: time those bytes spent on the link.
        messages: messages that made it up (each pays the link's latency once).
    """

    at_s: float
    nbytes: int
    seconds: float
    messages: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise TiercutError(f"link sample seconds {self.seconds!r} must be a finite number >= 0")
        if self.nbytes < 0 or self.messages < 1:
            raise TiercutError(f"link sample of {self.nbytes} bytes in {self.messages} messages is not valid")


@dataclass(frozen=True)
class LinkEstimate:
    """The estimated figures of one link (both directions alike)."""

    bandwidth_bytes_per_s: float
    latency_s: float
    samples: int = 0

    def transfer_s(self, nbytes: int, messages: int = 1) -> float:
        return messages * self.latency_s + nbytes / self.bandwidth_bytes_per_s

    def to_dict(self) -> dict[str, Any]:
        return {"bandwidth_bytes_per_s": self.bandwidth_bytes_per_s, "latency_s": self.latency_s, "samples": self.samples}


class LinkEstimator(Protocol):
    """Estimates one link from its samples."""

    def observe(self, sample: LinkSample) -> None: ...

    def estimate(self, now_s: float) -> LinkEstimate: ...


def _per_byte_s(sample: LinkSample, latency_s: float) -> float:
    """Seconds per byte of a sample once ``messages * latency_s`` is taken off (at least a tenth of its time)."""
    left = max(sample.seconds - sample.messages * latency_s, _MIN_BYTE_SHARE * sample.seconds, 1e-9)
    return left / sample.nbytes


@dataclass(eq=False)
class _MinFilter:
    """The least per-message latency of the small samples of the last ``window_s`` seconds (the last minimum
    when none is that recent)."""

    value: float
    window_s: float = DEFAULT_LATENCY_WINDOW_S
    _samples: deque[tuple[float, float]] = field(default_factory=deque, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise TiercutError(f"latency window {self.window_s!r} s must be a finite number > 0")

    def observe(self, sample: LinkSample, per_byte_s: float) -> None:
        latency = max(0.0, sample.seconds - sample.nbytes * per_byte_s) / sample.messages
        while self._samples and self._samples[-1][1] >= latency:  # a monotone deque: the minimum is in front
            self._samples.pop()
        self._samples.append((sample.at_s, latency))

    def estimate(self, now_s: float) -> float:
        while self._samples and self._samples[0][0] < now_s - self.window_s:
            self._samples.popleft()
        if self._samples:
            self.value = self._samples[0][1]
        return self.value


def _check_prior(prior: LinkEstimate) -> None:
    if not (prior.bandwidth_bytes_per_s > 0 and prior.latency_s >= 0):
        raise TiercutError(f"link prior {prior} needs a bandwidth > 0 and a latency >= 0")


@dataclass(eq=False)
class EwmaEstimator:
    """Exponentially weighted moving averages of latency and seconds per byte (see the module doc).

    Attributes:
        prior: the figures before any sample (the environment's link).
        alpha: weight of a new sample, in (0, 1].
        small_bytes: samples under this many bytes inform the latency only.
        latency_window_s: the latency's minimum filter window.
    """

    prior: LinkEstimate
    alpha: float = 0.25
    small_bytes: int = DEFAULT_SMALL_BYTES
    latency_window_s: float = DEFAULT_LATENCY_WINDOW_S
    _latency: _MinFilter | None = field(default=None, init=False, repr=False)
    _per_byte_s: float = field(default=math.nan, init=False, repr=False)
    _samples: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1:
            raise TiercutError(f"EWMA alpha {self.alpha!r} must be within (0, 1]")
        _check_prior(self.prior)
        self._latency = _MinFilter(self.prior.latency_s, self.latency_window_s)
        self._per_byte_s = 1.0 / self.prior.bandwidth_bytes_per_s

    def observe(self, sample: LinkSample) -> None:
        assert self._latency is not None
        self._samples += 1
        if sample.nbytes < self.small_bytes:
            self._latency.observe(sample, self._per_byte_s)
            return
        self._per_byte_s += self.alpha * (_per_byte_s(sample, self._latency.estimate(sample.at_s)) - self._per_byte_s)

    def estimate(self, now_s: float) -> LinkEstimate:
        assert self._latency is not None
        return LinkEstimate(1.0 / self._per_byte_s, self._latency.estimate(now_s), self._samples)


@dataclass(eq=False)
class WindowedEstimator:
    """Medians over the samples of the last ``window_s`` seconds (see the module doc).

    Attributes:
        prior: the figures before any sample (the environment's link).
        window_s: how far back bandwidth samples count.
        small_bytes: samples under this many bytes inform the latency only.
        latency_window_s: the latency's minimum filter window.
        max_samples: samples kept at most (the oldest go first).
    """

    prior: LinkEstimate
    window_s: float = 2.0
    small_bytes: int = DEFAULT_SMALL_BYTES
    latency_window_s: float = DEFAULT_LATENCY_WINDOW_S
    max_samples: int = 256
    _samples: deque[LinkSample] = field(default_factory=deque, init=False, repr=False)
    _last: LinkEstimate | None = field(default=None, init=False, repr=False)
    _latency: _MinFilter | None = field(default=None, init=False, repr=False)
    _count: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise TiercutError(f"estimator window {self.window_s!r} s must be a finite number > 0")
        if self.max_samples < 1:
            raise TiercutError(f"estimator max_samples {self.max_samples} must be >= 1")
        _check_prior(self.prior)
        self._last = self.prior
        self._latency = _MinFilter(self.prior.latency_s, self.latency_window_s)

    def observe(self, sample: LinkSample) -> None:
        assert self._last is not None and self._latency is not None
        self._count += 1
        if sample.nbytes < self.small_bytes:
            self._latency.observe(sample, 1.0 / self._last.bandwidth_bytes_per_s)
            return
        self._samples.append(sample)
        while len(self._samples) > self.max_samples:
            self._samples.popleft()

    def estimate(self, now_s: float) -> LinkEstimate:
        assert self._last is not None and self._latency is not None
        while self._samples and self._samples[0].at_s < now_s - self.window_s:
            self._samples.popleft()
        latency = self._latency.estimate(now_s)
        bandwidth = self._last.bandwidth_bytes_per_s
        if self._samples:
            bandwidth = 1.0 / statistics.median(_per_byte_s(s, latency) for s in self._samples)
        self._last = LinkEstimate(bandwidth, latency, self._count)
        return self._last


#: estimator name -> (factory of prior and settings, the settings it takes)
ESTIMATORS: dict[str, tuple[Callable[..., LinkEstimator], tuple[str, ...]]] = {
    "ewma": (EwmaEstimator, ("alpha", "small_bytes", "latency_window_s")),
    "window": (WindowedEstimator, ("window_s", "small_bytes", "latency_window_s")),
}


def make_estimator(name: str, prior: LinkEstimate, **settings: Any) -> LinkEstimator:
    """The estimator registered as ``name`` starting from ``prior``, with those of ``settings`` it takes."""
    try:
        factory, takes = ESTIMATORS[name]
    except KeyError:
        raise TiercutError(f"link estimator {name!r} is not known; use one of {', '.join(ESTIMATORS)}") from None
    return factory(prior, **{k: v for k, v in settings.items() if k in takes and v is not None})


@dataclass(eq=False)
class LinkEstimates:
    """One estimator per link of a problem, each starting from the link's figures.

    ``priors``: link key -> the environment's figures (the ``a -> b``
    direction's). ``observe`` ignores links it has no prior for.
    """

    priors: Mapping[frozenset[str], LinkEstimate]
    estimator: str = "ewma"
    settings: Mapping[str, Any] = field(default_factory=dict)
    _estimators: dict[frozenset[str], LinkEstimator] = field(default_factory=dict, init=False, repr=False)
    _last_sample_s: dict[frozenset[str], float] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for key, prior in self.priors.items():
            self._estimators[key] = make_estimator(self.estimator, prior, **self.settings)

    @classmethod
    def for_problem(cls, problem: Any, estimator: str = "ewma", **settings: Any) -> LinkEstimates:
        priors = {}
        for link in problem.links:
            hop = link.direction(link.a, link.b)
            priors[link.key] = LinkEstimate(float(hop.bandwidth_bytes_per_s), float(hop.latency_s))
        return cls(priors, estimator, settings)

    def observe(self, a: str, b: str, sample: LinkSample) -> bool:
        """Feed one sample of link ``a``-``b``; False when the problem has no such link."""
        key = link_key(a, b)
        estimator = self._estimators.get(key)
        if estimator is None:
            return False
        estimator.observe(sample)
        if sample.nbytes >= self.settings.get("small_bytes", DEFAULT_SMALL_BYTES):
            self._last_sample_s[key] = max(self._last_sample_s.get(key, -math.inf), sample.at_s)
        return True

    def last_sample_s(self, a: str, b: str) -> float:
        """When link ``a``-``b``'s bandwidth was last observed (a sample of at least ``small_bytes``; -inf: never)."""
        return self._last_sample_s.get(link_key(a, b), -math.inf)

    def snapshot(self, now_s: float) -> dict[frozenset[str], LinkEstimate]:
        return {key: estimator.estimate(now_s) for key, estimator in self._estimators.items()}


# --------------------------------------------------------------------- samples from the runtime's records
@dataclass(frozen=True)
class Hop:
    """What :func:`forward_samples` needs of a span or hop record: who sent to whom, when, how many bytes."""

    kind: str  # "transfer" (a forward and its reply), "compute", "relay"
    device: str
    start_s: float
    end_s: float
    peer: str = ""
    nbytes: int = 0


def hops_of_spans(spans: Iterable[Any]) -> list[Hop]:
    """:class:`Hop` of :class:`tiercut.trace.Span` objects (a measured query's spans)."""
    return [Hop(s.kind, s.device, s.start_s, s.end_s, s.peer, int(s.nbytes or 0)) for s in spans]


def hops_of_records(records: Iterable[Any], offset_s: float = 0.0) -> list[Hop]:
    """:class:`Hop` of :class:`tiercut.runtime.route.HopRecord` objects (``time.time()`` bounds, minus ``offset_s``)."""
    kinds = {"run": "compute", "forward": "transfer", "relay": "relay"}
    return [
        Hop(kinds.get(r.kind, r.kind), r.device, r.start_s - offset_s, r.end_s - offset_s, r.peer,
            int(r.bytes_sent + r.bytes_received))
        for r in records
    ]


def forward_samples(hops: Sequence[Hop], at_s: float | None = None) -> list[tuple[str, str, LinkSample]]:
    """``(a, b, sample)`` for every forward from ``a`` to ``b`` among a query's hops.

    A forward's time covers the values going out, whatever the peer did with
    them (its compute, its own forwards) and the reply coming back; the
    peer's hops inside the forward's interval are taken off, which leaves
    the time on the link (two messages: the values and the reply). The hops'
    bounds must share one clock (one host, or synchronised hosts).
    """
    out: list[tuple[str, str, LinkSample]] = []
    slack = 1e-4
    for hop in hops:
        if hop.kind != "transfer" or not hop.peer:
            continue
        inside = sum(
            h.end_s - h.start_s
            for h in hops
            if h is not hop and h.device == hop.peer and h.start_s >= hop.start_s - slack and h.end_s <= hop.end_s + slack
        )
        seconds = max(0.0, (hop.end_s - hop.start_s) - inside)
        out.append((hop.device, hop.peer, LinkSample(hop.end_s if at_s is None else at_s, hop.nbytes, seconds, 2)))
    return out


def upload_sample(attempt: Any) -> LinkSample | None:
    """The sample of a confirmed upload attempt (:class:`tiercut.runtime.client.UploadAttempt`; None if it failed)."""
    if not attempt.ok or attempt.end_s <= attempt.start_s:
        return None
    return LinkSample(attempt.end_s, int(attempt.nbytes), attempt.end_s - attempt.start_s, 1)


__all__ = [
    "DEFAULT_LATENCY_WINDOW_S",
    "DEFAULT_SMALL_BYTES",
    "ESTIMATORS",
    "EwmaEstimator",
    "Hop",
    "LinkEstimate",
    "LinkEstimates",
    "LinkEstimator",
    "LinkSample",
    "WindowedEstimator",
    "forward_samples",
    "hops_of_records",
    "hops_of_spans",
    "link_key",
    "make_estimator",
    "upload_sample",
]
