"""The adaptive client: estimate the links, re-plan with hysteresis, upload in the background, switch between queries.

:class:`AdaptiveClient` runs a first :class:`~tiercut.runtime.migration.MigrationPlan`
like :class:`~tiercut.runtime.client.MigrationClient` (the same upload
threads, the same query path and local fallback), and on top of it:

1. every query's forwards and every confirmed upload of at least
   :data:`UPLOAD_SAMPLE_MIN_BYTES` feed a per-link
   estimator (:mod:`tiercut.runtime.estimator`); a link no transfer has
   measured for ``probe_interval_s`` is probed -- a query on a deployed stage
   that crosses it (its output thrown away), or a status round trip for the
   latency when nothing deployed crosses it;
2. at most every ``interval_s``, between queries, the planner re-plans the
   run's problem with the links as estimated (:func:`~tiercut.runtime.adapt.replan`)
   and the :class:`~tiercut.runtime.adapt.HysteresisController` decides;
3. on a switch to a placement already deployed (its partitions confirmed
   on the workers, e.g. the plan before a drop, or everything local) the
   next query uses it; otherwise a *deployment* is built in the background:
   the upload planner orders the new placement's partitions on the
   estimated problem, they are exported and uploaded by upload threads while
   the queries go on with the placement in use, and the next query after
   the last confirmation switches. One deployment is under way at a time.

Queries never wait for a decision or an upload, and each runs entirely on
one deployment's stage: a switch happens between two queries, so no query
sees half of two plans (and each is checked against the whole model with
``verify_outputs``). Deployments are kept: switching back costs nothing.
Each deployment's partitions carry their own copies of the weights (a
worker does not share weights across plans).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.runtime.adapt import AdaptSettings, Decision, HysteresisController, LinkSchedule, placement_key, replan
from tiercut.runtime.client import (
    MigrationClient,
    RunResult,
    RunSettings,
    UploadAttempt,
    _LoopThread,
    _State,
    default_query_inputs,
)
from tiercut.runtime.estimator import LinkEstimates, LinkSample, forward_samples, hops_of_records, hops_of_spans, upload_sample
from tiercut.runtime.migration import MigrationPlan, RuntimeStage
from tiercut.runtime.protocol import Connection, RemoteError, reuse_message_memory
from tiercut.trace import QueryRecord

#: an upload informs the link's bandwidth from this size on: below it, the worker's checking and storing of the
#: bundle (hashing, parsing its programs) is a large part of the time between sending and the confirmation
UPLOAD_SAMPLE_MIN_BYTES = 1 << 20


# --------------------------------------------------------------------- records
@dataclass(frozen=True)
class Switch:
    """A change of the deployment queries use.

    Attributes:
        at_s: the first query on the new deployment starts after this (run seconds).
        decided_s: when the controller decided it.
        from_plan, to_plan: deployment numbers.
        gain: the predicted relative gain at the decision.
        uploaded_bytes: bytes uploaded for it (0: already deployed).
    """

    at_s: float
    decided_s: float
    from_plan: int
    to_plan: int
    gain: float
    uploaded_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "at_s": self.at_s,
            "decided_s": self.decided_s,
            "from_plan": self.from_plan,
            "to_plan": self.to_plan,
            "gain": self.gain,
            "uploaded_bytes": self.uploaded_bytes,
        }


@dataclass(frozen=True)
class AdaptationTrace:
    """What adaptation did in a run.

    Attributes:
        settings: the adapt settings.
        decisions: every controller decision, in order.
        switches: every switch, in order.
        plans: per deployment: ``plan`` number, ``offloaded`` nodes per device, ``created_s``, ``ready_s``,
            ``upload_bytes``, ``predicted_latency_s`` (on the estimated problem it was made for).
        query_plans: per query (issue order), the deployment it ran on.
        estimates: ``(at_s, "a-b", bandwidth_bytes_per_s, latency_s)`` at each decision.
        probes: probes made (queries, status round trips).
        schedule: the bandwidth schedule applied (None: none).
    """

    settings: AdaptSettings
    decisions: tuple[Decision, ...]
    switches: tuple[Switch, ...]
    plans: tuple[Mapping[str, Any], ...]
    query_plans: tuple[int, ...]
    estimates: tuple[tuple[float, str, float, float], ...]
    probes: Mapping[str, int]
    schedule: LinkSchedule | None = None

    @property
    def solve_s(self) -> list[float]:
        return [d.solve_s for d in self.decisions]

    def overhead(self) -> dict[str, float]:
        """Re-planning time per decision: median, 90th percentile, max (seconds)."""
        values = sorted(self.solve_s)
        if not values:
            return {"decisions": 0, "median_s": math.nan, "p90_s": math.nan, "max_s": math.nan}
        return {
            "decisions": len(values),
            "median_s": statistics.median(values),
            "p90_s": values[min(len(values) - 1, int(0.9 * len(values)))],
            "max_s": values[-1],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_dict(),
            "overhead": self.overhead(),
            "decisions": [d.to_dict() for d in self.decisions],
            "switches": [s.to_dict() for s in self.switches],
            "plans": [dict(p) for p in self.plans],
            "query_plans": list(self.query_plans),
            "estimates": [list(e) for e in self.estimates],
            "probes": dict(self.probes),
            "schedule": None if self.schedule is None else self.schedule.to_dict(),
        }


@dataclass(frozen=True)
class AdaptiveRunResult(RunResult):
    """A :class:`~tiercut.runtime.client.RunResult` (its uploads, attempts and confirmations: the first
    deployment's) with what adaptation did."""

    adaptation: AdaptationTrace | None = None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.adaptation is not None:
            data["adaptation"] = self.adaptation.to_dict()
        return data

    def summary_lines(self) -> list[str]:
        lines = super().summary_lines()
        trace = self.adaptation
        if trace is None:
            return lines
        overhead = trace.overhead()
        lines.append(
            f"  adaptation ({trace.settings.estimator}, threshold {trace.settings.threshold:g}, dwell "
            f"{trace.settings.dwell_s:g} s): {len(trace.switches)} switch(es), {overhead['decisions']} decisions, "
            f"re-planning median {overhead['median_s'] * 1e3:.2f} ms"
        )
        for plan in trace.plans:
            mine = [q for q, p in zip(self.queries, trace.query_plans) if p == plan["plan"]]
            if mine:
                lines.append(
                    f"    plan {plan['plan']} ({'+'.join(plan['offloaded']) or 'local'}): {len(mine)} queries, mean "
                    f"{statistics.fmean(q.latency_s for q in mine) * 1e3:.1f} ms"
                )
        for switch in trace.switches:
            lines.append(
                f"    {switch.at_s:7.2f} s: plan {switch.from_plan} -> {switch.to_plan} (decided {switch.decided_s:.2f} s, "
                f"predicted gain {switch.gain:.0%}, uploaded {switch.uploaded_bytes / 1e6:.2f} MB)"
            )
        return lines


# --------------------------------------------------------------------- deployments
@dataclass(eq=False)
class _Deployment:
    """One placement's plan on the workers: its client (for its stages and uploads) and upload state."""

    ident: int
    key: tuple[tuple[str, str], ...]
    placement: dict[str, str]
    client: MigrationClient
    state: _State
    created_s: float
    predicted_latency_s: float
    decided_s: float = 0.0
    gain: float = 0.0
    attempts: list[UploadAttempt] = field(default_factory=list)
    confirmed_s: dict[str, list[float]] = field(default_factory=dict)
    abandoned: dict[str, str] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    ready_s: float | None = None
    fed: int = 0

    @property
    def plan(self) -> MigrationPlan:
        return self.client.plan

    def ready(self) -> bool:
        """Every upload confirmed (a deployment without servers is ready at once)."""
        with self.state.lock:
            return not self.abandoned and all(
                self.state.confirmed.get(s, 0) >= len(items) and s not in self.state.lost
                for s, items in self.plan.uploads.items()
            )

    def upload_bytes(self) -> int:
        return sum(len(i.data()[0]) for items in self.plan.uploads.values() for i in items)

    def describe(self) -> dict[str, Any]:
        offloaded: dict[str, int] = {}
        for _, device in self.key:
            offloaded[device] = offloaded.get(device, 0) + 1
        return {
            "plan": self.ident,
            "offloaded": offloaded,
            "created_s": self.created_s,
            "ready_s": self.ready_s,
            "upload_bytes": self.upload_bytes(),
            "predicted_latency_s": self.predicted_latency_s,
        }


def local_migration(migration: MigrationPlan) -> MigrationPlan:
    """A plan of ``migration``'s model with only its all-local stage (nothing to upload)."""
    stage = migration.local_stage
    return MigrationPlan(
        migration.model, migration.source, "local", migration.captured, {}, (stage,), migration.artifact_format,
        migration.exit_positions,
    )


# --------------------------------------------------------------------- the client
@dataclass(eq=False)
class AdaptiveClient:
    """Runs ``migration`` and adapts to the links as measured (see the module doc).

    Attributes:
        problem: the problem the run was planned on (client and servers, links as the environment gives them).
        migration: the first plan (:func:`~tiercut.runtime.migration.prepare_migration`).
        placement: the first plan's target placement (every node).
        connections: server device -> its connection (every server of ``problem`` the client may use).
        settings: run settings (queries, rate, verification...).
        adapt: adapt settings.
        label: the model's label (names the deployments' partitions).
        schedule: a bandwidth schedule applied during the run (None: none).
        apply_rate: how a scheduled rate is applied (default: the client's shapers in ``connections``).
        query_inputs, log: as :class:`~tiercut.runtime.client.MigrationClient`.
        replan: re-plan (False: keep the first plan, only estimate and apply the schedule -- the static
            baseline under the same schedule, without probes).
    """

    problem: Any
    migration: MigrationPlan
    placement: Mapping[str, str]
    connections: Mapping[str, Connection]
    settings: RunSettings = field(default_factory=RunSettings)
    adapt: AdaptSettings = field(default_factory=AdaptSettings)
    label: str = ""
    schedule: LinkSchedule | None = None
    apply_rate: Callable[[str, str, float], None] | None = None
    query_inputs: Callable[[int], tuple[Any, ...]] | None = None
    log: Callable[[str], None] | None = None
    replan: bool = True

    # ----------------------------------------------------------- setup
    def _check(self) -> None:
        if self.problem.source != self.migration.source:
            raise TiercutError(
                f"the adaptive run's problem is for client {self.problem.source!r}, its plan for {self.migration.source!r}"
            )
        missing = [s for s in self.migration.servers if s not in self.connections]
        if missing:
            raise TiercutError(f"no worker address for server {missing[0]!r}; pass --workers {missing[0]}=HOST:PORT")
        if self.schedule is not None:
            self.schedule.check_links(self.problem)

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    def _deployment(
        self, migration: MigrationPlan, placement: Mapping[str, str], now_s: float, predicted_s: float
    ) -> _Deployment:
        client = MigrationClient(migration, self.connections, self.settings, query_inputs=self.query_inputs, log=self.log)
        state = _State(migration.servers, confirmed={s: 0 for s in migration.servers})
        deployment = _Deployment(
            len(self._deployments), placement_key(placement, migration.source), dict(placement), client, state, now_s,
            predicted_s, confirmed_s={s: [-1.0] * len(migration.uploads[s]) for s in migration.servers},
        )
        with self._lock:
            self._deployments[deployment.key] = deployment
        return deployment

    def _start_uploads(self, deployment: _Deployment, loop: _LoopThread) -> None:
        for server in deployment.plan.servers:
            thread = threading.Thread(
                target=deployment.client._upload_thread,
                args=(loop, deployment.state, server, self._t0, self._deadline, deployment.attempts, deployment.confirmed_s,
                      deployment.abandoned),
                name=f"tiercut-upload-{server}-{deployment.ident}",
                daemon=True,
            )
            deployment.threads.append(thread)
            thread.start()

    # ----------------------------------------------------------- the run
    def run(self) -> AdaptiveRunResult:
        """Upload, query and adapt; returns the measured trace with the adaptation (blocking)."""
        import torch

        self._check()
        settings, adapt = self.settings, self.adapt
        inputs_of = self.query_inputs or default_query_inputs(self.migration.captured)
        self._inputs_of = inputs_of
        self._deployments: dict[tuple[tuple[str, str], ...], _Deployment] = {}
        self._lock = threading.Lock()
        self._estimates = LinkEstimates.for_problem(self.problem, adapt.estimator, **adapt.estimator_settings())
        self._controller = HysteresisController.of(adapt)
        self._decisions: list[Decision] = []
        self._switches: list[Switch] = []
        self._estimate_log: list[tuple[float, str, float, float]] = []
        self._probes = {"queries": 0, "status": 0, "failed": 0}
        self._pending: _Deployment | None = None
        self._building = False
        self._last_decision_s = -math.inf
        self._stop = threading.Event()
        self._t0 = time.monotonic()  # reset at the run's start
        reuse_message_memory()
        for item in (i for items in self.migration.uploads.values() for i in items):
            item.data()
        with torch.no_grad():
            MigrationClient(self.migration, self.connections, settings)._run_local_stage(inputs_of(0))
        loop = _LoopThread()
        loop.start()
        self._loop = loop
        queries: list[QueryRecord] = []
        outputs: dict[int, Any] = {}
        plan_of: list[int] = []
        threads: list[threading.Thread] = []
        try:
            predicted = self._predicted(self.placement)
            initial = self._deployment(self.migration, self.placement, 0.0, predicted)
            initial.client._prepare_workers(loop, initial.state, initial.confirmed_s)
            self._active = initial
            self._t0 = time.monotonic()
            started_at = time.time()
            self._deadline = self._t0 + settings.max_run_s
            if self.schedule is not None:
                apply = self.apply_rate or _connections_applier(self.connections, self.migration.source)
                threads.append(self.schedule.start(self._t0, apply, self._stop))
            self._start_uploads(initial, loop)
            if adapt.probe_interval_s > 0 and self.replan:
                prober = threading.Thread(target=self._probe_loop, name="tiercut-probe", daemon=True)
                prober.start()
                threads.append(prober)
            querier = threading.Thread(
                target=self._query_loop, args=(queries, outputs, plan_of), name="tiercut-query", daemon=True
            )
            querier.start()
            querier.join(timeout=max(0.0, self._deadline - time.monotonic()) + 5.0)
            for deployment in list(self._deployments.values()):
                deployment.state.queries_done.set()
            wait_until = min(self._deadline, time.monotonic() + settings.keep_uploading_s)
            for thread in initial.threads:
                thread.join(timeout=max(0.0, wait_until - time.monotonic()))
            duration = time.monotonic() - self._t0
        finally:
            self._stop.set()
            for deployment in list(self._deployments.values()):
                deployment.state.stop.set()
                deployment.state.queries_done.set()
                with deployment.state.lock:
                    deployment.state.lock.notify_all()
            for deployment in list(self._deployments.values()):
                for thread in deployment.threads:
                    thread.join(timeout=30.0)
            for thread in threads:
                thread.join(timeout=30.0)
            for connection in self.connections.values():
                with contextlib.suppress(Exception):  # closing is best effort
                    loop.submit(connection.close()).result(timeout=5)
            loop.stop()
        if settings.verify_outputs:
            queries = initial.client._verify(queries, outputs, inputs_of)
        times = [t for ts in initial.confirmed_s.values() for t in ts]
        upload_end = max(times) if times and min(times) >= 0 else (0.0 if not times else None)
        trace = AdaptationTrace(
            settings=adapt,
            decisions=tuple(self._decisions),
            switches=tuple(self._switches),
            plans=tuple(d.describe() for d in sorted(self._deployments.values(), key=lambda d: d.ident)),
            query_plans=tuple(plan_of),
            estimates=tuple(self._estimate_log),
            probes=dict(self._probes),
            schedule=self.schedule,
        )
        return AdaptiveRunResult(
            model=self.migration.model,
            source=self.migration.source,
            algorithm=self.migration.algorithm,
            started_at=started_at,
            queries=tuple(queries),
            attempts=tuple(initial.attempts),
            confirmed_s={k: tuple(v) for k, v in initial.confirmed_s.items()},
            upload_end_s=upload_end,
            abandoned=dict(initial.abandoned),
            uploads=tuple(i.to_dict() for items in self.migration.uploads.values() for i in items),
            duration_s=duration,
            outputs=dict(outputs),
            adaptation=trace,
        )

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _predicted(self, placement: Mapping[str, str]) -> float:
        from tiercut.cost import evaluate
        from tiercut.runtime.adapt import estimated_problem

        with self._lock:
            snapshot = self._estimates.snapshot(self._now())
        return float(evaluate(estimated_problem(self.problem, snapshot), placement).latency_s)

    # ----------------------------------------------------------- queries
    def _query_loop(self, queries: list[QueryRecord], outputs: dict[int, Any], plan_of: list[int]) -> None:
        settings = self.settings
        try:
            for index in range(settings.queries):
                if self._stop.is_set() or time.monotonic() >= self._deadline:
                    break
                if settings.rate_hz is not None:
                    wait = self._t0 + index / settings.rate_hz - time.monotonic()
                    if wait > 0 and self._stop.wait(min(wait, max(0.0, self._deadline - time.monotonic()))):
                        break
                self._take_pending()
                deployment = self._active
                record, output = deployment.client._one_query(
                    self._loop, deployment.state, index, self._inputs_of(index), self._t0
                )
                queries.append(record)
                plan_of.append(deployment.ident)
                if settings.verify_outputs:
                    outputs[index] = output
                self._observe_query(record)
                self._observe_uploads()
                self._decide()
        finally:
            for deployment in list(self._deployments.values()):
                deployment.state.queries_done.set()

    def _observe_query(self, record: QueryRecord) -> None:
        if record.fallback or not record.spans:
            return
        samples = forward_samples(hops_of_spans(record.spans))
        with self._lock:
            for a, b, sample in samples:
                self._estimates.observe(a, b, sample)

    def _observe_uploads(self) -> None:
        with self._lock:
            for deployment in list(self._deployments.values()):
                new = deployment.attempts[deployment.fed:]
                deployment.fed += len(new)
                for attempt in new:
                    sample = upload_sample(attempt)
                    if sample is not None and sample.nbytes >= UPLOAD_SAMPLE_MIN_BYTES:
                        self._estimates.observe(deployment.plan.source, attempt.server, sample)

    # ----------------------------------------------------------- decisions and switches
    def _decide(self) -> None:
        now = self._now()
        if now - self._last_decision_s < self.adapt.interval_s or self._building or self._pending is not None:
            return
        if not self._active.ready():
            return  # the plan in use is still uploading: one upload at a time
        self._last_decision_s = now
        with self._lock:
            snapshot = self._estimates.snapshot(now)
        for key, estimate in snapshot.items():
            a, b = sorted(key)
            self._estimate_log.append((now, f"{a}-{b}", estimate.bandwidth_bytes_per_s, estimate.latency_s))
        if not self.replan:
            return
        planned = replan(self.problem, snapshot, self._active.placement, self.adapt.algorithm)
        candidate = placement_key(planned.placement, self.problem.source)
        decision = self._controller.decide(
            now, planned.current_latency_s, planned.latency_s, candidate, self._active.key, planned.solve_s
        )
        self._decisions.append(decision)
        if decision.action != "switch":
            return
        self._say(
            f"[{now:8.3f}s] re-plan: predicted {planned.current_latency_s * 1e3:.1f} -> {planned.latency_s * 1e3:.1f} ms "
            f"({decision.gain:.0%} better for {decision.held_s:.2f} s)"
        )
        known = self._deployments.get(candidate)
        if known is not None:
            if known.ready():
                self._activate(known, now, decision.gain, 0)
            return
        self._building = True
        threading.Thread(
            target=self._build, args=(planned.placement, snapshot, now, decision.gain, planned.latency_s),
            name="tiercut-deploy", daemon=True,
        ).start()

    def _activate(self, deployment: _Deployment, decided_s: float, gain: float, uploaded: int) -> None:
        now = self._now()
        if deployment.ready_s is None:
            deployment.ready_s = now
        self._switches.append(Switch(now, decided_s, self._active.ident, deployment.ident, gain, uploaded))
        self._say(f"[{now:8.3f}s] switch: plan {self._active.ident} -> {deployment.ident}")
        self._active = deployment
        self._controller.reset()

    def _take_pending(self) -> None:
        pending = self._pending
        if pending is None:
            return
        if pending.ready():
            self._pending = None
            self._activate(pending, pending.decided_s, pending.gain, pending.upload_bytes())
        elif pending.abandoned:
            self._say(f"gave up deploying plan {pending.ident}: {next(iter(pending.abandoned.values()))}")
            self._pending = None

    def _build(self, placement: Mapping[str, str], snapshot: Mapping[frozenset[str], Any], decided_s: float, gain: float,
               predicted_s: float) -> None:
        """Plan the uploads of ``placement`` (upload planner, estimated problem), export and start them."""
        from tiercut.runtime.adapt import estimated_problem
        from tiercut.runtime.migration import prepare_migration
        from tiercut.upload import get_upload_planner

        try:
            source = self.problem.source
            if all(d == source for d in placement.values()):
                migration = local_migration(self.migration)
            else:
                estimated = estimated_problem(self.problem, snapshot)
                upload = get_upload_planner(self.adapt.upload_algorithm).solve(estimated, dict(placement))
                migration = prepare_migration(
                    self.migration.captured, upload, source=source, artifact_format=self.migration.artifact_format,
                    label=f"{self.label or self.migration.model}.adapt{len(self._deployments)}", problem=estimated,
                )
            missing = [s for s in migration.servers if s not in self.connections]
            if missing:
                raise TiercutError(f"the new plan uses {missing[0]!r}, which the client has no connection to")
            for item in (i for items in migration.uploads.values() for i in items):
                item.data()
            if self._stop.is_set():
                return
            deployment = self._deployment(migration, placement, self._now(), predicted_s)
            deployment.decided_s, deployment.gain = decided_s, gain
            if migration.servers:
                self._start_uploads(deployment, self._loop)
            self._pending = deployment
        except TiercutError as exc:
            self._say(f"could not deploy the new plan: {exc}")
        finally:
            self._building = False

    # ----------------------------------------------------------- probes
    def _probe_loop(self) -> None:
        """Every ``probe_interval_s``: a status round trip to each server (the latency's small samples), and a
        probe query over each server link no transfer measured in that time (its bandwidth)."""
        every = self.adapt.probe_interval_s
        servers = [d for d in self.problem.device_names if d != self.problem.source and d in self.connections]
        while not self._stop.wait(every):
            for server in servers:
                if self._stop.is_set():
                    return
                self._probe_status(server)
                with self._lock:
                    last = self._estimates.last_sample_s(self.problem.source, server)
                if self._now() - last >= every:
                    self._probe_query(server)

    def _probe_stage(self, server: str) -> tuple[_Deployment, RuntimeStage] | None:
        """A confirmed stage of a deployment whose first remote step is on ``server``."""
        for deployment in list(self._deployments.values()):
            confirmed, usable = deployment.state.snapshot()
            stage = deployment.plan.best_stage(confirmed, usable)
            remote = [s.device for s in stage.route.steps if s.device != self.problem.source]
            if remote and remote[0] == server:
                return deployment, stage
        return None

    def _probe_status(self, server: str) -> None:
        begin = time.monotonic()
        try:
            self._loop.submit(self.connections[server].status()).result(timeout=10)
        except (RemoteError, TiercutError, concurrent.futures.TimeoutError) as exc:
            self._probes["failed"] += 1
            self._say(f"status probe of {server} failed: {exc}")
            return
        self._probes["status"] += 1
        with self._lock:
            self._estimates.observe(self.problem.source, server, LinkSample(self._now(), 0, time.monotonic() - begin, 2))

    def _probe_query(self, server: str) -> None:
        found = self._probe_stage(server)
        if found is None:
            return
        deployment, stage = found
        values = dict(stage.split.input_spec.bind(self._inputs_of(0)))
        records: list[Any] = []
        try:
            self._loop.submit(
                deployment.client._run_remote(stage, values, records, {"sent": 0, "received": 0}, [], [])
            ).result(timeout=self.settings.query_timeout_s)
        except (RemoteError, TiercutError, concurrent.futures.TimeoutError) as exc:
            self._probes["failed"] += 1
            self._say(f"probe query over {server} failed: {exc}")
            return
        self._probes["queries"] += 1
        with self._lock:
            for a, b, sample in forward_samples(hops_of_records(records), at_s=self._now()):
                self._estimates.observe(a, b, sample)


def _connections_applier(connections: Mapping[str, Connection], source: str) -> Callable[[str, str, float], None]:
    from tiercut.runtime.adapt import shaper_applier

    return shaper_applier({d: c.shaper for d, c in connections.items() if c.shaper is not None}, source)


__all__ = ["AdaptationTrace", "AdaptiveClient", "AdaptiveRunResult", "Switch", "local_migration"]
