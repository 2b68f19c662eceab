"""The simulator's core: a counting SimPy environment and shared resources.

Event granularity is chosen for speed: a server or a link is one
:class:`SharedResource` whose jobs (a query's run of layers on a device, a
tensor or a partition on a link) complete at times recomputed only when a
job arrives, a job leaves or the rate changes -- never per byte or per
layer. Processor sharing uses virtual time: with ``n`` jobs and rate ``r``
every job attains service at ``r / n``; a job of ``w`` units that entered
when the virtual clock read ``V`` leaves when it reads ``V + w``, so one
timer for the earliest such job is all that is scheduled (stale timers are
ignored by a generation number). A server with ``n`` jobs is thus
``n`` times slower for each, the equal share of DESIGN.md's analytic model
made dynamic; a link shares its bandwidth equally among the transfers on it
(max-min fair on one link).

Units: a compute resource serves seconds of work at rate 1 (a job of
``c(v, d)`` seconds alone takes ``c(v, d)``); a link serves bytes at
its bandwidth (bytes per second); a symmetric link is one resource both directions share, a
directional link one resource per direction (:func:`tiercut.sim.program.channel_key`).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

import simpy
from simpy.core import NORMAL

from tiercut.errors import TiercutError

#: the scheduling disciplines a resource can have.
DISCIPLINES = ("ps", "fifo")

Callback = Callable[[], None]


class _Call:
    """A bare timer event: what :meth:`simpy.Environment.step` needs of an event, nothing more."""

    __slots__ = ("_ok", "_value", "callbacks")

    def __init__(self, callback: Callable[[Any], None], value: Any) -> None:
        self.callbacks: list[Callable[[Any], None]] | None = [callback]
        self._ok = True
        self._value = value


class SimEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it schedules (for events/s).

    :meth:`call_later` schedules a bare timer (one object, one heap push) for
    the resources' completion timers and link latencies, the bulk of the
    events; processes use SimPy's own events as usual.
    """

    def __init__(self, initial_time: float = 0.0) -> None:
        super().__init__(initial_time)
        self.events_scheduled = 0

    def schedule(self, event: simpy.events.Event, priority: int = NORMAL, delay: float = 0) -> None:
        self.events_scheduled += 1
        heapq.heappush(self._queue, (self._now + delay, priority, next(self._eid), event))

    def call_later(self, delay: float, callback: Callable[[Any], None], value: Any = None) -> None:
        """Call ``callback(event)`` after ``delay`` simulated seconds (``event._value`` is ``value``)."""
        self.events_scheduled += 1
        heapq.heappush(self._queue, (self._now + delay, NORMAL, next(self._eid), _Call(callback, value)))


class SharedResource:
    """Work served at ``rate`` units per second, shared by its jobs (``ps``) or one at a time (``fifo``).

    :meth:`submit` takes an amount and a callback called (with no
    arguments) when the job completes; :meth:`set_rate` changes the rate at
    the current simulated time (bandwidth traces). A rate of 0 stalls every
    job until the rate rises again.
    """

    __slots__ = (
        "_fifo",
        "_gen",
        "_heap",
        "_last",
        "_queue",
        "_seq",
        "_virtual",
        "busy_s",
        "completed",
        "discipline",
        "env",
        "name",
        "rate",
        "served",
    )

    def __init__(self, env: SimEnvironment, name: str, rate: float, discipline: str = "ps") -> None:
        if discipline not in DISCIPLINES:
            raise TiercutError(f"resource {name!r}: discipline {discipline!r} is not known; use ps or fifo")
        if not rate >= 0:
            raise TiercutError(f"resource {name!r}: rate {rate!r} must be >= 0")
        self.env = env
        self.name = name
        self.rate = float(rate)
        self.discipline = discipline
        self._fifo = discipline == "fifo"
        self._heap: list[tuple[float, int, Callback]] = []  # ps: (virtual finish, seq, callback)
        self._queue: deque[list[Any]] = deque()  # fifo: [remaining, callback]
        self._virtual = 0.0
        self._last = 0.0
        self._gen = 0
        self._seq = itertools.count()
        self.served = 0.0  # units served (work seconds or bytes)
        self.completed = 0
        self.busy_s = 0.0  # time with at least one job

    # ----------------------------------------------------------- state
    @property
    def n_jobs(self) -> int:
        return len(self._queue) if self._fifo else len(self._heap)

    def _advance(self) -> None:
        now = self.env._now
        elapsed = now - self._last
        self._last = now
        if elapsed <= 0.0:
            return
        if self._fifo:
            if self._queue:
                self.busy_s += elapsed
                if self.rate > 0.0:
                    done = elapsed * self.rate
                    self._queue[0][0] -= done
                    self.served += done
        else:
            n = len(self._heap)
            if n:
                self.busy_s += elapsed
                if self.rate > 0.0:
                    self._virtual += elapsed * self.rate / n
                    self.served += elapsed * self.rate

    def _arm(self) -> None:
        self._gen += 1
        if self.rate <= 0.0:
            return
        if self._fifo:
            if not self._queue:
                return
            delay = self._queue[0][0] / self.rate
        else:
            if not self._heap:
                return
            delay = (self._heap[0][0] - self._virtual) * len(self._heap) / self.rate
        if delay < 0.0:
            delay = 0.0
        self.env.call_later(delay, self._fire, self._gen)

    def _fire(self, event: Any) -> None:
        if event._value != self._gen:
            return  # a stale timer: the state changed after it was armed
        self._advance()
        if self._fifo:
            _, callback = self._queue.popleft()
            self.completed += 1
            self._arm()
            callback()
            return
        heap = self._heap
        finish, _, callback = heapq.heappop(heap)
        self._virtual = finish  # the armed job is done by construction
        done = [callback]
        while heap and heap[0][0] <= finish:
            done.append(heapq.heappop(heap)[2])
        if not heap:
            self._virtual = 0.0
        self.completed += len(done)
        self._arm()
        for cb in done:
            cb()

    # ----------------------------------------------------------- API
    def submit(self, amount: float, callback: Callback) -> None:
        """Start a job of ``amount`` units; ``callback()`` runs when it completes."""
        self._advance()
        if self._fifo:
            self._queue.append([float(amount), callback])
            if len(self._queue) == 1:
                self._arm()
            return
        heapq.heappush(self._heap, (self._virtual + amount, next(self._seq), callback))
        self._arm()

    def set_rate(self, rate: float) -> None:
        """Change the rate from now on (jobs keep the service they attained)."""
        if not rate >= 0:
            raise TiercutError(f"resource {self.name!r}: rate {rate!r} must be >= 0")
        self._advance()
        self.rate = float(rate)
        self._arm()

    def event(self, amount: float) -> simpy.events.Event:
        """A SimPy event that succeeds when a job of ``amount`` units completes (for generator processes)."""
        done = simpy.Event(self.env)
        self.submit(amount, done.succeed)
        return done


def delay(env: SimEnvironment, seconds: float, callback: Callback) -> None:
    """Call ``callback()`` after ``seconds`` of simulated time (a pure delay: link latency)."""
    env.call_later(seconds, lambda _event: callback())


__all__ = ["DISCIPLINES", "SharedResource", "SimEnvironment", "delay"]
