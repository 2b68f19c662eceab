"""The dynamic partition task: a problem whose links and servers change over time (the "problem" side).

Kept apart from the gymnasium wrapper (:mod:`tiercut.gym.env`) and from any
algorithm that solves it (:mod:`tiercut.gym.policies`, :mod:`tiercut.gym.dqn`),
as pymoo keeps a problem apart from its algorithms.

A :class:`PartitionTask` holds:

- a single-user :class:`~tiercut.problem.Problem` (its links' figures are the
  *nominal* conditions);
- a bandwidth process per tracked link (:mod:`tiercut.gym.processes`, bytes
  per second of the link's ``a -> b`` direction; the link's other direction
  is scaled by the same ratio to its nominal figure);
- optionally a load process per server (the equal-share model's number of
  users sharing it: compute times there are multiplied by it);
- the candidate plans: the exact planner (``planner``, ``ilp`` by default)
  solved at every point of a grid of bandwidth and load factors
  (:meth:`PartitionTask.candidates`), plus the all-local placement;
- the switching cost: ``switching_weight`` objective units per second of
  uploading the parameters a new plan needs on a server that the current
  plan did not put there.

Figures under changing conditions come from the cost model, never from a
formula of this module: a plan's figures at bandwidths ``b`` and loads ``s``
are :func:`tiercut.cost.evaluate_many` of its placement with the equal-share
multipliers ``link_share = nominal / b`` and ``device_share = s``
(docs/cost-model.md "Multi-user": the same kernel the multi-user model uses,
with ``charge_stretched=True``: a slower link or loaded server is charged
energy and price for the stretched time, unlike a share), which equal :func:`tiercut.cost.evaluate` of the problem with its links
scaled to ``b`` and its servers' times multiplied by ``s``
(:meth:`PartitionTask.problem_at`; tested). Transfers keep the paths the
nominal links choose, as in the multi-user model. Upload seconds are
:func:`tiercut.upload.analytic.upload_seconds` on that scaled problem.

Switching model (an assumption, stated): a server holds the parameters of
the current plan only (switching evicts what the new plan does not use), so
the cost of a switch depends on the two plans alone and the oracle can be
solved exactly by dynamic programming over the episode
(:class:`tiercut.gym.policies.Oracle`). The uploads go one server after the
other over the client's links at the step's bandwidths.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tiercut.cost import BatchEvaluation, CompiledProblem, compile_problem, decode, encode, evaluate_many
from tiercut.errors import TiercutError
from tiercut.gym.processes import ConditionProcess
from tiercut.problem import Problem

#: bandwidth factors (of the nominal links) the candidate plans are planned at, by default
DEFAULT_BANDWIDTH_GRID = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: how the bandwidth grid covers several tracked links: all at one factor, or every combination
GRIDS = ("joint", "product")


@dataclass(frozen=True)
class CandidateSet:
    """The plans an agent chooses among.

    Attributes:
        placements: [K, n] device indices (``problem.device_names`` order, nodes in graph order).
        labels: how each was obtained (``local``, ``ilp@bw x0.5 load x1``...).
        bandwidth_factors: [K, L] the grid point (factors of each tracked link's nominal bandwidth) each was
            first planned at (nan for ``local``).
        load_factors: [K] the load factor it was planned at (nan for ``local``).
        missing_bytes: [K, K, D] parameter bytes plan ``j`` needs on device ``d`` that plan ``i`` does not
            put there (0 on the source, which holds the whole model).
    """

    placements: np.ndarray
    labels: tuple[str, ...]
    bandwidth_factors: np.ndarray
    load_factors: np.ndarray
    missing_bytes: np.ndarray

    def __len__(self) -> int:
        return int(self.placements.shape[0])


@dataclass(frozen=True)
class Conditions:
    """Sampled conditions at a series of times.

    Attributes:
        times_s: [T] seconds.
        bandwidth_bytes_per_s: [T, L] each tracked link's ``a -> b`` bandwidth.
        load: [T, S] each tracked server's load factor (>= 1 by the processes' choice).
    """

    times_s: np.ndarray
    bandwidth_bytes_per_s: np.ndarray
    load: np.ndarray

    def __len__(self) -> int:
        return int(self.times_s.shape[0])

    def at(self, index: int | slice) -> Conditions:
        sl = index if isinstance(index, slice) else slice(index, index + 1)
        return Conditions(self.times_s[sl], self.bandwidth_bytes_per_s[sl], self.load[sl])


@dataclass(frozen=True)
class PartitionTask:
    """A partition problem under changing bandwidth and server load (see the module docstring).

    Attributes:
        problem: the single-user problem at nominal conditions.
        bandwidth: link ``(a, b)`` -> process of its ``a -> b`` bytes per second.
        loads: server -> process of its load factor (absent: always 1).
        step_s: seconds between two decisions.
        planner: registry name of the planner that builds the candidates (exact by default).
        planner_settings: its settings.
        bandwidth_grid: factors of the nominal bandwidths to plan at.
        grid: ``joint`` (every tracked link at the same factor: one solve per factor) or ``product`` (every
            combination of factors over the tracked links: ``len(bandwidth_grid) ** L`` solves).
        load_grid: load factors (every tracked server at once) to plan at.
        switching_weight: objective units charged per second of uploading a new plan's missing parameters
            (0: switching is free).
        include_local: add the all-local placement to the candidates (when every node can run on the source).
    """

    problem: Problem
    bandwidth: Mapping[tuple[str, str], ConditionProcess]
    loads: Mapping[str, ConditionProcess] = field(default_factory=dict)
    step_s: float = 1.0
    planner: str = "ilp"
    planner_settings: Mapping[str, Any] = field(default_factory=dict)
    bandwidth_grid: tuple[float, ...] = DEFAULT_BANDWIDTH_GRID
    grid: str = "joint"
    load_grid: tuple[float, ...] = (1.0,)
    switching_weight: float = 0.0
    include_local: bool = True
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.problem, Problem):
            raise TiercutError("PartitionTask takes a single-user tiercut.problem.Problem")
        if not self.bandwidth:
            raise TiercutError("PartitionTask: give at least one link's bandwidth process, e.g. {('end', 'edge'): ...}")
        for (a, b), process in self.bandwidth.items():
            if self.problem.link(a, b) is None:
                raise TiercutError(f"PartitionTask: no link {a}-{b} in the problem; its links join "
                                   + ", ".join(f"{k.a}-{k.b}" for k in self.problem.links))
            if not isinstance(process, ConditionProcess):
                raise TiercutError(f"PartitionTask: the process of link {a}-{b} has no values(times_s, rng) method")
        if len({frozenset(k) for k in self.bandwidth}) != len(self.bandwidth):
            raise TiercutError("PartitionTask: a link is given two bandwidth processes (both directions); keep one")
        for server, process in self.loads.items():
            if server not in self.problem.device_names:
                raise TiercutError(f"PartitionTask: load of unknown device {server!r}; devices are "
                                   + ", ".join(self.problem.device_names))
            if not isinstance(process, ConditionProcess):
                raise TiercutError(f"PartitionTask: the load process of {server!r} has no values(times_s, rng) method")
        if not (math.isfinite(self.step_s) and self.step_s > 0):
            raise TiercutError(f"PartitionTask: step_s {self.step_s!r} must be a finite number > 0")
        for name, grid in (("bandwidth_grid", self.bandwidth_grid), ("load_grid", self.load_grid)):
            if not grid or any(not (math.isfinite(f) and f > 0) for f in grid):
                raise TiercutError(f"PartitionTask: {name} must be finite factors > 0, got {grid!r}")
        if self.grid not in GRIDS:
            raise TiercutError(f"PartitionTask: grid {self.grid!r} is not known; use {' or '.join(GRIDS)}")
        if not (math.isfinite(self.switching_weight) and self.switching_weight >= 0):
            raise TiercutError(f"PartitionTask: switching_weight {self.switching_weight!r} must be >= 0")
        from tiercut.plan.registry import PLANNERS

        if self.planner not in PLANNERS:
            raise TiercutError(f"PartitionTask: planner {self.planner!r} is not known; use one of {', '.join(PLANNERS)}")

    # ----------------------------------------------------------- names
    @property
    def links(self) -> list[tuple[str, str]]:
        """The tracked links, ``(a, b)`` in the order of :attr:`bandwidth`."""
        return list(self.bandwidth)

    @property
    def servers(self) -> list[str]:
        """The tracked servers, in the order of :attr:`loads`."""
        return list(self.loads)

    def nominal_bandwidth(self) -> np.ndarray:
        """[L] the problem's ``a -> b`` bandwidth of each tracked link."""
        return np.array([self.problem.link(a, b).direction(a, b).bandwidth_bytes_per_s for a, b in self.links])

    @property
    def compiled(self) -> CompiledProblem:
        comp = self._derived.get("compiled")
        if comp is None:
            comp = self._derived["compiled"] = compile_problem(self.problem)
        return comp

    # ----------------------------------------------------------- conditions
    def sample(self, times_s: np.ndarray, rng: np.random.Generator) -> Conditions:
        """Every tracked link's bandwidth and server's load at ``times_s`` (links first, then servers, from ``rng``)."""
        times = np.asarray(times_s, dtype=float)
        bandwidth = np.stack([np.asarray(p.values(times, rng), dtype=float) for p in self.bandwidth.values()], axis=1)
        if self.loads:
            load = np.stack([np.asarray(p.values(times, rng), dtype=float) for p in self.loads.values()], axis=1)
        else:
            load = np.ones((len(times), 0))
        for what, arr in (("bandwidth", bandwidth), ("load", load)):
            if arr.shape[0] != len(times) or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
                raise TiercutError(f"a {what} process returned a value that is not a finite number > 0")
        return Conditions(times, bandwidth, load)

    def shares(self, conditions: Conditions) -> tuple[np.ndarray, np.ndarray]:
        """([T, D] device_share, [T, D, D] link_share) of :func:`tiercut.cost.evaluate_many` for ``conditions``."""
        problem = self.problem
        index = {d: i for i, d in enumerate(problem.device_names)}
        T, D = len(conditions), len(index)
        device_share = np.ones((T, D))
        for s, server in enumerate(self.servers):
            device_share[:, index[server]] = conditions.load[:, s]
        link_share = np.ones((T, D, D))
        ratio = self.nominal_bandwidth()[None, :] / conditions.bandwidth_bytes_per_s  # [T, L]
        for k, (a, b) in enumerate(self.links):
            link_share[:, index[a], index[b]] = ratio[:, k]
            link_share[:, index[b], index[a]] = ratio[:, k]
        return device_share, link_share

    def problem_at(self, bandwidth_bytes_per_s: np.ndarray, load: np.ndarray | None = None) -> Problem:
        """The problem under one set of conditions: tracked links at ``bandwidth_bytes_per_s`` ([L], ``a -> b``),
        tracked servers' times multiplied by ``load`` ([S]); paths chosen by the nominal links."""
        problem = self.problem
        factors = {problem.link(a, b).key: float(bw) / nominal
                   for (a, b), bw, nominal in zip(self.links, bandwidth_bytes_per_s, self.nominal_bandwidth(), strict=True)}
        links = tuple(link.scaled(factors[link.key]) if link.key in factors else link for link in problem.links)
        nominal = problem.routing_links if problem.routing_links is not None else problem.links
        compute = problem.compute_s
        if load is not None and len(self.servers):
            stretch = dict(zip(self.servers, (float(x) for x in load), strict=True))
            compute = {n: {d: s * stretch.get(d, 1.0) for d, s in row.items()} for n, row in problem.compute_s.items()}
        return replace(problem, links=links, routing_links=nominal, compute_s=compute)

    # ----------------------------------------------------------- candidates
    def candidates(self) -> CandidateSet:
        """The candidate plans (built once: one exact solve per grid point, then cached)."""
        cached = self._derived.get("candidates")
        if cached is not None:
            return cached
        from tiercut.plan.registry import get_planner

        comp = self.compiled
        rows: list[np.ndarray] = []
        labels: list[str] = []
        bw_f: list[np.ndarray] = []
        load_f: list[float] = []
        if self.include_local:
            local = np.full(comp.n_nodes, comp.source, dtype=np.int64)
            if bool(evaluate_many(comp, local).valid[0]):
                rows.append(local)
                labels.append("local")
                bw_f.append(np.full(len(self.links), math.nan))
                load_f.append(math.nan)
        planner = get_planner(self.planner, **dict(self.planner_settings))
        nominal = self.nominal_bandwidth()
        if self.grid == "joint":
            points = [np.full(len(nominal), f) for f in self.bandwidth_grid]
        else:
            points = [np.array(p) for p in itertools.product(self.bandwidth_grid, repeat=len(nominal))]
        for lf in self.load_grid:
            for factors in points:
                plan = planner.solve(self.problem_at(nominal * factors, np.full(len(self.servers), lf)))
                row = encode(comp, plan.placement)
                if any(np.array_equal(row, r) for r in rows):
                    continue
                rows.append(row)
                bw = f"x{factors[0]:g}" if self.grid == "joint" else "(" + ",".join(f"x{f:g}" for f in factors) + ")"
                labels.append(f"{self.planner}@bw {bw} load x{lf:g}")
                bw_f.append(factors)
                load_f.append(lf)
        placements = np.stack(rows)
        result = CandidateSet(placements, tuple(labels), np.stack(bw_f), np.array(load_f), self._missing(placements))
        self._derived["candidates"] = result
        return result

    def _missing(self, placements: np.ndarray) -> np.ndarray:
        K, D = len(placements), self.compiled.n_devices
        graph = self.problem.graph
        _, uses = graph.param_table()
        names = [n.name for n in graph]
        on = [[[names[v] for v in np.flatnonzero(row == d)] for d in range(D)] for row in placements]
        held = [[{p for node in on[i][d] for p in uses[node]} for d in range(D)] for i in range(K)]
        missing = np.zeros((K, K, D))
        for i in range(K):
            for j in range(K):
                for d in range(D):
                    if d != self.compiled.source:
                        missing[i, j, d] = graph.weight_bytes(on[j][d], held=held[i][d])
        return missing

    def missing_bytes(self, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        """[D] parameter bytes placement ``new`` needs on each device that ``old`` does not put there."""
        return self._missing(np.stack([np.asarray(old), np.asarray(new)]))[0, 1]

    # ----------------------------------------------------------- figures
    def evaluate(self, placements: np.ndarray, conditions: Conditions) -> BatchEvaluation:
        """The cost model's figures of every placement ([K, n]) under every condition: rows ``t * K + k``."""
        X = np.atleast_2d(np.asarray(placements, dtype=np.int64))
        T, K = len(conditions), len(X)
        device_share, link_share = self.shares(conditions)
        return evaluate_many(
            self.compiled,
            np.tile(X, (T, 1)),
            device_share=np.repeat(device_share, K, axis=0),
            link_share=np.repeat(link_share, K, axis=0),
            charge_stretched=True,  # a slower link or loaded server: its energy and price for the stretched time
        )

    def objectives(self, placements: np.ndarray, conditions: Conditions) -> np.ndarray:
        """[T, K] the problem objective of each placement under each condition (inf where invalid)."""
        batch = self.evaluate(placements, conditions)
        return batch.objective.reshape(len(conditions), -1)

    def upload_seconds(self, missing_bytes: np.ndarray, problem_now: Problem) -> float:
        """Seconds to upload ``missing_bytes`` ([D] per device) to each server in turn, in ``problem_now``'s links."""
        from tiercut.upload.analytic import upload_seconds

        total = 0.0
        for d, nbytes in enumerate(missing_bytes):
            if nbytes > 0:
                total += upload_seconds(problem_now, problem_now.device_names[d], float(nbytes))
        return total

    def switching_cost(self, missing_bytes: np.ndarray, problem_now: Problem) -> float:
        """``switching_weight * upload seconds`` of ``missing_bytes`` (0 without a weight or bytes)."""
        if self.switching_weight == 0 or not np.any(missing_bytes > 0):
            return 0.0
        return self.switching_weight * self.upload_seconds(missing_bytes, problem_now)

    def sim_traces(self, conditions: Conditions) -> tuple[Any, ...]:
        """The tracked links' bandwidth in ``conditions`` as the simulator's traces
        (:class:`tiercut.sim.BandwidthTrace`, times from 0), to replay an episode event by event."""
        from tiercut.sim.model import BandwidthTrace

        times = conditions.times_s - conditions.times_s[0]
        return tuple(
            BandwidthTrace(a, b, tuple((float(t), float(v)) for t, v in zip(times, conditions.bandwidth_bytes_per_s[:, k],
                                                                             strict=True)))
            for k, (a, b) in enumerate(self.links)
        )

    def simulated_latency_s(self, row: np.ndarray, bandwidth_bytes_per_s: np.ndarray, load: np.ndarray | None = None,
                            *, queries: int = 1) -> float:
        """Mean latency of ``queries`` back-to-back queries of placement ``row`` in the discrete-event simulator
        (:func:`tiercut.sim.simulate`, sequential execution) on the problem at these conditions
        (:meth:`problem_at`): the event-by-event check of the step figures the environment takes from the
        cost model (one user, nothing else on the links, so the two agree)."""
        from tiercut.sim import BackToBack, SimConfig, SimUser, simulate

        problem = self.problem_at(np.asarray(bandwidth_bytes_per_s), None if load is None else np.asarray(load))
        user = SimUser("agent", problem, placement=self.placement(row), arrivals=BackToBack(), max_queries=int(queries))
        result = simulate([user], SimConfig(execution="sequential"))
        return float(np.mean([q.latency_s for q in result.queries]))

    def placement(self, row: np.ndarray) -> dict[str, str]:
        """A candidate row as a placement dict."""
        return decode(self.compiled, np.asarray(row))


__all__ = ["DEFAULT_BANDWIDTH_GRID", "GRIDS", "CandidateSet", "Conditions", "PartitionTask"]
