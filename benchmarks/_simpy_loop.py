"""The simulator's event loop over SimPy's public API only: the alternative ``tiercut.sim.core`` was measured against.

``benchmarks/simulator.py`` runs the same scenario on this adapter and on
:class:`tiercut.sim.core.SimEnvironment`. Only documented SimPy API is used:
``Environment.timeout`` / ``event`` / ``process`` / ``run`` / ``now`` and
``Event.callbacks``. The events counted are the same operations the core
counts (timers, timeouts, events, process starts), so both runs report the
same number of events and the events/s figures compare speed alone.
SimPy is not a dependency of tiercut; this file needs it installed
(``pip install 'simpy>=4.1,<5'``) and the benchmark skips it otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy


class SimPyLoop:
    """:class:`tiercut.sim.core.EventLoop` on a :class:`simpy.Environment`."""

    def __init__(self) -> None:
        self.env = simpy.Environment()
        self.events = 0

    @property
    def now(self) -> float:
        return self.env.now

    def schedule(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        self.events += 1
        self.env.timeout(delay).callbacks.append(lambda _event: callback(*args))

    def timeout(self, delay: float) -> simpy.Event:
        self.events += 1
        return self.env.timeout(delay)

    def event(self) -> simpy.Event:
        self.events += 1  # every event the simulator makes succeeds once
        return self.env.event()

    def process(self, generator: Generator[Any, Any, None]) -> None:
        self.events += 1
        self.env.process(generator)

    def run(self, until: float | None = None) -> None:
        self.env.run(until=until)
