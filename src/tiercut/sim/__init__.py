"""Discrete-event simulation of users, uploads and queries over shared servers and links.

- :mod:`tiercut.sim.core`: the event loop (our own, small and typed;
  SimPy's public API was measured slower, see the module) and the shared
  resources (processor sharing or FIFO, rates that change over time);
- :mod:`tiercut.sim.model`: :class:`SimUser`, arrival processes
  (:class:`BackToBack`, :class:`Poisson`, :class:`Periodic`,
  :class:`TraceArrivals`), :class:`BandwidthTrace`, :class:`SimConfig`;
- :mod:`tiercut.sim.program`: a query as operations on devices and links;
- :mod:`tiercut.sim.engine`: :class:`Simulation` / :func:`simulate` ->
  :class:`SimResult` (every query's start, end, placement, bytes and energy;
  every partition's arrival);
- :mod:`tiercut.sim.scenario`: scenario YAML files (``tiercut simulate``).
"""

from tiercut.sim.core import SharedResource, SimEnvironment
from tiercut.sim.engine import Simulation, simulate
from tiercut.sim.model import (
    ArrivalProcess,
    BackToBack,
    BandwidthTrace,
    Periodic,
    Poisson,
    SimConfig,
    SimUser,
    TraceArrivals,
    user_shares,
)
from tiercut.sim.program import Program, compile_program
from tiercut.sim.results import ArrivalRecord, QueryRecord, SimResult, UserSummary

__all__ = [
    "ArrivalProcess",
    "ArrivalRecord",
    "BackToBack",
    "BandwidthTrace",
    "Periodic",
    "Poisson",
    "Program",
    "QueryRecord",
    "SharedResource",
    "SimConfig",
    "SimEnvironment",
    "SimResult",
    "SimUser",
    "Simulation",
    "TraceArrivals",
    "UserSummary",
    "compile_program",
    "simulate",
    "user_shares",
]
