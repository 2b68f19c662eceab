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
- :mod:`tiercut.sim.scenario`: scenario YAML files (``tiercut simulate``);
- :mod:`tiercut.sim.mobility`: sites, movements (waypoint traces, random
  waypoint, attachment traces), the distance -> rate radio law, predictors;
- :mod:`tiercut.sim.strategies`: hand-over strategies (:class:`Static`,
  :class:`Reactive`, :class:`Proactive` (PerDNN), :class:`Oracle`);
- :mod:`tiercut.sim.mobile`: :class:`MobileSimulation` / :func:`compare_strategies`
  -> :class:`MobilityResult` / :class:`StrategyFigures`.
"""

from tiercut.sim.core import SharedResource, SimEnvironment
from tiercut.sim.engine import Simulation, simulate
from tiercut.sim.mobile import MobileSimulation, MobilityComparison, MobilityResult, StrategyFigures, compare_strategies
from tiercut.sim.mobility import AttachmentTrace, Backhaul, Mobility, RandomWaypoint, ShannonRadio, Site, WaypointPath
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
from tiercut.sim.strategies import STRATEGIES, Oracle, Proactive, Reactive, Static, get_strategy

__all__ = [
    "STRATEGIES",
    "ArrivalProcess",
    "ArrivalRecord",
    "AttachmentTrace",
    "BackToBack",
    "Backhaul",
    "BandwidthTrace",
    "MobileSimulation",
    "Mobility",
    "MobilityComparison",
    "MobilityResult",
    "Oracle",
    "Periodic",
    "Poisson",
    "Proactive",
    "Program",
    "QueryRecord",
    "RandomWaypoint",
    "Reactive",
    "ShannonRadio",
    "SharedResource",
    "SimConfig",
    "SimEnvironment",
    "SimResult",
    "SimUser",
    "Simulation",
    "Site",
    "Static",
    "StrategyFigures",
    "TraceArrivals",
    "UserSummary",
    "WaypointPath",
    "compare_strategies",
    "compile_program",
    "get_strategy",
    "simulate",
    "user_shares",
]
