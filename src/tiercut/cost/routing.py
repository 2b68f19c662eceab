"""Routing: the links a tensor crosses between two devices (docs/cost-model.md, "Routing").

A transfer between devices without a direct link is forwarded
store-and-forward along the path of links that minimises the tensor's own
time::

    tau(u, a, b) = min over paths a = p0 .. pk = b of  sum_i [latency(p_i, p_i+1) + out(u) / bandwidth(p_i, p_i+1)]

with each hop's figures taken in its direction of travel (a link may give
its two directions different figures, :meth:`tiercut.env.Link.direction`).
Relays only forward; they compute nothing. A pair with no path is
unreachable.

The time of a path for ``s`` bytes is ``L + s * R`` with ``L`` its summed
latency and ``R`` its summed seconds per byte (``1 / bandwidth``), so the
best path is the lower envelope of a few lines in ``s``: small tensors take
the path of least latency, large ones the path of least ``R``. For every
ordered pair :class:`Routing` keeps exactly the paths on that envelope
(:attr:`Routing.candidates`), found once per problem by a label-setting
search over (``L``, ``R``) pairs with envelope pruning (a path that is
slower than the envelope of the others for every size stays slower however
it is extended). :meth:`Routing.path` then picks, for a size, the first
candidate of least time, candidates ordered by (latency, seconds per byte,
hops, device order): the one tie-break every evaluator shares.

Per-message costs (docs/cost-model.md "Per-message costs"): every hop is one
message; it also costs ``message_s`` of its sender and of its receiver (the
devices' busy seconds per message) and its link's ``message_overhead_bytes``
over the bandwidth, so a hop of ``s`` bytes takes ``latency + message_s(src) +
message_s(dst) + (message_overhead_bytes + s) / bandwidth``: a fixed part and
a part per byte, as before (``L`` sums the fixed parts). All 0 by default.

Costs along a path (:class:`Path`): the time is the sum of the hop times;
energy charges each hop's sender its tx power and receiver its rx power for
that hop's time; money charges each hop's price per byte. The source
device's busy times on a multi-hop transfer are the hops it is an end of:
it transmits during the hops it sends (``busy_tx``) and receives during the
hops it receives (``busy_rx``, both when it relays), and is idle during the
other hops.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tiercut.env import Link, LinkDirection

#: relative slack when deciding that a path is slower than the envelope of others for every size
ENVELOPE_RTOL = 1e-12


@dataclass(frozen=True)
class Path:
    """One route from ``devices[0]`` to ``devices[-1]``.

    Attributes:
        devices: the devices in order (``len(hops) + 1``; relays in between).
        hops: each hop's figures, in its direction of travel.
        latency_s: summed fixed seconds of the hops (``L``): their latencies plus their per-message costs
            (:func:`hop_fixed_s`; the latencies alone when those are 0).
        seconds_per_byte: summed ``1 / bandwidth`` of the hops (``R``).
        price_per_byte: summed hop prices.
    """

    devices: tuple[str, ...]
    hops: tuple[LinkDirection, ...]
    latency_s: float
    seconds_per_byte: float
    price_per_byte: float
    select_latency_s: float | None = None
    select_seconds_per_byte: float | None = None
    #: each hop's fixed seconds (:func:`hop_fixed_s`); empty: the hops' latencies
    hop_fixed_s: tuple[float, ...] = ()

    @property
    def selection(self) -> tuple[float, float]:
        """(latency, seconds per byte) the path is chosen by: its own, or the nominal links' (:func:`build_routing`)."""
        return (
            self.latency_s if self.select_latency_s is None else self.select_latency_s,
            self.seconds_per_byte if self.select_seconds_per_byte is None else self.select_seconds_per_byte,
        )

    def select_seconds(self, nbytes: float) -> float:
        latency, spb = self.selection
        return latency + nbytes * spb

    @property
    def src(self) -> str:
        return self.devices[0]

    @property
    def dst(self) -> str:
        return self.devices[-1]

    @property
    def relays(self) -> tuple[str, ...]:
        """The devices that only forward (empty for a direct link)."""
        return self.devices[1:-1]

    def seconds(self, nbytes: float) -> float:
        """Store-and-forward time of ``nbytes``: ``latency_s + nbytes * seconds_per_byte``."""
        return self.latency_s + nbytes * self.seconds_per_byte

    def hop_seconds(self, nbytes: float) -> tuple[float, ...]:
        """Each hop's time for ``nbytes`` (they sum to :meth:`seconds` up to rounding)."""
        fixed = self.hop_fixed_s or tuple(h.latency_s for h in self.hops)
        return tuple(f + nbytes / h.bandwidth_bytes_per_s for f, h in zip(fixed, self.hops, strict=True))

    def fixed_seconds(self) -> tuple[float, ...]:
        """Each hop's fixed seconds (latency plus per-message costs)."""
        return self.hop_fixed_s or tuple(h.latency_s for h in self.hops)

    def to_dict(self) -> dict[str, object]:
        return {
            "devices": list(self.devices),
            "latency_s": self.latency_s,
            "seconds_per_byte": self.seconds_per_byte,
            "price_per_byte": self.price_per_byte,
        }


def hop_fixed_s(hop: LinkDirection, message_s: Mapping[str, float] | None = None) -> float:
    """The fixed seconds of one message over ``hop``: ``latency + message_s(src) + message_s(dst) +
    message_overhead_bytes / bandwidth`` (docs/cost-model.md "Per-message costs")."""
    cost = message_s or {}
    return (hop.latency_s + cost.get(hop.src, 0.0) + cost.get(hop.dst, 0.0)
            + hop.message_overhead_bytes / hop.bandwidth_bytes_per_s)


def _key(path: Path, order: dict[str, int]) -> tuple:
    return (path.latency_s, path.seconds_per_byte, len(path.hops), tuple(order[d] for d in path.devices))


def _dominated(latency: float, spb: float, envelope: Sequence[Path]) -> bool:
    """A line ``latency + s * spb`` is at or above the lower envelope of ``envelope``'s lines for every s >= 0."""
    if not envelope:
        return False

    def env(s: float) -> float:
        return min(p.latency_s + s * p.seconds_per_byte for p in envelope)

    def above(value: float, line: float) -> bool:
        return value <= line * (1 + ENVELOPE_RTOL) + 1e-300

    if not above(env(0.0), latency):
        return False
    least = min(p.seconds_per_byte for p in envelope)
    if least > spb * (1 + ENVELOPE_RTOL):
        return False  # for large sizes the new line is lower
    # the difference envelope - line is concave: its largest value is at a breakpoint (or the ends)
    for i, p in enumerate(envelope):
        for q in envelope[i + 1 :]:
            if p.seconds_per_byte == q.seconds_per_byte:
                continue
            s = (q.latency_s - p.latency_s) / (p.seconds_per_byte - q.seconds_per_byte)
            if s > 0 and math.isfinite(s) and not above(env(s), latency + s * spb):
                return False
    if least == spb or math.isclose(least, spb, rel_tol=ENVELOPE_RTOL):
        flat = min(p.latency_s for p in envelope if math.isclose(p.seconds_per_byte, least, rel_tol=ENVELOPE_RTOL))
        return above(flat, latency)
    return True


def _prune(paths: list[Path]) -> list[Path]:
    """Only the paths on the lower envelope (each the first of least time for some size)."""
    kept: list[Path] = []
    for i, p in enumerate(paths):
        others = paths[:i] + paths[i + 1 :]
        # a path tied with an earlier one everywhere (same L and R) loses to it
        earlier_twin = any(q.latency_s == p.latency_s and q.seconds_per_byte == p.seconds_per_byte for q in paths[:i])
        if earlier_twin:
            continue
        strict = [q for q in others if not (q.latency_s == p.latency_s and q.seconds_per_byte == p.seconds_per_byte)]
        if not _dominated(p.latency_s, p.seconds_per_byte, strict):
            kept.append(p)
    return kept


@dataclass(frozen=True)
class Routing:
    """The candidate paths of every ordered pair of devices over a set of links.

    Build with :func:`build_routing` (or ``problem.routing``); read with
    :meth:`path`, :meth:`seconds`, :meth:`reachable`.

    Attributes:
        devices: device names, in problem order.
        candidates: (a, b) -> the envelope paths from ``a`` to ``b``, ordered
            by (latency, seconds per byte, hops, device order); absent for
            unreachable pairs and for ``a == b``.
    """

    devices: tuple[str, ...]
    candidates: dict[tuple[str, str], tuple[Path, ...]] = field(default_factory=dict)

    def reachable(self, a: str, b: str) -> bool:
        return a == b or (a, b) in self.candidates

    def path(self, a: str, b: str, nbytes: float) -> Path | None:
        """The path a tensor of ``nbytes`` takes from ``a`` to ``b`` (None when unreachable or ``a == b``)."""
        options = self.candidates.get((a, b))
        if not options:
            return None
        best = options[0]
        best_t = best.select_seconds(nbytes)
        for p in options[1:]:
            t = p.select_seconds(nbytes)
            if t < best_t:
                best, best_t = p, t
        return best

    def seconds(self, a: str, b: str, nbytes: float) -> float:
        """tau for ``nbytes`` from ``a`` to ``b``: 0 on one device, inf when unreachable."""
        if a == b:
            return 0.0
        p = self.path(a, b, nbytes)
        return math.inf if p is None else p.seconds(nbytes)

    def paths(self) -> list[Path]:
        """Every candidate path, pairs in device order."""
        out = []
        for a in self.devices:
            for b in self.devices:
                out.extend(self.candidates.get((a, b), ()))
        return out


def build_routing(
    device_names: Iterable[str],
    links: Iterable[Link],
    select_on: Iterable[Link] | None = None,
    *,
    message_s: Mapping[str, float] | None = None,
) -> Routing:
    """The envelope paths of every ordered pair (label setting with envelope pruning, one search per source).

    With ``select_on`` (the same device pairs as ``links``, other figures),
    the paths are found and chosen on those links' figures while their costs
    are ``links``'; the multi-user equal-share model uses this to keep each
    user's nominal routes on links whose bandwidth it shares. ``message_s``:
    device -> seconds busy per message (absent: 0), part of every hop's fixed
    seconds (:func:`hop_fixed_s`).
    """
    if select_on is not None:
        actual = {link.key: link for link in links}
        nominal = build_routing(device_names, select_on, message_s=message_s)
        candidates = {}
        for pair, paths in nominal.candidates.items():
            candidates[pair] = tuple(_recost(p, actual, message_s) for p in paths)
        return Routing(nominal.devices, candidates)
    names = tuple(device_names)
    order = {d: i for i, d in enumerate(names)}
    out_hops: dict[str, list[LinkDirection]] = {d: [] for d in names}
    for link in links:
        if link.a not in order or link.b not in order:
            continue
        for hop in link.directions():
            out_hops[hop.src].append(hop)
    for hops in out_hops.values():
        hops.sort(key=lambda h: order[h.dst])
    candidates: dict[tuple[str, str], tuple[Path, ...]] = {}
    for a in names:
        labels: dict[str, list[Path]] = {d: [] for d in names}
        start = Path((a,), (), 0.0, 0.0, 0.0)
        queue: deque[Path] = deque([start])
        while queue:
            here = queue.popleft()
            v = here.dst
            if v != a and here not in labels[v]:
                continue  # pruned after it was queued
            for hop in out_hops[v]:
                w = hop.dst
                if w in here.devices:
                    continue  # a loop never helps: every hop adds time
                fixed = hop_fixed_s(hop, message_s)
                new = Path(
                    (*here.devices, w),
                    (*here.hops, hop),
                    here.latency_s + fixed,
                    here.seconds_per_byte + 1.0 / hop.bandwidth_bytes_per_s,
                    here.price_per_byte + hop.price_per_byte,
                    hop_fixed_s=(*here.fixed_seconds(), fixed) if message_s or any(
                        h.message_overhead_bytes for h in (*here.hops, hop)) else (),
                )
                existing = labels[w]
                twin = next(
                    (p for p in existing if p.latency_s == new.latency_s and p.seconds_per_byte == new.seconds_per_byte),
                    None,
                )
                if twin is not None:
                    if _key(new, order) < _key(twin, order):
                        existing.remove(twin)
                    else:
                        continue
                elif _dominated(new.latency_s, new.seconds_per_byte, existing):
                    continue
                existing.append(new)
                existing.sort(key=lambda p: _key(p, order))
                labels[w] = _prune(existing)
                if new in labels[w]:
                    queue.append(new)
        for b in names:
            if b != a and labels[b]:
                candidates[(a, b)] = tuple(sorted(labels[b], key=lambda p: _key(p, order)))
    return Routing(names, candidates)


def _recost(path: Path, links: dict[frozenset[str], Link], message_s: Mapping[str, float] | None = None) -> Path:
    """``path`` with its hops' figures from ``links``, chosen still by its own figures."""
    hops = tuple(links[frozenset((h.src, h.dst))].direction(h.src, h.dst) for h in path.hops)
    fixed = tuple(hop_fixed_s(h, message_s) for h in hops)
    return Path(
        path.devices,
        hops,
        sum(fixed),
        sum(1.0 / h.bandwidth_bytes_per_s for h in hops),
        sum(h.price_per_byte for h in hops),
        select_latency_s=path.selection[0],
        select_seconds_per_byte=path.selection[1],
        hop_fixed_s=fixed if message_s or any(h.message_overhead_bytes for h in hops) else (),
    )


__all__ = ["ENVELOPE_RTOL", "Path", "Routing", "build_routing", "hop_fixed_s"]
