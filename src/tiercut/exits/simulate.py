"""Discrete-event simulation of a deployment with exits: each query draws its exit from the exit rates.

Queries arrive as a Poisson process (or back to back); each draws the exit
it will leave at from the plan's exit rates, then runs the steps of that
exit's query problem (:func:`tiercut.exits.cost.query_problem`) in the
sequential order of the cost model: every node's compute on its device, and
after it every hop of every transfer of its output on the hop's link. Each
device and each link serves one step at a time (SimPy resources, FIFO), so
queries queue behind each other; with no queueing a query's latency is the
cost model's latency of its exit, and the mean over queries tends to the
expected latency. SimPy (Müller and Vignaux; the engine DESIGN.md chose for
the simulator).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiercut.cost import evaluate
from tiercut.errors import TiercutError
from tiercut.exits.confidence import route
from tiercut.exits.cost import ExitProblem, query_problem


@dataclass(frozen=True)
class SimulatedQuery:
    """One simulated query: arrival, end, the exit it left at."""

    arrival_s: float
    end_s: float
    exit: str

    @property
    def latency_s(self) -> float:
        return self.end_s - self.arrival_s


def _steps(ep: ExitProblem, placement: Mapping[str, str], active: Sequence[str], k: int) -> list[tuple[Any, float]]:
    """(resource key, seconds) of a query leaving at ``active[k]``, in the cost model's sequential order."""
    sub = query_problem(ep, active, k)
    ev = evaluate(sub, {n.name: placement[n.name] for n in sub.graph if not n.is_input})
    if not ev.valid:
        raise TiercutError(f"exit {active[k]}'s queries cannot run on this placement: {ev.violations[0]}")
    by_node: dict[str, list[Any]] = {}
    for t in ev.transfers:
        by_node.setdefault(t.node, []).append(t)
    steps: list[tuple[Any, float]] = []
    for node in sub.graph:
        if not node.is_input:
            steps.append((("device", ev.placement[node.name]), sub.compute_s[node.name][ev.placement[node.name]]))
        for t in by_node.get(node.name, ()):
            for hop in t.hops:
                steps.append((("link", frozenset((hop.src, hop.dst))), hop.seconds))
    return steps


def simulate_exits(
    ep: ExitProblem,
    placement: Mapping[str, str],
    active: Sequence[str],
    *,
    n_queries: int = 1000,
    rate_hz: float | None = None,
    seed: int = 0,
) -> list[SimulatedQuery]:
    """Simulate ``n_queries`` queries (Poisson arrivals at ``rate_hz``; None: one after the other finishes)."""
    import simpy

    active = ep.check_active(list(active))
    if n_queries < 1:
        raise TiercutError(f"n_queries {n_queries} must be >= 1")
    if rate_hz is not None and not rate_hz > 0:
        raise TiercutError(f"query rate {rate_hz} Hz must be > 0")
    rates = np.array(route(ep.measurements, active, ep.rule, ep.thresholds).exit_rates)
    steps = [_steps(ep, placement, active, k) for k in range(len(active))]
    rng = np.random.default_rng(seed)
    draws = rng.choice(len(active), size=n_queries, p=rates / rates.sum())
    gaps = rng.exponential(1.0 / rate_hz, size=n_queries) if rate_hz is not None else None
    env = simpy.Environment()
    resources: dict[Any, Any] = {}
    out: list[SimulatedQuery] = []

    def query(i: int) -> Any:
        start = env.now
        for key, seconds in steps[draws[i]]:
            res = resources.setdefault(key, simpy.Resource(env, capacity=1))
            with res.request() as req:
                yield req
                yield env.timeout(seconds)
        out.append(SimulatedQuery(start, env.now, active[draws[i]]))

    def arrivals() -> Any:
        for i in range(n_queries):
            if gaps is None:
                yield env.process(query(i))
            else:
                env.process(query(i))
                yield env.timeout(gaps[i])

    env.process(arrivals())
    env.run()
    return sorted(out, key=lambda q: q.arrival_s)


__all__ = ["SimulatedQuery", "simulate_exits"]
