"""Mobile users in the simulator: hand-overs between edge sites and a strategy for the partitions.

:class:`MobileSimulation` runs the ordinary simulator (:mod:`tiercut.sim.engine`:
the same queries, resources, programs and cost model) with three more
kinds of process per user, all generators on the same event loop:

- the **mobility** process replays the user's :func:`~tiercut.sim.mobility.link_timeline`:
  at each sample it sets the rate of the client's wireless link to its site
  (piecewise constant, as a bandwidth trace) and, when the site changes,
  performs the hand-over and calls the strategy;
- a **step** process calls the strategy every ``mobility.step_s`` (PerDNN's
  prediction);
- **upload** processes send partitions the strategy asked for, one after
  another, over the client's wireless link or over the backhaul (each hop:
  its latency, then the bytes on that link's shared channel, as
  :mod:`tiercut.sim.engine` uploads). A partition reserves its bytes on
  the site before it is sent and is refused when the site's memory cannot
  hold it, after evicting what users attached elsewhere left there (least
  recently attached first); so no site ever holds more than its
  ``memory_bytes``.

A query starting at ``t`` runs, in the attached problem at ``t``
(:func:`~tiercut.sim.mobility.attached_problem`: the client's one wireless
link at its current rate, the other sites through the backhaul), the best
placement of what is present on the sites (:class:`tiercut.upload.analytic.StageSolver`,
re-solved when something arrives or the user hands over; at every rate
change too for :class:`~tiercut.sim.strategies.Oracle`), or, for
:class:`~tiercut.sim.strategies.Static`, the plan made at t = 0. Its program
is compiled from that problem (:func:`tiercut.sim.program.compile_program`),
so a query alone on idle resources within one rate segment takes exactly
the cost model's ``T(x)`` of that problem.

:func:`compare_strategies` runs one simulation per strategy on the same
users, movements and seeds and returns :class:`StrategyFigures` per strategy:
latency around hand-overs (queries started within ``window_s`` after one:
mean, p95, max), mean latency, bytes uploaded and wasted (partitions no
later query of the user ran on that site), and each site's peak memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tiercut.cost import evaluate
from tiercut.errors import TiercutError
from tiercut.problem import Problem
from tiercut.sim.core import EventLoop, SimEnvironment
from tiercut.sim.engine import Progress, Simulation, _collector_paused, _Run, _UserState
from tiercut.sim.mobility import (
    AttachmentTrace,
    Handover,
    LinkSample,
    Mobility,
    attached_problem,
    handovers,
    link_timeline,
    mobile_problem,
    predict_heading,
    predict_markov,
)
from tiercut.sim.model import SimConfig, SimUser
from tiercut.sim.program import channel_key, compile_program, link_key
from tiercut.sim.results import ArrivalRecord, SimResult, _percentile
from tiercut.sim.strategies import STRATEGIES, Strategy, get_strategy
from tiercut.upload.analytic import StageSolver, held_params


@dataclass
class UploadRecord:
    """A partition a strategy sent to a site (``route``: ``client`` or ``backhaul``)."""

    user: str
    server: str
    route: str
    nodes: tuple[str, ...]
    param_bytes: int
    start_s: float
    arrives_s: float = math.nan
    used: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class _Memory:
    """A site's parameter memory: what each user holds there (parameter names), bounded by ``capacity``."""

    def __init__(self, server: str, capacity: int | None) -> None:
        self.server = server
        self.capacity = capacity
        self.held: dict[str, set[str]] = {}
        self.used = 0
        self.peak = 0


class _Mover:
    """A mobile user's state: where it is, what each site holds for it, what it is sending."""

    def __init__(self, state: _UserState, problem: Problem, timeline: tuple[LinkSample, ...], path: Any) -> None:
        self.state = state
        self.name = state.user.name
        self.problem = problem
        self.timeline = timeline
        self.path = path
        self.server = timeline[0].server
        self.bandwidth = timeline[0].bandwidth_bytes_per_s
        self.latency: float | None = timeline[0].latency_s
        self.present: dict[str, set[str]] = {}
        self.inflight: dict[str, set[str]] = {}
        self.client_generation = 0
        self.version = 0
        self.history: list[Handover] = []
        self.prefetching: set[str] = set()
        self.last_attached: dict[str, float] = {self.server: 0.0}
        self.fixed: dict[str, str] | None = None
        self.bound_key: tuple[Any, ...] | None = None
        self.bound: Any = None
        self.devices: set[str] = set()
        self.targets: dict[tuple[str, float, float | None], dict[str, str]] = {}
        self.solvers: dict[tuple[Any, ...], StageSolver] = {}
        self.uploads: dict[str, list[UploadRecord]] = {}


class MobileRun(_Run):
    """One run of mobile users under one strategy (built by :meth:`MobileSimulation.run`); the strategies' context."""

    def __init__(
        self, users: Sequence[SimUser], config: SimConfig, mobility: Mobility, strategy: Strategy,
        event_loop: Callable[[], EventLoop],
    ) -> None:  # fmt: skip
        self.mobility = mobility
        self.strategy = strategy
        duration = config.duration_s
        assert duration is not None
        problems = {u.name: mobile_problem(u.problem, mobility) for u in users}
        super().__init__([replace(u, problem=problems[u.name]) for u in users], config, event_loop)
        self.movers: dict[str, _Mover] = {}
        for state in self.states:
            name = state.user.name
            timeline = link_timeline(mobility, name, duration)
            self.movers[name] = _Mover(state, state.user.problem, timeline, mobility.path(name, duration))
        self.memory = {s: _Memory(s, self.devices[s].memory_bytes) for s in mobility.servers}
        self.upload_records: list[UploadRecord] = []
        self.handover_records: list[Handover] = []
        self.evictions = 0  # (user, site) holdings evicted to make room
        self.refusals = 0  # partitions or installs a site's memory could not take

    # ----------------------------------------------------------- processes
    def start(self) -> None:
        for mover in self.movers.values():
            self.env.process(self._mobility_process(mover))
            self.env.process(self._step_process(mover))
        super().start()

    def _wireless(self, mover: _Mover, server: str) -> str:
        return link_key(mover.problem.source, server)

    def _set_rate(self, mover: _Mover, sample: LinkSample) -> None:
        key = self._wireless(mover, sample.server)
        self.links[key].set_rate(sample.bandwidth_bytes_per_s)
        channel = self.upload_channels.get(key)
        if channel is not None:
            channel.set_rate(sample.bandwidth_bytes_per_s)

    def _mobility_process(self, mover: _Mover) -> Any:
        env = self.env
        first = mover.timeline[0]
        self._set_rate(mover, first)
        self.strategy.start(self, mover.name, first.server)
        if self.strategy.fixed:  # the t = 0 plan, or the client alone if the site's memory could not take it
            target = self.target(mover.name, first.server)
            held = mover.present.get(first.server, set())
            ok = all(n in held for n, d in target.items() if d == first.server)
            mover.fixed = dict(target) if ok else mover.problem.local_placement()
        for sample in mover.timeline[1:]:
            yield env.timeout(sample.t_s - env.now)
            if not self._alive(mover):
                return  # the user left: no more hand-overs
            self._set_rate(mover, sample)
            old = mover.server
            mover.bandwidth = sample.bandwidth_bytes_per_s
            mover.latency = sample.latency_s
            if sample.server != old:
                handover = Handover(mover.name, env.now, old, sample.server)
                mover.server = sample.server
                mover.last_attached[old] = mover.last_attached[sample.server] = env.now
                mover.history.append(handover)
                mover.prefetching.clear()
                mover.version += 1
                self.handover_records.append(handover)
                self.strategy.on_handover(self, mover.name, old, sample.server)
            elif self.strategy.follows_rates:
                mover.version += 1

    def _step_process(self, mover: _Mover) -> Any:
        duration = self.config.duration_s
        assert duration is not None
        while True:
            yield self.env.timeout(self.mobility.step_s)
            if self.env.now >= duration or not self._alive(mover):
                return
            self.strategy.on_step(self, mover.name)

    def _alive(self, mover: _Mover) -> bool:
        user = mover.state.user
        return user.leave_s is None or self.env.now < user.leave_s

    # ----------------------------------------------------------- the strategies' context
    def attached(self, user: str) -> str:
        return self.movers[user].server

    def _attached_problem(self, mover: _Mover, server: str | None = None) -> Problem:
        return attached_problem(mover.problem, server or mover.server, mover.bandwidth, self.mobility, mover.latency)

    def target(self, user: str, server: str) -> dict[str, str]:
        from tiercut.plan import get_planner

        mover = self.movers[user]
        key = (server, mover.bandwidth, mover.latency)
        placement = mover.targets.get(key)
        if placement is None:
            pair = self._attached_problem(mover, server).restricted_to([mover.problem.source, server])
            planner = get_planner(self.strategy.offloading, **self.strategy.offloading_settings)
            placement = mover.targets[key] = dict(planner.solve(pair).placement)
        return placement

    def all_param_nodes(self, user: str, server: str) -> list[str]:
        problem = self.movers[user].problem
        _, uses = problem.graph.param_table()
        return [n.name for n in problem.graph if uses[n.name] and server in problem.compute_s.get(n.name, {})]

    def predict_next(self, user: str) -> str | None:
        mover = self.movers[user]
        if mover.path is not None and self.mobility.predictor == "heading":
            return predict_heading(self.mobility, mover.path, self.env.now)
        return predict_markov(mover.history, mover.server)

    def prefetched(self, user: str, server: str) -> bool:
        return server in self.movers[user].prefetching

    def cancel_client_uploads(self, user: str) -> None:
        self.movers[user].client_generation += 1

    def install(self, user: str, server: str, nodes: list[str]) -> bool:
        mover = self.movers[user]
        params = held_params(mover.problem, nodes)
        if not self._reserve(mover, server, params):
            return False
        mover.present.setdefault(server, set()).update(nodes)
        mover.version += 1
        return True

    def upload(self, user: str, server: str, placement: dict[str, str], route: str, fraction: float = 1.0) -> None:
        from tiercut.upload.registry import get_upload_planner

        mover = self.movers[user]
        if route == "backhaul":
            if server in mover.prefetching:
                return
            mover.prefetching.add(server)
        needed = {n for n, d in placement.items() if d == server}
        have = mover.present.get(server, set()) | mover.inflight.get(server, set())
        if needed <= have:
            return
        pair = self._attached_problem(mover, server).restricted_to([mover.problem.source, server])
        planner = get_upload_planner(self.strategy.upload, **self.strategy.upload_settings)
        plan = planner.solve(pair, placement)
        parts = [tuple(n for n in p.nodes if n not in have) for p in plan.partitions]
        parts = [p for p in parts if p]
        budget = fraction * mover.problem.graph.weight_bytes(needed)
        if parts:
            process = self._upload_process(mover, server, parts, route, mover.client_generation, mover.server, budget)
            self.env.process(process)

    def _upload_process(
        self, mover: _Mover, server: str, parts: list[tuple[str, ...]], route: str, generation: int, origin: str,
        budget: float,
    ) -> Iterator[Any]:  # fmt: skip
        env = self.env
        problem = mover.problem
        source = problem.source
        sent = 0
        for nodes in parts:
            if not self._alive(mover) or (route == "client" and (generation != mover.client_generation
                                                                 or mover.server != server)):  # fmt: skip
                return
            present = mover.present.setdefault(server, set())
            inflight = mover.inflight.setdefault(server, set())
            nodes = tuple(n for n in nodes if n not in present and n not in inflight)
            if not nodes:
                continue
            memory = self.memory[server]
            before = set(memory.held.get(mover.name, set()))
            params = held_params(problem, nodes)
            sizes = problem.graph.param_table()[0]
            if sent + sum(sizes[p] for p in params - before) > budget * (1 + 1e-12):
                return  # the strategy's share of the bytes is spent
            if not self._reserve(mover, server, params, speculative=route == "backhaul"):
                return  # the site's memory is full: bounded, stop here
            nbytes = sum(sizes[p] for p in params - before)
            sent += nbytes
            inflight.update(nodes)
            record = UploadRecord(mover.name, server, route, nodes, int(nbytes), env.now)
            self.upload_records.append(record)
            mover.uploads.setdefault(server, []).append(record)
            start = origin if route == "backhaul" else source
            routing = self._attached_problem(mover, origin).routing
            path = routing.path(start, server, float(nbytes))
            if path is None:
                raise TiercutError(f"user {mover.name!r}: no path of links from {start!r} to site {server!r}")
            for hop in path.hops:
                key = channel_key(problem.link(hop.src, hop.dst), hop.src, hop.dst)
                channel = self.upload_channels.get(key, self.links[key])
                if hop.latency_s > 0:
                    yield env.timeout(hop.latency_s)
                if nbytes > 0:
                    yield channel.event(float(nbytes))
            inflight.difference_update(nodes)
            record.arrives_s = env.now
            if mover.name in memory.held:  # not evicted meanwhile (a reservation in flight is never evicted)
                present.update(nodes)
                mover.version += 1
            index = len(mover.uploads[server]) - 1
            self.arrivals.append(ArrivalRecord(mover.name, server, index, nodes, int(nbytes), record.start_s, env.now))

    # ----------------------------------------------------------- memory
    def _in_use(self, mover: _Mover, server: str) -> bool:
        return mover.server == server or server in mover.devices or bool(mover.inflight.get(server))

    def _reserve(self, mover: _Mover, server: str, params: frozenset[str], *, speculative: bool = False) -> bool:
        """Hold ``params`` for ``mover`` on ``server``; False (nothing held, nothing evicted) if they cannot fit.

        When the site is too full, holdings are evicted, but only if evicting
        every candidate would make room. Candidates are the users not attached
        to the site, not computing on it and not sending to it: first those
        whose holding is not a pending prediction (least recently attached
        first), then -- only for a request that is not itself speculative --
        other users' prefetches waiting for their hand-over (PerDNN's
        prefetches use spare memory; they never push out what attached users
        need, and attached users' needs come before them).
        """
        memory = self.memory[server]
        sizes = mover.problem.graph.param_table()[0]
        held = memory.held.get(mover.name, set())
        need = sum(sizes[p] for p in params - held)
        if need == 0:
            return True
        if memory.capacity is not None and memory.used + need > memory.capacity:
            idle, waiting = [], []
            for m in self.movers.values():
                if m is mover or not memory.held.get(m.name) or self._in_use(m, server):
                    continue
                (waiting if server in m.prefetching else idle).append(m)
            idle.sort(key=lambda m: m.last_attached.get(server, -1.0))
            candidates = idle if speculative else idle + waiting
            freeable = sum(self._held_bytes(m, server) for m in candidates)
            if memory.used - freeable + need > memory.capacity:
                self.refusals += 1
                return False
            for other in candidates:
                if memory.used + need <= memory.capacity:
                    break
                self._evict(other, server)
        memory.held.setdefault(mover.name, set()).update(params)
        memory.used += need
        memory.peak = max(memory.peak, memory.used)
        return True

    def _held_bytes(self, mover: _Mover, server: str) -> int:
        sizes = mover.problem.graph.param_table()[0]
        return sum(sizes[p] for p in self.memory[server].held.get(mover.name, ()))

    def _evict(self, mover: _Mover, server: str) -> None:
        memory = self.memory[server]
        memory.used -= self._held_bytes(mover, server)
        memory.held.pop(mover.name, None)
        mover.present.pop(server, None)
        mover.version += 1
        self.evictions += 1

    def result(self, wall_s: float) -> SimResult:
        """The simulation's result; a user's "planned" partitions are those its strategy sent (none are planned ahead)."""
        out = super().result(wall_s)
        sent: dict[str, int] = {}
        for record in self.upload_records:
            sent[record.user] = sent.get(record.user, 0) + 1
        out.users = {u: (join, sent.get(u, 0)) for u, (join, _) in out.users.items()}
        return out

    # ----------------------------------------------------------- queries
    def _current(self, state: _UserState) -> Any:
        mover = self.movers[state.user.name]
        key = (mover.server, mover.version, (mover.bandwidth, mover.latency) if self.strategy.follows_rates else None)
        if key == mover.bound_key:
            return mover.bound
        problem = self._attached_problem(mover)
        source = problem.source
        if mover.fixed is not None:
            placement = mover.fixed
        else:
            holding = tuple(s for s in self.mobility.servers if mover.present.get(s))
            solver_key = (mover.server, mover.bandwidth, mover.latency, holding)
            solver = mover.solvers.get(solver_key)
            if solver is None:
                solver = mover.solvers[solver_key] = StageSolver(problem.restricted_to([source, *holding]))
            placement, _ = solver.solve({s: mover.present[s] for s in holding})
        planned = evaluate(problem, placement).latency_s
        bound = self.bind(state, compile_program(problem, placement, self.config.execution), -1, planned)
        mover.bound_key, mover.bound = key, bound
        mover.devices = {d for d in placement.values() if d != source}
        now = self.env.now
        for server in mover.devices:
            for record in mover.uploads.get(server, ()):
                if not record.used and record.arrives_s <= now and any(placement.get(n) == server for n in record.nodes):
                    record.used = True
        return bound


@dataclass(frozen=True)
class StrategyFigures:
    """One strategy's figures over a mobile run.

    Attributes:
        strategy: its name.
        queries: completed queries (every user).
        mean_latency_s: their mean latency.
        handovers: hand-overs (every user).
        handover_queries: queries that started within ``window_s`` after one of their user's hand-overs.
        handover_mean_latency_s, handover_p95_latency_s, handover_max_latency_s: their latency (the spike).
        uploaded_bytes: parameter bytes of every partition sent (over the wireless link or the backhaul),
            including one still on its way at the end.
        wasted_bytes: those of partitions no later query of their user ran on that site.
        peak_memory_bytes: site -> the most parameter bytes it held at once (every user).
        memory_bytes: site -> its capacity (None: unlimited).
        evictions: holdings of users attached elsewhere evicted to make room.
        refusals: partitions or installs a site's memory could not take.
    """

    strategy: str
    queries: int
    mean_latency_s: float
    handovers: int
    handover_queries: int
    handover_mean_latency_s: float
    handover_p95_latency_s: float
    handover_max_latency_s: float
    uploaded_bytes: int
    wasted_bytes: int
    peak_memory_bytes: dict[str, int]
    memory_bytes: dict[str, int | None]
    evictions: int = 0
    refusals: int = 0

    @property
    def memory_exceeded(self) -> bool:
        return any(cap is not None and self.peak_memory_bytes[s] > cap for s, cap in self.memory_bytes.items())

    def to_dict(self) -> dict[str, Any]:
        from tiercut.serialization import finite_or_null

        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["memory_exceeded"] = self.memory_exceeded
        return finite_or_null(data)


@dataclass
class MobilityResult:
    """A mobile run under one strategy: the simulation's result plus hand-overs, uploads and memory."""

    strategy: str
    result: SimResult
    handovers: list[Handover]
    uploads: list[UploadRecord]
    peak_memory_bytes: dict[str, int]
    memory_bytes: dict[str, int | None]
    window_s: float
    evictions: int = 0
    refusals: int = 0

    def figures(self) -> StrategyFigures:
        queries = self.result.queries
        latencies = [q.latency_s for q in queries]
        by_user: dict[str, list[float]] = {}
        for h in self.handovers:
            by_user.setdefault(h.user, []).append(h.t_s)
        near = [q.latency_s for q in queries
                if any(t <= q.start_s < t + self.window_s for t in by_user.get(q.user, ()))]  # fmt: skip
        nan = math.nan
        return StrategyFigures(
            strategy=self.strategy,
            queries=len(queries),
            mean_latency_s=sum(latencies) / len(latencies) if latencies else nan,
            handovers=len(self.handovers),
            handover_queries=len(near),
            handover_mean_latency_s=sum(near) / len(near) if near else nan,
            handover_p95_latency_s=_percentile(near, 0.95) if near else nan,
            handover_max_latency_s=max(near) if near else nan,
            uploaded_bytes=sum(u.param_bytes for u in self.uploads),
            wasted_bytes=sum(u.param_bytes for u in self.uploads if not u.used),
            peak_memory_bytes=dict(self.peak_memory_bytes),
            memory_bytes=dict(self.memory_bytes),
            evictions=self.evictions,
            refusals=self.refusals,
        )

    def to_dict(self, include_queries: bool = False) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "figures": self.figures().to_dict(),
            "handovers": [h.to_dict() for h in self.handovers],
            "uploads": [u.to_dict() for u in self.uploads],
            "result": self.result.to_dict(include_queries=include_queries),
        }


class MobileSimulation(Simulation):
    """A simulation of mobile ``users`` under ``mobility`` with one hand-over ``strategy``.

    Every user needs a movement in ``mobility.users`` and no upload plan (the
    strategy plans); the run needs ``config.duration_s``; bandwidth traces
    may set the backhaul but not a client's wireless links (the mobility
    sets those).
    """

    def __init__(
        self, users: Sequence[SimUser], config: SimConfig, mobility: Mobility, strategy: Strategy | str = "reactive", *,
        event_loop: Callable[[], EventLoop] = SimEnvironment,
    ) -> None:  # fmt: skip
        super().__init__(users, config, event_loop=event_loop)
        self.mobility = mobility
        self.strategy = get_strategy(strategy) if isinstance(strategy, str) else strategy

    def check(self) -> None:
        super().check()
        if self.config.duration_s is None:
            raise TiercutError("a mobility simulation needs duration_s (its movements are sampled over it)")
        sites = set(self.mobility.servers)
        for user in self.users:
            label = f"user {user.name!r}"
            if user.name not in self.mobility.users:
                raise TiercutError(f"{label} has no movement in mobility.users; give every user one")
            if user.plan is not None or user.placement is not None or user.tiled_stages or user.cut_compression:
                raise TiercutError(f"{label}: under mobility the strategy plans and uploads; give no plan or placement")
            if user.problem.source in sites:
                raise TiercutError(f"{label}: its client {user.problem.source!r} is a mobility site; a client moves")
            movement = self.mobility.users[user.name]
            if isinstance(movement, AttachmentTrace) and movement.points[0][0] > 0:
                raise TiercutError(f"{label}: its attachment trace must start at t_s 0")
            for trace in self.config.traces:
                if {trace.a, trace.b} & sites and user.problem.source in (trace.a, trace.b):
                    raise TiercutError(f"bandwidth trace of link {trace.a}-{trace.b}: the mobility sets a client's "
                                       "wireless link; drop the trace (or give the user an attachment trace)")  # fmt: skip
        extra = set(self.mobility.users) - {u.name for u in self.users}
        if extra:
            raise TiercutError(f"mobility gives a movement for {sorted(extra)[0]!r}, which is no user; drop it")

    def begin(self) -> MobileRun:
        """A checked, started run to step from outside: ``run.env.run(until=t)`` as often as needed, then
        :meth:`finish` (a learning environment's loop; :meth:`run` does it all at once)."""
        self.check()
        run = MobileRun(self.users, self.config, self.mobility, self.strategy, self.event_loop)
        run.start()
        return run

    def finish(self, run: MobileRun, wall_s: float = 0.0) -> MobilityResult:
        """The :class:`MobilityResult` of a run made by :meth:`begin` (at the clock it has reached)."""
        result = run.result(wall_s)
        return MobilityResult(
            strategy=self.strategy.name,
            result=result,
            handovers=list(run.handover_records),
            uploads=list(run.upload_records),
            peak_memory_bytes={s: m.peak for s, m in run.memory.items()},
            memory_bytes={s: m.capacity for s, m in run.memory.items()},
            window_s=self.mobility.window_s,
            evictions=run.evictions,
            refusals=run.refusals,
        )

    def run(self, progress: Progress | None = None) -> MobilityResult:  # type: ignore[override]
        """Simulate ``config.duration_s``; ``progress(now_s, total_s)`` at checkpoints."""
        import time

        from tiercut.sim.engine import PROGRESS_STEPS

        start = time.perf_counter()
        duration = self.config.duration_s
        with _collector_paused():
            run = self.begin()
            assert duration is not None
            for step in range(1, PROGRESS_STEPS + 1):
                run.env.run(until=duration * step / PROGRESS_STEPS)
                if progress is not None:
                    progress(run.env.now, duration)
        return self.finish(run, time.perf_counter() - start)


@dataclass
class MobilityComparison:
    """The same users and movements under several strategies."""

    results: list[MobilityResult] = field(default_factory=list)

    def figures(self) -> list[StrategyFigures]:
        return [r.figures() for r in self.results]

    def by_strategy(self, name: str) -> MobilityResult:
        for r in self.results:
            if r.strategy == name:
                return r
        raise TiercutError(f"no strategy {name!r} was simulated; simulated: {', '.join(r.strategy for r in self.results)}")

    def to_dict(self, include_queries: bool = False) -> dict[str, Any]:
        return {
            "strategies": [f.to_dict() for f in self.figures()],
            "runs": [r.to_dict(include_queries=include_queries) for r in self.results],
        }


def compare_strategies(
    users: Sequence[SimUser],
    config: SimConfig,
    mobility: Mobility,
    strategies: Sequence[Strategy | str] = tuple(STRATEGIES),
    progress: Progress | None = None,
) -> MobilityComparison:
    """Simulate ``users`` under each strategy (same movements, seeds and arrivals); one :class:`MobilityResult` each."""
    if not strategies:
        raise TiercutError("give at least one mobility strategy: " + ", ".join(STRATEGIES))
    out = MobilityComparison()
    for strategy in strategies:
        out.results.append(MobileSimulation(users, config, mobility, strategy).run(progress))
    return out


__all__ = [
    "MobileRun",
    "MobileSimulation",
    "MobilityComparison",
    "MobilityResult",
    "StrategyFigures",
    "UploadRecord",
    "compare_strategies",
    "handovers",
]
