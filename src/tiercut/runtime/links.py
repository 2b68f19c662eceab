"""Link emulation in the transport: a token bucket on the bytes sent plus one-way latency.

Every message a runtime process sends to another device goes through the
:class:`LinkShaper` of that direction of the link (the environment's
``bandwidth_bps``, BYTES per second, and ``latency_s``), so processes on one
machine behave like devices on the described network:

* *serialisation*: a link direction transmits at ``bandwidth_bps``; bytes are
  taken from a token bucket refilled at that rate (``burst_bytes`` of
  credit at most), in quanta of at most ``quantum_s`` seconds of the link's
  time, so concurrent flows (an upload and a query) interleave and share the
  link roughly fairly instead of one waiting behind the other's 4 MB chunk
  (the bucket's depth, ``burst_bytes``, is 0 by default: strict rate);
* *propagation*: a message is handed to gRPC ``latency_s`` after its last
  byte left, without holding the link: the next message's bytes go out
  meanwhile (a pipe, as on a real link).

The cost model's transfer time ``latency + bytes / bandwidth`` is what one
message of ``bytes`` takes on an idle link. Each direction is shaped by its
sender (a client shapes what it sends, a worker what it returns or forwards),
so the two directions are independent, like a full-duplex link.

:class:`FaultPlan` injects faults in the same place (a dropped or corrupted
message) for the fault tests.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from tiercut.errors import TiercutError

#: one quantum of link time: flows interleave at this granularity
DEFAULT_QUANTUM_S = 0.005


@dataclass(frozen=True)
class LinkSpec:
    """One direction of a link: rate in bytes per second (``math.inf``: unlimited) and one-way latency."""

    bandwidth_bps: float = math.inf
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.bandwidth_bps > 0:
            raise TiercutError(f"link bandwidth {self.bandwidth_bps!r} B/s must be > 0 (math.inf: unlimited)")
        if not (self.latency_s >= 0 and math.isfinite(self.latency_s)):
            raise TiercutError(f"link latency {self.latency_s!r} s must be a finite number >= 0")

    def transfer_s(self, nbytes: int) -> float:
        """The cost model's time for one message of ``nbytes`` on the idle link."""
        return self.latency_s + (0.0 if math.isinf(self.bandwidth_bps) else nbytes / self.bandwidth_bps)


@dataclass(eq=False)
class LinkShaper:
    """Token bucket plus delay line for one direction of a link (one per sending process).

    Attributes:
        spec: rate and latency.
        burst_bytes: depth of the bucket: bytes an idle link may send at once
            (0, the default: every byte waits its ``1 / bandwidth_bps``, the
            cost model's transfer time exactly).
        quantum_s: the longest stretch of link time one flow takes before others may go.
        bytes_sent: bytes shaped so far (statistics).
    """

    spec: LinkSpec
    burst_bytes: int = 0
    quantum_s: float = DEFAULT_QUANTUM_S
    bytes_sent: int = 0
    _free_at: float = field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def quantum_bytes(self) -> int:
        if math.isinf(self.spec.bandwidth_bps):
            return 1 << 62
        return max(1024, int(self.spec.bandwidth_bps * self.quantum_s))

    def _reserve(self, nbytes: int, now: float) -> float:
        """Reserve link time for ``nbytes``; returns when they have left (monotonic clock)."""
        with self._lock:
            self.bytes_sent += nbytes
            if math.isinf(self.spec.bandwidth_bps):
                return now
            credit_s = self.burst_bytes / self.spec.bandwidth_bps
            start = max(now - credit_s, self._free_at)
            self._free_at = start + nbytes / self.spec.bandwidth_bps
            return self._free_at

    async def transmit(self, nbytes: int) -> float:
        """Wait while ``nbytes`` are serialised on the link; returns when they would arrive (monotonic)."""
        pieces = self._pieces(nbytes)
        for delay in pieces:
            await asyncio.sleep(delay)
        return pieces.arrival_s

    def transmit_blocking(self, nbytes: int) -> float:
        """:meth:`transmit` for threads without an event loop."""
        pieces = self._pieces(nbytes)
        for delay in pieces:
            time.sleep(delay)
        return pieces.arrival_s

    def _pieces(self, nbytes: int) -> _Pieces:
        return _Pieces(self, int(nbytes))


class _Pieces:
    """``nbytes`` reserved on a link a quantum at a time: iterating yields how long to wait after each
    reservation (only positive waits); ``arrival_s`` is when the last byte arrives (monotonic)."""

    def __init__(self, link: LinkShaper, nbytes: int) -> None:
        self.link = link
        self.nbytes = nbytes
        self.arrival_s = time.monotonic() + link.spec.latency_s

    def __iter__(self) -> Iterator[float]:
        remaining = self.nbytes
        while True:
            piece = min(remaining, self.link.quantum_bytes)
            done = self.link._reserve(piece, time.monotonic())
            remaining -= piece
            self.arrival_s = done + self.link.spec.latency_s
            delay = done - time.monotonic()
            if delay > 0:
                yield delay
            if remaining <= 0:
                return


@dataclass
class FaultPlan:
    """Faults injected into messages as they are sent (tests): drop or corrupt with given probabilities.

    Attributes:
        drop_probability: chance that a message is silently not sent.
        corrupt_probability: chance that one byte of a message is flipped.
        seed: seed of the random generator (reproducible runs).
        dropped, corrupted: counts so far.
    """

    drop_probability: float = 0.0
    corrupt_probability: float = 0.0
    seed: int = 0
    dropped: int = 0
    corrupted: int = 0
    _random: random.Random | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("drop_probability", "corrupt_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise TiercutError(f"fault {name} {value!r} must be within [0, 1]")

    @property
    def active(self) -> bool:
        return self.drop_probability > 0 or self.corrupt_probability > 0

    def apply(self, message: bytes) -> bytes | None:
        """The message as it goes out: None if dropped, one byte flipped if corrupted."""
        with self._lock:
            if self._random is None:
                self._random = random.Random(self.seed)
            draw = self._random.random()
            if draw < self.drop_probability:
                self.dropped += 1
                return None
            if draw < self.drop_probability + self.corrupt_probability and message:
                self.corrupted += 1
                position = self._random.randrange(len(message))
                flipped = bytearray(message)
                flipped[position] ^= 0xFF
                return bytes(flipped)
            return message


async def shaped(
    messages: Iterable[bytes],
    shaper: LinkShaper | None,
    faults: FaultPlan | None = None,
) -> AsyncIterator[bytes]:
    """Yield ``messages`` as the far end of the link would receive them.

    Transmission of the next message overlaps the previous one's latency (a
    delay line, not a stop-and-wait).
    """
    if shaper is None and (faults is None or not faults.active):
        for message in messages:
            yield message
        return
    queue: asyncio.Queue[tuple[bytes | None, float] | None] = asyncio.Queue()

    async def transmit() -> None:
        try:
            for message in messages:
                arrives = time.monotonic() if shaper is None else await shaper.transmit(len(message))
                out = faults.apply(message) if faults is not None else message
                await queue.put((out, arrives))
        finally:
            await queue.put(None)

    sender = asyncio.ensure_future(transmit())
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            message, arrives = item
            delay = arrives - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if message is not None:
                yield message
        await sender
    finally:
        if not sender.done():
            sender.cancel()


@dataclass(eq=False)
class LinkTable:
    """The shapers of one device's outgoing links, from an environment.

    ``shaper(peer)`` is the shaper of the link from this device to ``peer``
    (None when the environment has no such link or emulation is off: sent
    unshaped).
    """

    device: str
    specs: Mapping[str, LinkSpec]
    _shapers: dict[str, LinkShaper] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_environment(cls, environment: object, device: str, *, bandwidth_scale: float = 1.0) -> LinkTable:
        """Outgoing links of ``device`` in a :class:`~tiercut.env.Environment` (bandwidths times ``bandwidth_scale``),
        each in its ``device -> peer`` direction's figures (a directional link sends slower one way)."""
        specs: dict[str, LinkSpec] = {}
        for link in getattr(environment, "links", ()):
            if device not in (link.a, link.b):
                continue
            peer = link.b if link.a == device else link.a
            hop = link.direction(device, peer)
            specs[peer] = LinkSpec(float(hop.bandwidth_bytes_per_s) * bandwidth_scale, float(hop.latency_s))
        return cls(device, specs)

    def shaper(self, peer: str) -> LinkShaper | None:
        spec = self.specs.get(peer)
        if spec is None:
            return None
        shaper = self._shapers.get(peer)
        if shaper is None:
            shaper = self._shapers[peer] = LinkShaper(spec)
        return shaper


__all__ = ["DEFAULT_QUANTUM_S", "FaultPlan", "LinkShaper", "LinkSpec", "LinkTable", "shaped"]
