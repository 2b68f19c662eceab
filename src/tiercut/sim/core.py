"""The simulator's core: a small typed event loop and the shared resources.

**Why our own event loop and not SimPy.** The simulator used to push onto
SimPy's private ``_queue``/``_eid``, read ``env._now`` and imitate SimPy
events, which tied it to SimPy internals that ``simpy>=4.1,<5`` does not
promise. Through SimPy's public API only (``env.timeout`` with a callback
appended to ``event.callbacks``, ``env.process``, ``env.now``), every timer
becomes a full SimPy event object. ``benchmarks/simulator.py`` runs the same
scenarios on both loops (same events, same simulated outcome; figures, CPU
and machine load in ``benchmarks/results/simulator.json``). Measured on this
project's 2-core machine: the public-API SimPy loop takes about 1.3x the CPU
time of this loop (interleaved runs of a 200-user scenario, 261,910 events:
1.80 s against 1.35 s, load average 12-16), and 1.46x its CPU time on the
1,000-user x 100-server x 10-minute scenario (26.0 s against 17.9 s; 2.0x
the wall time, 56.7 s against 27.8 s, in a run at load average 8); this loop also uses about 30 % less CPU than the former
engine on SimPy's private queue, which made about 250,000 events/s on a
quiet machine. The issue's floors (250,000 events/s, the large scenario
under 15 s) leave no room for SimPy's per-event overhead. The decision, by
measurement: own the core openly (a binary heap of ``(time, sequence,
callback, args)`` entries plus one-shot :class:`Event` objects that
generator processes yield, as in SimPy; about 150 typed lines); the simulator
does not use SimPy (``tiercut.exits.simulate``, a small FIFO model, does, through
its public API). The model above it still reads like the
system it simulates: users, uploads and bandwidth traces are generator
processes that ``yield env.timeout(...)`` and ``yield resource.event(...)``.

Event granularity is chosen for speed: a server or a link is one
:class:`SharedResource` whose jobs (a query's run of layers on a device, a
tensor or a partition on a link) complete at times recomputed only when a
job arrives, a job leaves or the rate changes -- never per byte or per
layer. Processor sharing uses virtual time: with ``n`` jobs and rate ``r``
every job attains service at ``r / n``; a job of ``w`` units that entered
when the virtual clock read ``V`` leaves when it reads ``V + w``, so one
timer for the earliest such job is all that is scheduled (stale timers are
ignored by a generation number). A job may carry a weight (generalised
processor sharing, Parekh and Gallager, IEEE/ACM ToN 1(3), 1993): with
weights ``w_j`` job ``j`` attains ``r w_j / sum w``, so the virtual clock runs at
``r / sum w`` and a job of ``w`` units and weight ``w_j`` leaves at ``V + w / w_j``
(a multi-user plan's resource shares; weight 1 for every job is the plain
equal share). A server with ``n`` jobs is thus
``n`` times slower for each, the equal share of docs/DESIGN.md's analytic model
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
import math
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, Protocol

from tiercut.errors import TiercutError

#: the scheduling disciplines a resource can have.
DISCIPLINES = ("ps", "fifo")

Callback = Callable[[], None]


#: a simulated process: a generator that yields what it waits for.
ProcessGenerator = Generator[Any, Any, None]


class EventLoop(Protocol):
    """What the simulator needs of an event loop (:class:`SimEnvironment`; the benchmark's SimPy adapter).

    ``now`` is the simulated time in seconds; ``events`` counts what was
    scheduled (timers, timeouts, event successes, process starts) for the
    events/s figure.
    """

    now: float
    events: int

    def schedule(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        """Call ``callback(*args)`` after ``delay`` simulated seconds."""

    def timeout(self, delay: float) -> Any:
        """An event a process yields to wait ``delay`` seconds."""

    def event(self) -> Any:
        """A one-shot event: processes yield it, ``succeed()`` wakes them."""

    def process(self, generator: ProcessGenerator) -> None:
        """Start a generator process now."""

    def run(self, until: float | None = None) -> None:
        """Process events until none is left, or until the clock reaches ``until``."""


class Event:
    """Something that happens once, at a simulated time; a process waits for it by yielding it.

    :meth:`succeed` schedules the callbacks (the waiting processes) at the
    current time; ``callbacks`` is None once they have run.
    """

    __slots__ = ("callbacks", "env", "triggered", "value")

    def __init__(self, env: SimEnvironment) -> None:
        self.env = env
        self.callbacks: list[Callable[[Event], None]] | None = []
        self.triggered = False
        self.value: Any = None

    def succeed(self, value: Any = None) -> None:
        """Trigger the event now: its callbacks run in the order they were added."""
        if self.triggered:
            raise TiercutError("a simulation event was triggered twice")
        self.triggered = True
        self.value = value
        self.env.schedule(0.0, self._dispatch)

    def _dispatch(self) -> None:
        callbacks, self.callbacks = self.callbacks, None
        for callback in callbacks or ():
            callback(self)


class Process:
    """A generator run as a simulated process: it resumes when the event it yielded has happened."""

    __slots__ = ("env", "generator")

    def __init__(self, env: SimEnvironment, generator: ProcessGenerator) -> None:
        self.env = env
        self.generator = generator

    def _resume(self, event: Event | None) -> None:
        try:
            target = self.generator.send(None if event is None else event.value)
        except StopIteration:
            return
        if not isinstance(target, Event):
            raise TiercutError(f"a simulated process yielded {type(target).__name__}; processes yield events")
        if target.callbacks is None:  # already happened: resume at once (in the event order)
            self.env.schedule(0.0, self._resume, target)
        else:
            target.callbacks.append(self._resume)


class SimEnvironment:
    """The event loop: a clock and a heap of ``(time, sequence, callback, args)`` entries.

    Entries due at the same time run in the order they were scheduled.
    ``now`` is the simulated time in seconds (read it, never assign it);
    ``events`` counts every entry scheduled (for events/s).
    """

    __slots__ = ("_heap", "_sequence", "events", "now")

    def __init__(self, initial_time: float = 0.0) -> None:
        self.now = float(initial_time)
        self.events = 0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._sequence = itertools.count()

    def schedule(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        """Call ``callback(*args)`` after ``delay`` simulated seconds (``delay >= 0``)."""
        if not delay >= 0.0:
            raise TiercutError(f"a simulation event was scheduled {delay!r} s in the past")
        self.events += 1
        heapq.heappush(self._heap, (self.now + delay, next(self._sequence), callback, args))

    def timeout(self, delay: float) -> Event:
        """An event that happens ``delay`` seconds from now."""
        event = Event(self)
        event.triggered = True
        self.schedule(delay, event._dispatch)
        return event

    def event(self) -> Event:
        """A one-shot event that happens when ``succeed()`` is called."""
        return Event(self)

    def process(self, generator: ProcessGenerator) -> Process:
        """Start ``generator`` as a process now (its first step runs from the loop, as every event)."""
        process = Process(self, generator)
        self.schedule(0.0, process._resume, None)
        return process

    def run(self, until: float | None = None) -> None:
        """Run every entry due before ``until`` (all of them when None); the clock then reads ``until``."""
        heap = self._heap
        pop = heapq.heappop
        limit = math.inf if until is None else float(until)
        if limit < self.now:
            raise TiercutError(f"cannot run the simulation until {limit} s: the clock already reads {self.now} s")
        while heap and heap[0][0] < limit:
            self.now, _, callback, args = pop(heap)
            callback(*args)
        if until is not None:
            self.now = limit


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
        "_wsum",
        "busy_s",
        "completed",
        "discipline",
        "env",
        "name",
        "rate",
        "served",
    )

    def __init__(self, env: EventLoop, name: str, rate: float, discipline: str = "ps") -> None:
        if discipline not in DISCIPLINES:
            raise TiercutError(f"resource {name!r}: discipline {discipline!r} is not known; use ps or fifo")
        if not rate >= 0:
            raise TiercutError(f"resource {name!r}: rate {rate!r} must be >= 0")
        self.env = env
        self.name = name
        self.rate = float(rate)
        self.discipline = discipline
        self._fifo = discipline == "fifo"
        self._heap: list[tuple[float, int, Callback, float]] = []  # ps: (virtual finish, seq, callback, weight)
        self._wsum = 0.0  # ps: the summed weight of the jobs present
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
        now = self.env.now
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
            if self._heap:
                self.busy_s += elapsed
                if self.rate > 0.0:
                    self._virtual += elapsed * self.rate / self._wsum
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
            delay = (self._heap[0][0] - self._virtual) * self._wsum / self.rate
        if delay < 0.0:
            delay = 0.0
        self.env.schedule(delay, self._fire, self._gen)

    def _fire(self, generation: int) -> None:
        if generation != self._gen:
            return  # a stale timer: the state changed after it was armed
        self._advance()
        if self._fifo:
            _, callback = self._queue.popleft()
            self.completed += 1
            self._arm()
            callback()
            return
        heap = self._heap
        finish, _, callback, weight = heapq.heappop(heap)
        self._virtual = finish  # the armed job is done by construction
        self._wsum -= weight
        done = [callback]
        while heap and heap[0][0] <= finish:
            _, _, cb, w = heapq.heappop(heap)
            done.append(cb)
            self._wsum -= w
        if not heap:
            self._virtual = 0.0
            self._wsum = 0.0
        self.completed += len(done)
        self._arm()
        for cb in done:
            cb()

    # ----------------------------------------------------------- API
    def submit(self, amount: float, callback: Callback, weight: float = 1.0) -> None:
        """Start a job of ``amount`` units; ``callback()`` runs when it completes. ``weight`` (> 0): its share
        weight under processor sharing (ignored by fifo)."""
        self._advance()
        if self._fifo:
            self._queue.append([float(amount), callback])
            if len(self._queue) == 1:
                self._arm()
            return
        heapq.heappush(self._heap, (self._virtual + amount / weight, next(self._seq), callback, weight))
        self._wsum += weight
        self._arm()

    def set_rate(self, rate: float) -> None:
        """Change the rate from now on (jobs keep the service they attained)."""
        if not rate >= 0:
            raise TiercutError(f"resource {self.name!r}: rate {rate!r} must be >= 0")
        self._advance()
        self.rate = float(rate)
        self._arm()

    def event(self, amount: float) -> Any:
        """An event that happens when a job of ``amount`` units completes (processes yield it)."""
        done = self.env.event()
        self.submit(amount, done.succeed)
        return done


__all__ = ["DISCIPLINES", "Event", "EventLoop", "Process", "SharedResource", "SimEnvironment"]
