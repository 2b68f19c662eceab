"""The discrete-event simulator: users, uploads and queries over shared servers and links.

Processes are generators on the project's own event loop
(:class:`tiercut.sim.core.SimEnvironment`; why not SimPy, measured, is in
:mod:`tiercut.sim.core`): one per user (it joins, starts its uploads,
issues queries by its arrival process, leaves), one per (user, server)
upload (partitions one after another: the link latency, then the bytes on
the shared link; a partition counts as arrived when its last byte is in --
the seed's upload thread with its confirmation), and one per bandwidth
trace; they ``yield env.timeout(...)`` and ``yield resource.event(...)``.
A query, the bulk of the events, is a callback-driven walk through its
program (:mod:`tiercut.sim.program`) rather than a process: each operation
is a job on a device or a link (:class:`tiercut.sim.core.SharedResource`)
whose completion calls the next step directly, one timer per operation
instead of a timer plus an event dispatch, so the number of events is a few
per operation whatever the number of layers or bytes. Every query is
recorded as a :class:`tiercut.trace.QueryRecord`, the type measured runs
use too (:func:`tiercut.trace.compare_traces`).

A query uses, at its start, the stage of its user's upload plan matching
what has arrived by then on each server (the IONN model's rule, and the
seed's query thread checking the confirmations); if the arrivals come in an
order the plan did not foresee (contention), the best placement of what has
arrived is solved then and cached.

**Energy.** A query's figures are what the devices really draw, attributed
to the queries in flight (docs/cost-model.md, "Energy in the simulator").
Each device draws its idle power while at least one query whose source it is
is in flight, plus, on top, each activity's power over idle: ``P_compute -
P_idle`` while it computes, ``P_tx - P_idle`` / ``P_rx - P_idle`` while a
channel it is an end of carries a hop it sends / receives. The engine lets a
device compute and use its channels at once (separate resources, each its
own bandwidth), so the increments add up -- the cost model's own algebra
(``E = P_idle*T + sum (P_X - P_idle)*busy_X``, which ``evaluate_tiled``
applies to overlapping tiles). Attribution (:class:`ShareMeter`): the idle
power is split equally among the source's queries in flight; compute work to
the query computing it (its work seconds: the device serves one second of
work per second), and a hop end's message work (``message_s``, a job on the
device's compute resource) alike, at the hop's tx + rx powers, in the
source's busy transmit/receive time when it is the hop's sender/receiver; a
channel's time -- from a hop's start (its link latency, which the cost model
charges as transmit/receive time) to its last byte --
is split among the hops on it by their processor-sharing weights, and each
hop is charged its sender's and receiver's power for its part. So the
queries' energies sum to the devices' draw (nothing counted twice, however
many queries overlap), and a query alone on idle resources gets exactly the
cost model's ``E_source`` and ``E_total``.

With one user issuing queries back to back, idle resources, sequential
execution, a constant link and uploads on their own channel
(``upload_shares_link=False``), every query takes exactly its stage's cost
model latency and the run reproduces :mod:`tiercut.upload.analytic` (tested
to 1e-9 relative).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tiercut.cost import evaluate
from tiercut.errors import TiercutError
from tiercut.problem import ProblemDevice
from tiercut.sim.core import EventLoop, SharedResource, SimEnvironment
from tiercut.sim.model import BackToBack, BandwidthTrace, Periodic, Poisson, SimConfig, SimUser, TraceArrivals
from tiercut.sim.program import (
    COMPUTE,
    MESSAGE,
    ROLE_COMPUTE,
    ROLE_RX,
    ROLE_TX,
    TRANSFER,
    Op,
    Program,
    channel_key,
    compile_program,
    compile_tiled_program,
    link_key,
)
from tiercut.sim.results import ArrivalRecord, ResourceSummary, SimResult
from tiercut.trace import QueryRecord, Span
from tiercut.upload.analytic import StageSolver
from tiercut.upload.types import UploadPartition

#: checkpoints of a run with a duration (for the progress callback).
PROGRESS_STEPS = 100

Progress = Callable[[float, float], None]


class ShareMeter:
    """Time shared among the members present, in proportion to their weights: member ``j`` is credited
    ``integral of w_j / W(t) dt`` over its stay, ``W`` the summed weight of those present.

    One per channel (its airtime, shared by the query hops on it, latency included) and one per source device
    (its awake time, shared equally by the queries in flight from it). The credits of everyone present sum to
    the time at least one member was present, so nothing is counted twice; a member alone is credited its
    whole stay. O(1) per enter/leave: a clock advancing at ``1 / W`` (reset when nobody is present).
    """

    __slots__ = ("clock", "env", "last", "n", "wsum")

    def __init__(self, env: EventLoop) -> None:
        self.env = env
        self.clock = 0.0  # integral of dt / W since the meter was last empty
        self.last = 0.0
        self.n = 0
        self.wsum = 0.0

    def enter(self, weight: float) -> float:
        """A member of ``weight`` arrives now; returns the clock reading to give back to :meth:`leave`."""
        now = self.env.now
        if self.n:
            self.clock += (now - self.last) / self.wsum
        self.last = now
        self.n += 1
        self.wsum += weight
        return self.clock

    def leave(self, weight: float, entered: float) -> float:
        """The member that entered at clock ``entered`` leaves now; returns the seconds credited to it."""
        now = self.env.now
        self.clock += (now - self.last) / self.wsum
        self.last = now
        credit = weight * (self.clock - entered)
        self.n -= 1
        if self.n:
            self.wsum -= weight
        else:
            self.clock = self.wsum = 0.0
        return credit


class _Bound:
    """A program with its operations bound to the run's resources."""

    __slots__ = (
        "airtime", "bytes_received", "bytes_sent", "children", "devices", "n_deps", "ops", "planned_latency_s", "program",
        "resources", "stage", "weights",
    )

    def __init__(
        self, program: Program, resources: list[SharedResource], stage: int, planned_latency_s: float, source: str,
        weights: list[float] | None = None, airtime: list[ShareMeter | None] | None = None,
    ) -> None:
        self.program = program
        self.ops: tuple[Op, ...] = program.ops
        self.resources = resources
        self.airtime = airtime if airtime is not None else [None] * len(program.ops)  # a transfer's channel meter
        self.weights = weights if weights is not None else [1.0] * len(program.ops)
        self.stage = stage
        self.planned_latency_s = planned_latency_s
        self.devices = tuple(dict.fromkeys(op.where for op in program.ops if op.kind == COMPUTE))
        self.bytes_sent = int(sum(op.amount for op in program.ops if op.kind == TRANSFER and op.src == source))
        self.bytes_received = int(sum(op.amount for op in program.ops if op.kind == TRANSFER and op.dst == source))
        self.n_deps = [len(op.deps) for op in program.ops]
        self.children: list[list[int]] = [[] for _ in program.ops]
        for i, op in enumerate(program.ops):
            for d in op.deps:
                self.children[d].append(i)


class _UserState:
    __slots__ = (
        "active",
        "arrived",
        "awake",
        "bound",
        "completed",
        "issued",
        "servers",
        "solver",
        "stage_index",
        "uploads",
        "user",
    )

    def __init__(self, user: SimUser) -> None:
        self.user = user
        plan = user.plan
        self.servers: list[str] = list(plan.servers) if plan is not None else []
        self.uploads: list[tuple[UploadPartition, ...]] = [plan.servers[s].partitions for s in self.servers] if plan else []
        self.arrived = [0] * len(self.servers)
        self.stage_index: dict[tuple[int, ...], int] = {}
        if plan is not None:
            for k, stage in enumerate(plan.stages):
                key = tuple(int(stage.arrived.get(s, 0)) for s in self.servers)
                self.stage_index.setdefault(key, k)
        self.bound: dict[tuple[int, ...], _Bound] = {}
        self.solver: StageSolver | None = None
        self.active = False
        self.issued = 0
        self.completed = 0
        self.awake: ShareMeter  # its source device's awake time (set by the run: users of one source share it)


class _Query:
    """One query walking through its program (sequential or overlapped)."""

    __slots__ = (
        "a_op",
        "awake_in",
        "bound",
        "busy_c",
        "busy_rx",
        "busy_tx",
        "done",
        "e_total",
        "i",
        "op_log",
        "pending",
        "record",
        "run",
        "state",
        "t_op",
    )

    def __init__(self, run: _Run, state: _UserState, bound: _Bound, record: QueryRecord) -> None:
        self.run = run
        self.state = state
        self.bound = bound
        self.record = record
        # busy_c: its compute work on the source; busy_tx/rx: the airtime credited to the hops the source sends/receives
        self.busy_c = self.busy_tx = self.busy_rx = self.e_total = 0.0
        self.awake_in = state.awake.enter(1.0)  # in flight on its source from now to finish
        self.op_log: list[Span] | None = [] if run.config.record_ops else None

    # ----------------------------------------------------------- sequential
    def start_sequential(self) -> None:
        self.i = 0
        self._next()

    def _next(self) -> None:
        ops = self.bound.ops
        if self.i == len(ops):
            self.run.finish(self)
            return
        op = ops[self.i]
        self.t_op = self.run.env.now
        meter = self.bound.airtime[self.i]
        if meter is not None:
            self.a_op = meter.enter(self.bound.weights[self.i])
        if op.kind != TRANSFER or op.latency_s <= 0.0:
            self.bound.resources[self.i].submit(op.amount, self._seq_done, self.bound.weights[self.i])
        else:
            self.run.env.schedule(op.latency_s, self._seq_send)

    def _seq_send(self) -> None:
        self.bound.resources[self.i].submit(self.bound.ops[self.i].amount, self._seq_done, self.bound.weights[self.i])

    def _seq_done(self) -> None:
        meter = self.bound.airtime[self.i]
        air = 0.0 if meter is None else meter.leave(self.bound.weights[self.i], self.a_op)
        self._account(self.bound.ops[self.i], self.t_op, air)
        self.i += 1
        self._next()

    # ----------------------------------------------------------- overlapped
    def start_overlapped(self) -> None:
        bound = self.bound
        self.pending = list(bound.n_deps)
        self.done = 0
        self.t_op = [0.0] * len(bound.ops)
        self.a_op = [0.0] * len(bound.ops)
        for i, n in enumerate(self.pending):
            if n == 0:
                self._launch(i)

    def _launch(self, i: int) -> None:
        op = self.bound.ops[i]
        self.t_op[i] = self.run.env.now
        meter = self.bound.airtime[i]
        if meter is not None:
            self.a_op[i] = meter.enter(self.bound.weights[i])
        if op.kind != TRANSFER or op.latency_s <= 0.0:
            self.bound.resources[i].submit(op.amount, functools.partial(self._dag_done, i), self.bound.weights[i])
        else:
            self.run.env.schedule(op.latency_s, self._dag_send, i)

    def _dag_send(self, i: int) -> None:
        self.bound.resources[i].submit(self.bound.ops[i].amount, functools.partial(self._dag_done, i), self.bound.weights[i])

    def _dag_done(self, i: int) -> None:
        meter = self.bound.airtime[i]
        air = 0.0 if meter is None else meter.leave(self.bound.weights[i], self.a_op[i])
        self._account(self.bound.ops[i], self.t_op[i], air)
        self.done += 1
        for child in self.bound.children[i]:
            self.pending[child] -= 1
            if self.pending[child] == 0:
                self._launch(child)
        if self.done == len(self.bound.ops):
            self.run.finish(self)

    # ----------------------------------------------------------- bookkeeping
    def _account(self, op: Op, started: float, air_s: float) -> None:
        """Credit a finished operation: compute its work (the device serves one work-second per second, however
        shared), a message its work seconds as the hop's transmit/receive time (the cost model's hop time), a hop
        its part of its channel's airtime ``air_s`` (:class:`ShareMeter`)."""
        now = self.run.env.now
        if op.kind == COMPUTE:
            self.e_total += op.energy_j
            if op.role == ROLE_COMPUTE:
                self.busy_c += op.amount
        elif op.kind == MESSAGE:
            self.e_total += op.energy_j
            if op.role == ROLE_TX:
                self.busy_tx += op.amount
            elif op.role == ROLE_RX:
                self.busy_rx += op.amount
        else:
            self.e_total += op.power_w * air_s
            if op.role == ROLE_TX:
                self.busy_tx += air_s
            elif op.role == ROLE_RX:
                self.busy_rx += air_s
        if self.op_log is not None:
            if op.kind == COMPUTE:
                span = Span("compute", op.where, started, now, nodes=op.nodes, work_s=op.amount, where=op.where)
            elif op.kind == MESSAGE:  # like a transfer's: the hop's sender and receiver; where: the end doing the work
                span = Span("message", op.src, started, now, peer=op.dst, nodes=op.nodes, work_s=op.amount, where=op.where)
            else:
                span = Span("transfer", op.src, started, now, peer=op.dst, nodes=op.nodes, nbytes=int(op.amount), where=op.where)
            self.op_log.append(span)


class _Run:
    """The state of one run (built by :meth:`Simulation.run`)."""

    def __init__(self, users: Sequence[SimUser], config: SimConfig, event_loop: Callable[[], EventLoop]) -> None:
        self.config = config
        self.env = event_loop()
        self.queries: list[QueryRecord] = []
        self.arrivals: list[ArrivalRecord] = []
        self.devices: dict[str, ProblemDevice] = {}
        self.compute: dict[str, SharedResource] = {}
        self.links: dict[str, SharedResource] = {}
        self.link_latency: dict[str, float] = {}
        self.link_of: dict[str, Any] = {}
        self.upload_channels: dict[str, SharedResource] = {}
        self.airtime: dict[str, ShareMeter] = {}  # channel key -> its airtime among the query hops on it
        self.awake: dict[str, ShareMeter] = {}  # source device -> its awake time among the queries in flight from it
        self.states = [_UserState(u) for u in users]
        for state in self.states:
            state.awake = self.awake.setdefault(state.user.problem.source, ShareMeter(self.env))
        self._build(users)

    # ----------------------------------------------------------- resources
    def _build(self, users: Sequence[SimUser]) -> None:
        env, config = self.env, self.config
        names: set[str] = set()
        for user in users:
            if user.name in names:
                raise TiercutError(f"two simulated users are named {user.name!r}; rename one")
            names.add(user.name)
            for device in user.problem.devices:
                self.devices.setdefault(device.name, device)
            for link in user.problem.links:
                for hop in link.directions() if link.directional else link.directions()[:1]:
                    key = channel_key(link, hop.src, hop.dst)
                    known = self.links.get(key)
                    if known is None:
                        self.links[key] = SharedResource(env, key, hop.bandwidth_bytes_per_s, "ps")
                        self.airtime[key] = ShareMeter(env)
                        self.link_latency[key] = hop.latency_s
                        if not config.upload_shares_link:
                            self.upload_channels[key] = SharedResource(
                                env, f"{key} (uploads)", hop.bandwidth_bytes_per_s, "ps"
                            )
                    elif known.rate != hop.bandwidth_bytes_per_s or self.link_latency[key] != hop.latency_s:
                        raise TiercutError(
                            f"user {user.name!r} sees link {key} with {hop.bandwidth_bytes_per_s:g} B/s, another user "
                            f"with {known.rate:g} B/s; give every user the same environment"
                        )
                    self.link_of[key] = link
        for device in config.disciplines:
            if device not in self.devices:
                known = ", ".join(sorted(self.devices))
                raise TiercutError(f"discipline given for unknown device {device!r}; devices are {known}")
        for name in self.devices:
            discipline = config.disciplines.get(name, config.default_discipline)
            self.compute[name] = SharedResource(env, name, 1.0, discipline)
        for trace in config.traces:
            if self._trace_channel(trace) not in self.links:
                raise TiercutError(f"bandwidth trace for link {trace.a}-{trace.b}, which no user's problem has")

    def _trace_channel(self, trace: BandwidthTrace) -> str:
        """The channel a trace sets: the link's shared one, or its ``a -> b`` direction's when the link is directional."""
        symmetric = link_key(trace.a, trace.b)
        if symmetric in self.links:
            return symmetric
        return f"{trace.a}>{trace.b}"

    def bind(self, state: _UserState, program: Program, stage: int, planned_latency_s: float) -> _Bound:
        resources = [self.links[op.where] if op.kind == TRANSFER else self.compute[op.where] for op in program.ops]
        shares = state.user.shares
        weights = [float(shares.get(op.where, 1.0)) for op in program.ops] if shares else None
        airtime = [self.airtime[op.where] if op.kind == TRANSFER else None for op in program.ops]
        return _Bound(program, resources, stage, planned_latency_s, state.user.problem.source, weights, airtime)

    # ----------------------------------------------------------- processes
    def start(self) -> None:
        for trace in self.config.traces:
            self.env.process(self._trace_process(trace))
        for state in self.states:
            self.env.process(self._user_process(state))

    def _trace_process(self, trace: BandwidthTrace) -> Any:
        key = self._trace_channel(trace)
        link = self.links[key]
        channel = self.upload_channels.get(key)
        for t, bandwidth in trace.points:
            if t > self.env.now:
                yield self.env.timeout(t - self.env.now)
            link.set_rate(bandwidth)
            if channel is not None:
                channel.set_rate(bandwidth)

    def _user_process(self, state: _UserState) -> Any:
        env = self.env
        user = state.user
        if user.join_s > 0:
            yield env.timeout(user.join_s)
        state.active = True
        if user.leave_s is not None:
            env.schedule(user.leave_s - env.now, self._leave, state)
        for k, server in enumerate(state.servers):
            env.process(self._upload_process(state, k, server))
        arrivals = user.arrivals
        if isinstance(arrivals, BackToBack):
            self.issue(state)
            return
        if isinstance(arrivals, Poisson):
            rng = random.Random(user.seed)
            while True:
                yield env.timeout(rng.expovariate(arrivals.rate_hz))
                if not self._may_issue(state):
                    return
                self.issue(state)
        elif isinstance(arrivals, Periodic):
            while self._may_issue(state):
                self.issue(state)
                yield env.timeout(arrivals.interval_s)
        elif isinstance(arrivals, TraceArrivals):
            for t in arrivals.times_s:
                if t < env.now:
                    continue
                if t > env.now:
                    yield env.timeout(t - env.now)
                if not self._may_issue(state):
                    return
                self.issue(state)

    def _leave(self, state: _UserState) -> None:
        state.active = False

    def _may_issue(self, state: _UserState) -> bool:
        limit = state.user.max_queries
        return state.active and (limit is None or state.issued < limit)

    def _upload_process(self, state: _UserState, k: int, server: str) -> Any:
        env = self.env
        problem = state.user.problem
        source = problem.source
        if not problem.reachable(source, server):
            raise TiercutError(f"user {state.user.name!r} uploads to {server!r}, which no path of links joins to {source!r}")
        for i, part in enumerate(state.uploads[k]):
            if not state.active:
                return
            started = env.now
            path = problem.routing.path(source, server, float(part.param_bytes))
            for hop in path.hops:  # store-and-forward through the relays, as the cost model's routing
                key = channel_key(problem.link(hop.src, hop.dst), hop.src, hop.dst)
                channel = self.upload_channels.get(key, self.links[key])
                if hop.latency_s > 0:
                    yield env.timeout(hop.latency_s)
                yield channel.event(float(part.param_bytes))
            state.arrived[k] = i + 1
            self.arrivals.append(
                ArrivalRecord(state.user.name, server, i, part.nodes, part.param_bytes, started, env.now)
            )

    # ----------------------------------------------------------- queries
    def _current(self, state: _UserState) -> _Bound:
        key = tuple(state.arrived)
        bound = state.bound.get(key)
        if bound is not None:
            return bound
        user = state.user
        if user.plan is None and user.tiled_stages:
            from tiercut.cost.tiled import evaluate_tiled

            placement = dict(user.placement) if user.placement is not None else user.problem.local_placement()
            planned = evaluate_tiled(user.problem, placement, user.tiled_stages).latency_s
            bound = self.bind(state, compile_tiled_program(user.problem, placement, user.tiled_stages), -2, planned)
            state.bound[key] = bound
            return bound
        if user.plan is None:
            placement = dict(user.placement) if user.placement is not None else user.problem.local_placement()
            stage = -2
            compression = dict(user.cut_compression)
            planned = evaluate(user.problem, placement, compression=compression or None).latency_s
        else:
            stage = state.stage_index.get(key, -1)
            if stage >= 0:
                placement = user.plan.stages[stage].placement
                planned = user.plan.stages[stage].latency_s
            else:
                if state.solver is None:
                    state.solver = StageSolver(user.problem.restricted_to([user.problem.source, *state.servers]))
                available = {
                    s: {n for part in state.uploads[j][: key[j]] for n in part.nodes} for j, s in enumerate(state.servers)
                }
                placement, planned = state.solver.solve(available)
        program = compile_program(user.problem, placement, self.config.execution, compression if user.plan is None else None)
        bound = self.bind(state, program, stage, planned)
        state.bound[key] = bound
        return bound

    def issue(self, state: _UserState) -> None:
        bound = self._current(state)
        record = QueryRecord(
            state.user.name, state.issued, self.env.now, stage=bound.stage, placement=bound.program.placement,
            devices=bound.devices, planned_latency_s=bound.planned_latency_s, bytes_sent=bound.bytes_sent,
            bytes_received=bound.bytes_received, bytes_moved=bound.program.bytes_moved,
        )
        state.issued += 1
        query = _Query(self, state, bound, record)
        if bound.program.execution == "sequential":
            query.start_sequential()
        else:
            query.start_overlapped()

    def finish(self, query: _Query) -> None:
        now = self.env.now
        record = query.record
        record.end_s = now
        program = query.bound.program
        # idle power over its share of the source's awake time, each activity's power over idle for its own part:
        # P_idle*awake + sum_X (P_X - P_idle)*busy_X, written as the cost model's formula (alone, awake = latency)
        awake = query.state.awake.leave(1.0, query.awake_in)
        busy = query.busy_c + query.busy_tx + query.busy_rx
        record.energy_source_j = (
            program.power_compute_w * query.busy_c
            + program.power_tx_w * query.busy_tx
            + program.power_rx_w * query.busy_rx
            + program.power_idle_w * (awake - busy)
        )
        record.energy_total_j = query.e_total
        if query.op_log is not None:
            record.spans = tuple(query.op_log)
        self.queries.append(record)
        state = query.state
        state.completed += 1
        arrivals = state.user.arrivals
        if isinstance(arrivals, BackToBack) and arrivals.think_s <= 0 and now <= record.start_s:
            raise TiercutError(
                f"user {state.user.name!r}'s query takes no time (no compute, transfer or latency); "
                "back-to-back queries would never advance the clock: give its layers compute times"
            )
        if isinstance(arrivals, BackToBack) and self._may_issue(state):
            if arrivals.think_s > 0:
                self.env.schedule(arrivals.think_s, self._issue_if_active, state)
            else:
                self.issue(state)

    def _issue_if_active(self, state: _UserState) -> None:
        if self._may_issue(state):
            self.issue(state)

    # ----------------------------------------------------------- results
    def result(self, wall_s: float) -> SimResult:
        resources = [
            ResourceSummary(name, "device", r.discipline, r.busy_s, r.served, r.completed) for name, r in self.compute.items()
        ]
        resources += [
            ResourceSummary(name, "link", r.discipline, r.busy_s, r.served, r.completed) for name, r in self.links.items()
        ]
        resources += [
            ResourceSummary(r.name, "upload channel", r.discipline, r.busy_s, r.served, r.completed)
            for r in self.upload_channels.values()
        ]
        return SimResult(
            queries=self.queries,
            arrivals=self.arrivals,
            users={s.user.name: (s.user.join_s, sum(len(p) for p in s.uploads)) for s in self.states},
            in_flight={s.user.name: s.issued - s.completed for s in self.states},
            resources=resources,
            end_s=self.env.now,
            events=self.env.events,
            wall_s=wall_s,
        )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a run (reference counting still frees everything).

    A run makes no reference cycle per event, but it keeps every query's
    record, and the collector's full passes over that growing trace cost
    about 30 % of a large run's CPU time (measured with
    ``benchmarks/simulator.py``); cycles made meanwhile are collected once
    the collector resumes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Simulation:
    """A simulation of ``users`` under ``config``; :meth:`run` does the work (every call a fresh run).

    ``event_loop`` makes the run's event loop: :class:`tiercut.sim.core.SimEnvironment`
    by default; ``benchmarks/simulator.py`` passes an adapter over SimPy's
    public API to measure the alternative the core was chosen against.
    """

    def __init__(
        self, users: Sequence[SimUser], config: SimConfig | None = None, *, event_loop: Callable[[], EventLoop] = SimEnvironment
    ) -> None:
        self.users = tuple(users)
        self.config = config or SimConfig()
        self.event_loop = event_loop

    def check(self) -> None:
        """Refuse a run that cannot end (a :class:`TiercutError` naming the user)."""
        if not self.users:
            raise TiercutError("a simulation needs at least one user")
        if self.config.duration_s is None:
            for user in self.users:
                bounded = user.max_queries is not None or user.leave_s is not None or isinstance(user.arrivals, TraceArrivals)
                if not bounded:
                    raise TiercutError(
                        f"user {user.name!r} issues queries forever; give the simulation a duration_s, or the user "
                        "max_queries or leave_s"
                    )

    def run(self, progress: Progress | None = None) -> SimResult:
        """Simulate; ``progress(now_s, total_s)`` is called at checkpoints of a run with a duration."""
        self.check()
        run = _Run(self.users, self.config, self.event_loop)
        start = time.perf_counter()
        with _collector_paused():
            run.start()
            duration = self.config.duration_s
            if duration is None:
                run.env.run()
            else:
                for step in range(1, PROGRESS_STEPS + 1):
                    run.env.run(until=duration * step / PROGRESS_STEPS)
                    if progress is not None:
                        progress(run.env.now, duration)
        wall = time.perf_counter() - start
        if duration is None and progress is not None:
            progress(run.env.now, run.env.now)
        return run.result(wall)


def simulate(users: Sequence[SimUser], config: SimConfig | None = None, progress: Progress | None = None) -> SimResult:
    """Run a simulation of ``users`` (see :class:`Simulation`)."""
    return Simulation(users, config).run(progress)


__all__ = ["PROGRESS_STEPS", "ShareMeter", "Simulation", "simulate"]
