"""The client of the migration seed's running phase: an upload thread and a query thread.

:class:`MigrationClient` runs a :class:`~tiercut.runtime.migration.MigrationPlan`
against workers:

* one **upload thread** per server sends that server's uploads in order and
  waits for each confirmation result (CR); on a failed CR it resends
  (bounded attempts, exponential backoff), recording every attempt. A worker
  that cannot be reached (or is busy) is probed again and again with a
  capped exponential backoff, for the whole run (or ``give_up_unreachable_s``),
  and used again as soon as it answers: killed mid-upload and restarted with
  its store, it gets the rest of the uploads and later queries use it. A
  worker that lost partitions (restarted without a store) is detected
  (``missing_weights`` CR, ``NOT_FOUND`` on a query) and its uploads resume
  from the first one it lacks;
* the **query thread** issues queries back to back (or at a rate) from
  t = 0; each runs on the best stage whose uploads are confirmed and whose
  workers are not suspect (:meth:`MigrationPlan.best_stage`): the client runs
  its own partitions, sends the values and the index of the next partition
  to the first server, which runs and forwards along the route. If a worker
  fails, the query goes on locally from the values the client holds (the
  client has the whole model), so no query fails; the worker is avoided for
  a while.

Network I/O runs on one event loop in a background thread (grpc.aio); the two
kinds of threads hand it coroutines. Every loop is bounded in count and
time (``max_run_s``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.runtime.codec import value_nbytes
from tiercut.runtime.migration import MigrationPlan, RuntimeStage, UploadItem
from tiercut.runtime.protocol import ConfirmationResult, Connection, RemoteError, reuse_message_memory, upload_timeout_s
from tiercut.runtime.route import ForwardResult, HopRecord, RouteError, run_route
from tiercut.trace import QueryRecord, Span

#: CR codes of an upload that did not reach a worker able to take it (probed again without counting an attempt)
_UNREACHABLE_CODES = frozenset({"unavailable", "timeout", "busy"})
#: worker failures after which queries avoid the worker for a while
_SUSPECT_CODES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "NOT_FOUND", "UNKNOWN", "CANCELLED", "INTERNAL", "RESOURCE_EXHAUSTED", "UNAUTHENTICATED"}
)
#: most queries a client keeps in flight at once (each holds a thread and a call on every worker of its route;
#: a worker serves ``max_concurrent_rpcs``, 64 by default)
MAX_IN_FLIGHT = 32


# --------------------------------------------------------------------- records
@dataclass(frozen=True)
class UploadAttempt:
    """One try at sending one upload.

    Times are seconds since the run started.
    """

    server: str
    partition_id: str
    position: int
    attempt: int
    start_s: float
    end_s: float
    ok: bool
    code: str
    reason: str
    nbytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "partition_id": self.partition_id,
            "position": self.position,
            "attempt": self.attempt,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "ok": self.ok,
            "code": self.code,
            "reason": self.reason,
            "bytes": self.nbytes,
        }


@dataclass(frozen=True)
class RunResult:
    """The measured trace of one run.

    Attributes:
        model, source, algorithm: what ran.
        started_at: ``time.time()`` at t = 0.
        queries: every query, in order.
        attempts: every upload attempt, in order of completion.
        confirmed_s: server -> time each upload was confirmed (last confirmation if resent).
        upload_end_s: when the last upload was confirmed (None if some never were).
        abandoned: servers whose uploads were given up, with the reason.
        uploads: the uploads' descriptions (bytes, programs, planned figures).
        duration_s: wall time of the run.
        outputs: query index -> its output, kept when outputs are verified (for accuracy on labelled inputs).
        in_flight: the queries allowed in flight at once (``RunSettings.in_flight``).
        peak_in_flight: the most that were in flight at once (never above ``in_flight``).
    """

    model: str
    source: str
    algorithm: str
    started_at: float
    queries: tuple[QueryRecord, ...]
    attempts: tuple[UploadAttempt, ...]
    confirmed_s: Mapping[str, tuple[float, ...]]
    upload_end_s: float | None
    abandoned: Mapping[str, str]
    uploads: tuple[Mapping[str, Any], ...]
    duration_s: float
    outputs: Mapping[int, Any] = field(default_factory=dict)
    in_flight: int = 1
    peak_in_flight: int = 0

    @property
    def failed_queries(self) -> int:
        return sum(1 for q in self.queries if q.error and not q.fallback)

    @property
    def fallbacks(self) -> int:
        return sum(1 for q in self.queries if q.fallback)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "source": self.source,
            "algorithm": self.algorithm,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "upload_end_s": self.upload_end_s,
            "abandoned": dict(self.abandoned),
            "uploads": [dict(u) for u in self.uploads],
            "attempts": [a.to_dict() for a in self.attempts],
            "confirmed_s": {k: list(v) for k, v in self.confirmed_s.items()},
            "queries": [q.to_dict() for q in self.queries],
        }

    def summary_lines(self) -> list[str]:
        """A short timeline summary for a person."""
        lines = [
            f"{self.model}: {len(self.queries)} queries in {self.duration_s:.2f} s "
            f"({self.algorithm or 'plan'}, source {self.source})"
        ]
        for upload in self.uploads:
            server, position = upload["server"], upload["position"]
            tries = [a for a in self.attempts if a.server == server and a.position == position]
            times = self.confirmed_s.get(server, ())
            confirmed = (
                f"confirmed at {times[position - 1]:.2f} s"
                if len(times) >= position and times[position - 1] >= 0
                else "never confirmed"
            )
            planned = upload.get("planned_arrives_s")
            planned_text = f" (plan {planned:.2f} s)" if planned else ""
            lines.append(
                f"  upload {server}#{position}: {upload['bytes'] / 1e6:.2f} MB, {len(tries)} attempt(s), "
                f"{confirmed}{planned_text}"
            )
        for server, reason in self.abandoned.items():
            lines.append(f"  gave up on {server}: {reason}")
        by_stage: dict[int, list[QueryRecord]] = {}
        for query in self.queries:
            by_stage.setdefault(query.stage, []).append(query)
        for stage, queries in sorted(by_stage.items()):
            mean = sum(q.latency_s for q in queries) / len(queries)
            planned = queries[0].planned_latency_s
            planned_text = f", plan {planned * 1e3:.1f} ms" if math.isfinite(planned) else ""
            devices = "+".join(queries[0].devices)
            lines.append(
                f"  stage {stage} ({devices}): {len(queries)} queries, from {queries[0].start_s:.2f} s, mean "
                f"{mean * 1e3:.1f} ms{planned_text}"
            )
        matched = [q.output_matches for q in self.queries if q.output_matches is not None]
        lines.append(
            f"  fallbacks to local: {self.fallbacks}, failed: {self.failed_queries}"
            + (f", outputs equal to the whole model: {sum(matched)}/{len(matched)}" if matched else "")
            + (f", all uploads confirmed at {self.upload_end_s:.2f} s" if self.upload_end_s is not None else "")
        )
        return lines


# --------------------------------------------------------------------- settings
@dataclass(frozen=True)
class RunSettings:
    """How a run behaves.

    Attributes:
        queries: number of queries.
        rate_hz: queries per second (None: back to back, the IONN model).
        max_attempts: attempts per upload the worker answers with a failed CR
            before giving up on its server (unreachable or busy workers are
            probed without counting).
        backoff_s, backoff_max_s: first and largest wait between attempts (doubling).
        give_up_unreachable_s: stop probing a worker unreachable this long
            (None: keep probing until the run ends).
        upload_timeout_floor_s: the least deadline of one upload attempt.
        query_timeout_s: deadline of one query's remote part.
        suspect_s: how long queries avoid a worker after it failed.
        fresh: make the workers forget this plan's partitions first (the
            IONN model's start: the server holds none of the parameters);
            otherwise partitions a worker already holds count as confirmed.
        verify_outputs: after the run, compare every query's output with the
            whole model's on the same input (atol 1e-5).
        max_run_s: bound on the whole run's wall time.
        keep_uploading_s: after the last query, how long to wait for
            unfinished uploads before stopping.
        queries_after_upload: keep issuing queries past ``queries`` until this
            many have started after every upload was confirmed (or given up);
            0: stop after ``queries``.
        max_extra_queries: bound on the queries issued past ``queries`` while
            waiting for the uploads.
        source_slowdown: compute emulation of a client slower than this host:
            after each of its partitions the client idles ``(slowdown - 1)``
            times the CPU time the partition used (1: this host's speed; as a
            worker's ``--compute-slowdown``, :func:`tiercut.runtime.worker.emulated_wait_s`),
            its compute stage busy meanwhile. For experiments on one machine
            where the described client is slower than the servers (the
            migration seed's 1.1 GHz clients).
        cut_compression: value name -> ``(bits, granularity)``: those tensors
            cross devices quantized and zstd-coded (JALAD; the plan's
            ``cut_compression``, :func:`tiercut.runtime.cut_codec.plan_wire_codecs`),
            to workers that advertise the codec; ``verify_outputs`` then
            compares with the model whose crossing values are dequantized.
        client_torch_device: where the client runs its own partitions
            (``cpu`` or a resolved ``cuda:N``); values cross to and from the
            device at the partition's edges, so what the client sends stays on
            the CPU.
        in_flight: queries in flight at once (pipelining across the tiers,
            :mod:`tiercut.runtime.pipelining`): query ``i + in_flight`` is not
            issued before query ``i``'s answer is delivered, and answers are
            delivered in query order (one that comes back early waits for
            those before it), so every stage (the client's compute, each
            link, each worker) and the reordering buffer hold at most
            ``in_flight`` queries. 1: one query at a time (the IONN model).
    """

    queries: int = 10
    rate_hz: float | None = None
    max_attempts: int = 8
    backoff_s: float = 0.05
    backoff_max_s: float = 2.0
    give_up_unreachable_s: float | None = None
    upload_timeout_floor_s: float = 10.0
    query_timeout_s: float = 60.0
    suspect_s: float = 1.0
    fresh: bool = True
    verify_outputs: bool = False
    max_run_s: float = 3600.0
    keep_uploading_s: float = 0.0
    queries_after_upload: int = 0
    max_extra_queries: int = 100_000
    source_slowdown: float = 1.0
    cut_compression: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    client_torch_device: str = "cpu"
    in_flight: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.in_flight, bool) or not isinstance(self.in_flight, int) or not 1 <= self.in_flight <= MAX_IN_FLIGHT:
            raise TiercutError(f"in-flight queries {self.in_flight!r} must be an integer in 1..{MAX_IN_FLIGHT}")
        if self.queries < 0:
            raise TiercutError(f"number of queries {self.queries} must be >= 0")
        if self.rate_hz is not None and not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise TiercutError(f"query rate {self.rate_hz} Hz must be a finite number > 0 (or none: back to back)")
        if self.max_attempts < 1:
            raise TiercutError(f"max_attempts {self.max_attempts} must be >= 1")
        for name in ("backoff_s", "backoff_max_s", "upload_timeout_floor_s", "query_timeout_s", "suspect_s", "max_run_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise TiercutError(f"run setting {name} is {value}; it must be a finite number >= 0")
        if not (math.isfinite(self.keep_uploading_s) and self.keep_uploading_s >= 0):
            raise TiercutError(f"keep-uploading time {self.keep_uploading_s} must be a finite number >= 0")
        if self.give_up_unreachable_s is not None and not self.give_up_unreachable_s >= 0:
            raise TiercutError(f"give_up_unreachable_s {self.give_up_unreachable_s} must be >= 0 (or none)")
        if not (math.isfinite(self.source_slowdown) and self.source_slowdown >= 1.0):
            raise TiercutError(f"source slowdown {self.source_slowdown} must be a finite number >= 1 (1: this host's speed)")
        if self.client_torch_device != "cpu" and not self.client_torch_device.startswith("cuda:"):
            raise TiercutError(
                f"client torch device {self.client_torch_device!r} is not resolved; use cpu or cuda:N "
                "(tiercut.profile.measure.resolve_torch_device)"
            )
        from tiercut.runtime.cut_codec import CutCodecError, wire_codecs

        try:
            wire_codecs({"cut_codec": {str(k): list(v) for k, v in self.cut_compression.items()}})
        except CutCodecError as exc:
            raise TiercutError(f"run setting cut_compression: {exc}") from None


def _crossing_values(graph: Any, placement: Mapping[str, str], source: str) -> list[str]:
    """The values a placement sends to another device (a graph output counts when it is not on the source)."""
    consumers = graph.consumers()
    out = []
    for node in graph:
        here = placement.get(node.name, source)
        there = {placement.get(w, source) for w in consumers[node.name]} | ({source} if node.is_output else set())
        if there - {here}:
            out.append(node.name)
    return out


def default_query_inputs(captured: Any) -> Callable[[int], tuple[Any, ...]]:
    """Query ``i``'s input: random normal values of the example input's shape, seeded by ``i``."""
    import torch

    examples = tuple(captured.example_inputs)

    def inputs(i: int) -> tuple[Any, ...]:
        generator = torch.Generator().manual_seed(1_000_003 + i)
        return tuple(
            torch.randn(x.shape, generator=generator, dtype=x.dtype)
            if isinstance(x, torch.Tensor) and x.is_floating_point()
            else x
            for x in examples
        )

    return inputs


# --------------------------------------------------------------------- shared state
class _LoopThread:
    """An asyncio event loop in a daemon thread; coroutines are submitted from other threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="tiercut-transport", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self.thread.start()

    def submit(self, coroutine: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


@dataclass(eq=False)
class _State:
    """What the threads share: confirmed uploads per server, suspect workers, stop flag."""

    servers: Sequence[str]
    confirmed: dict[str, int] = field(default_factory=dict)
    suspect_until: dict[str, float] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    settled: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)
    queries_done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def snapshot(self) -> tuple[dict[str, int], set[str]]:
        now = time.monotonic()
        with self.lock:
            usable = {s for s in self.servers if self.suspect_until.get(s, 0.0) <= now and s not in self.lost}
            return dict(self.confirmed), usable

    def confirm(self, server: str, count: int) -> None:
        with self.lock:
            self.confirmed[server] = count
            self.lock.notify_all()

    def mark_suspect(self, server: str, seconds: float) -> None:
        with self.lock:
            self.suspect_until[server] = time.monotonic() + seconds

    def mark_lost(self, server: str) -> None:
        with self.lock:
            self.lost.add(server)
            self.settled.discard(server)
            self.lock.notify_all()

    def mark_settled(self, server: str, settled: bool = True) -> None:
        """The server's uploads are all confirmed or given up (``settled``), or not any more."""
        with self.lock:
            if settled:
                self.settled.add(server)
            else:
                self.settled.discard(server)

    def uploads_settled(self) -> bool:
        with self.lock:
            return all(s in self.settled for s in self.servers)


class _Window:
    """At most ``size`` queries issued and not yet delivered; answers delivered in query order.

    :meth:`enter` waits for a free slot (the backpressure of ``in_flight``);
    :meth:`answered` takes a query's answer and returns every answer now
    deliverable in order, freeing their slots (an answer that came back
    before an earlier query's waits, holding its slot).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.peak = 0
        self._next = 0  # the next index to deliver
        self._issued: set[int] = set()
        self._ready: dict[int, Any] = {}
        self._lock = threading.Condition()

    def enter(self, index: int, stops: Sequence[threading.Event], deadline: float) -> bool:
        """Wait for a free slot and take it for ``index``; False if one of ``stops`` is set or ``deadline`` passes first."""
        with self._lock:
            while len(self._issued) >= self.size:
                if any(stop.is_set() for stop in stops) or time.monotonic() >= deadline:
                    return False
                self._lock.wait(timeout=0.05)
            self._issued.add(index)
            self.peak = max(self.peak, len(self._issued))
            return True

    def answered(
        self, index: int, answer: Any, deliver: Callable[[int, Any], None] | None = None
    ) -> list[tuple[int, Any]]:
        """Take ``index``'s answer; every answer now deliverable, in order, is passed to ``deliver`` (under the
        window's lock, so two threads never interleave their deliveries) and returned."""
        with self._lock:
            self._ready[index] = answer
            out = []
            while self._next in self._ready:
                item = (self._next, self._ready.pop(self._next))
                if deliver is not None:
                    deliver(*item)
                out.append(item)
                self._issued.discard(self._next)
                self._next += 1
            self._lock.notify_all()
            return out

    def abandon(self, index: int) -> None:
        """A query that ended in an unexpected error: its slot is freed and later answers are not held for it."""
        with self._lock:
            self._issued.discard(index)
            self._ready[index] = None
            self._lock.notify_all()


def _move(value: Any, device: str) -> Any:
    """``value`` with every tensor in it (nested tuples, lists, dicts) on ``device``; other leaves as they are."""
    if hasattr(value, "to") and hasattr(value, "device"):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(_move(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _move(v, device) for k, v in value.items()}
    return value


# --------------------------------------------------------------------- the client
@dataclass(eq=False)
class MigrationClient:
    """Runs a migration plan against workers (see the module docstring).

    Attributes:
        plan: uploads and stages (:func:`~tiercut.runtime.migration.prepare_migration`).
        connections: server device -> its :class:`~tiercut.runtime.protocol.Connection`.
        settings: :class:`RunSettings`.
        query_inputs: query index -> the model's inputs (default: seeded random).
        log: where progress lines go (None: nowhere).
    """

    plan: MigrationPlan
    connections: Mapping[str, Connection]
    settings: RunSettings = field(default_factory=RunSettings)
    query_inputs: Callable[[int], tuple[Any, ...]] | None = None
    log: Callable[[str], None] | None = None
    _on_device: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)  # partition -> module there
    #: the client's compute is one pipeline stage: one of its partitions runs at a time, whatever is in flight
    _compute_stage: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _peak_in_flight: int = field(default=0, init=False, repr=False)

    def _run_here(self, stage: RuntimeStage, index: int, values: Mapping[str, Any]) -> Mapping[str, Any]:
        """Run route step ``index`` of ``stage`` on the client: a partition, or a tiled stage's crop, tile or stitch."""
        from tiercut.runtime.worker import _run_cpu_s, emulated_wait_s

        slowdown, device = self.settings.source_slowdown, self.settings.client_torch_device
        with self._compute_stage:  # held through the emulated wait: the slow device is busy meanwhile
            start, cpu_start = time.perf_counter(), _run_cpu_s(device)
            extra = stage.extra_steps.get(index)
            outputs = extra(values) if extra is not None else self.run_partition(stage.split.partitions[index], values)
            if slowdown > 1.0:
                time.sleep(emulated_wait_s(slowdown, _run_cpu_s(device) - cpu_start, time.perf_counter() - start, device))
            return outputs

    def run_partition(self, partition: Any, values: Mapping[str, Any]) -> dict[str, Any]:
        """Run one of the client's partitions on ``settings.client_torch_device``; its outputs come back on the CPU.

        On the CPU this is ``partition.run``. On a GPU the partition's module is
        copied there once (the captured model, which ``verify`` re-runs on the
        CPU, is left where it is), its inputs are moved in and its outputs
        moved back -- the move back waits for the GPU, so the partition's
        measured time is its GPU time.
        """
        device = self.settings.client_torch_device
        if device == "cpu":
            return partition.run(values)
        import copy

        import torch

        module = self._on_device.get(partition)  # by identity: each stage has its own partitions (and indices)
        if module is None:
            module = self._on_device.setdefault(partition, copy.deepcopy(partition.graph_module).to(device))
        with torch.no_grad():
            produced = module(*(_move(values[name], device) for name in partition.input_names))
        return dict(zip(partition.output_names, (_move(v, "cpu") for v in produced)))  # as Partition.run

    def _run_local_stage(self, inputs: tuple[Any, ...]) -> Any:
        split = self.plan.local_stage.split
        values: dict[str, Any] = dict(split.input_spec.bind(tuple(inputs)))
        for partition in split.partitions:
            values.update(self.run_partition(partition, {n: values[n] for n in partition.input_names}))
        return split.output_spec.build(values)

    def run(self) -> RunResult:
        """Upload and query concurrently; returns the measured trace (blocking)."""
        import torch

        plan, settings = self.plan, self.settings
        missing = [s for s in plan.servers if s not in self.connections]
        if missing:
            raise TiercutError(f"no worker address for server {missing[0]!r}; pass --workers {missing[0]}=HOST:PORT")
        inputs_of = self.query_inputs or default_query_inputs(plan.captured)
        reuse_message_memory()  # the client moves the same large messages as its workers (protocol.reuse_message_memory)
        for item in (i for items in plan.uploads.values() for i in items):
            item.data()  # encode every bundle before t = 0 (installation phase)
        with torch.no_grad():  # and warm the local kernels up once, so query 0 is not a cold start
            self._run_local_stage(inputs_of(0))
        loop = _LoopThread()
        loop.start()
        state = _State(plan.servers, confirmed={s: 0 for s in plan.servers})
        attempts: list[UploadAttempt] = []
        confirmed_s: dict[str, list[float]] = {s: [-1.0] * len(plan.uploads[s]) for s in plan.servers}
        abandoned: dict[str, str] = {}
        queries: list[QueryRecord] = []
        outputs: dict[int, Any] = {}
        try:
            self._prepare_workers(loop, state, confirmed_s)
            start_monotonic = time.monotonic()
            started_at = time.time()
            deadline = start_monotonic + settings.max_run_s
            uploaders = [
                threading.Thread(
                    target=self._upload_thread,
                    args=(loop, state, server, start_monotonic, deadline, attempts, confirmed_s, abandoned),
                    name=f"tiercut-upload-{server}",
                    daemon=True,
                )
                for server in plan.servers
            ]
            for thread in uploaders:
                thread.start()
            querier = threading.Thread(
                target=self._query_thread,
                args=(loop, state, inputs_of, start_monotonic, deadline, queries, outputs),
                name="tiercut-query",
                daemon=True,
            )
            querier.start()
            querier.join(timeout=max(0.0, deadline - time.monotonic()) + 5.0)
            state.queries_done.set()
            wait_until = min(deadline, time.monotonic() + settings.keep_uploading_s)
            for thread in uploaders:
                thread.join(timeout=max(0.0, wait_until - time.monotonic()))
            state.stop.set()
            with state.lock:
                state.lock.notify_all()
            for thread in uploaders:
                thread.join(timeout=30.0)
            duration = time.monotonic() - start_monotonic
        finally:
            state.stop.set()
            for connection in self.connections.values():
                with contextlib.suppress(Exception):  # closing is best effort
                    loop.submit(connection.close()).result(timeout=5)
            loop.stop()
        if settings.verify_outputs:
            queries = self._verify(queries, outputs, inputs_of)
        all_confirmed = [t for times in confirmed_s.values() for t in times]
        upload_end = max(all_confirmed) if all_confirmed and min(all_confirmed) >= 0 else (0.0 if not all_confirmed else None)
        return RunResult(
            model=plan.model,
            source=plan.source,
            algorithm=plan.algorithm,
            started_at=started_at,
            queries=tuple(queries),
            attempts=tuple(attempts),
            confirmed_s={k: tuple(v) for k, v in confirmed_s.items()},
            upload_end_s=upload_end,
            abandoned=dict(abandoned),
            uploads=tuple(i.to_dict() for items in plan.uploads.values() for i in items),
            duration_s=duration,
            outputs=dict(outputs),
            in_flight=settings.in_flight,
            peak_in_flight=self._peak_in_flight,
        )

    # ----------------------------------------------------------- helpers
    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    def _prepare_workers(self, loop: _LoopThread, state: _State, confirmed_s: dict[str, list[float]]) -> None:
        """Fresh run: drop this plan's partitions on every worker; resume: count what they hold."""
        for server, items in self.plan.uploads.items():
            connection = self.connections[server]
            ids = [item.partition_id for item in items]
            try:
                if self.settings.fresh:
                    loop.submit(connection.drop(ids)).result(timeout=30)
                else:
                    status = loop.submit(connection.status()).result(timeout=30)
                    held = {p.get("partition_id"): p.get("sha256") for p in status.get("partitions", [])}
                    count = 0
                    for item in items:
                        if held.get(item.partition_id) != item.data()[1]:
                            break
                        count += 1
                        confirmed_s[server][count - 1] = 0.0
                    state.confirm(server, count)
            except (RemoteError, concurrent.futures.TimeoutError) as exc:
                self._say(f"worker {server} not reachable before the run ({exc}); starting anyway")

    def _upload_thread(
        self,
        loop: _LoopThread,
        state: _State,
        server: str,
        t0: float,
        deadline: float,
        attempts: list[UploadAttempt],
        confirmed_s: dict[str, list[float]],
        abandoned: dict[str, str],
    ) -> None:
        settings = self.settings
        items: tuple[UploadItem, ...] = self.plan.uploads[server]
        connection = self.connections[server]
        attempt_of: dict[int, int] = {}
        refusals_of: dict[int, int] = {}  # failed CRs of a worker that answered, per position
        probes = 0  # consecutive attempts that found the worker unreachable or busy
        unreachable_since: float | None = None
        to_send: dict[int, tuple[int, ...] | None] = {}  # position -> chunks the worker still lacks (None: all)

        def unreachable(reason: str) -> bool:
            """Note an unreachable worker and wait; True when it is time to give up on it."""
            nonlocal probes, unreachable_since
            now = time.monotonic()
            unreachable_since = now if unreachable_since is None else unreachable_since
            limit = settings.give_up_unreachable_s
            if limit is not None and now - unreachable_since >= limit:
                abandoned[server] = f"worker unreachable for {now - unreachable_since:.1f} s: {reason}"
                state.mark_settled(server)
                return True
            probes += 1
            state.mark_suspect(server, settings.suspect_s)
            self._backoff(state, probes)
            return False

        while not state.stop.is_set() and time.monotonic() < deadline:
            with state.lock:
                lost = server in state.lost
                next_position = state.confirmed.get(server, 0) + 1
            if lost:
                next_position = self._resync(loop, state, server, items, confirmed_s)
                if next_position is None:
                    if unreachable("it did not answer a status request while resynchronising"):
                        return
                    continue
            if next_position > len(items):
                with state.lock:  # everything confirmed: wait for a loss or the end
                    if server not in state.lost:
                        state.settled.add(server)
                    if state.queries_done.is_set():
                        return
                    state.lock.wait(timeout=0.2)
                continue
            item = items[next_position - 1]
            data, sha = item.data()
            attempt = attempt_of.get(item.position, 0) + 1
            attempt_of[item.position] = attempt
            timeout = upload_timeout_s(len(data), connection.shaper, floor_s=settings.upload_timeout_floor_s)
            start = time.monotonic()
            try:
                cr = loop.submit(
                    connection.upload(
                        item.partition_id,
                        data,
                        sha,
                        chunks=to_send.get(item.position),
                        sender=self.plan.source,
                        timeout_s=timeout,
                    )
                ).result(timeout=timeout + 10.0)
            except (concurrent.futures.TimeoutError, RemoteError) as exc:
                cr = ConfirmationResult(False, item.partition_id, "timeout", str(exc))
            end = time.monotonic()
            attempts.append(
                UploadAttempt(
                    server, item.partition_id, item.position, attempt, start - t0, end - t0, cr.ok, cr.code, cr.reason, len(data)
                )
            )
            if cr.ok:
                probes, unreachable_since = 0, None
                confirmed_s[server][item.position - 1] = end - t0
                with state.lock:
                    if server not in state.lost:
                        state.confirmed[server] = item.position
                    state.suspect_until.pop(server, None)
                    state.lock.notify_all()
                self._say(f"[{end - t0:8.3f}s] CR ok   {server}#{item.position} ({len(data) / 1e6:.2f} MB, attempt {attempt})")
                continue
            self._say(f"[{end - t0:8.3f}s] CR fail {server}#{item.position}: {cr.code} {cr.reason[:100]}")
            if cr.code in _UNREACHABLE_CODES:
                to_send.pop(item.position, None)  # a restarted worker kept no chunks: send everything again
                if unreachable(f"{cr.code}: {cr.reason[:200]}"):
                    return
                continue
            probes, unreachable_since = 0, None
            if cr.code == "incomplete" and cr.missing_chunks is not None:
                to_send[item.position] = cr.missing_chunks
            elif cr.code == "corrupt" and cr.sha256:
                to_send[item.position] = None  # complete but wrong: everything again
            if cr.code == "missing_weights":
                state.mark_lost(server)
                continue
            if not cr.retryable:
                abandoned[server] = f"upload {item.position} refused: {cr.code}: {cr.reason}"
                state.mark_settled(server)
                return
            refusals = refusals_of[item.position] = refusals_of.get(item.position, 0) + 1
            if refusals >= settings.max_attempts:
                abandoned[server] = f"upload {item.position} failed {refusals} times, last: {cr.code}: {cr.reason}"
                state.mark_settled(server)
                return
            self._backoff(state, refusals)

    def _backoff(self, state: _State, failures: int) -> None:
        delay = min(self.settings.backoff_max_s, self.settings.backoff_s * (2 ** max(0, failures - 1)))
        state.stop.wait(delay)

    def _resync(
        self, loop: _LoopThread, state: _State, server: str, items: Sequence[UploadItem], confirmed_s: dict[str, list[float]]
    ) -> int | None:
        """After a loss: ask the worker what it holds; returns the next upload position (None: unreachable)."""
        try:
            status = loop.submit(self.connections[server].status()).result(timeout=15)
        except (RemoteError, concurrent.futures.TimeoutError):
            return None
        held = {p.get("partition_id"): p.get("sha256") for p in status.get("partitions", [])}
        count = 0
        for item in items:
            if held.get(item.partition_id) != item.data()[1]:
                break
            count += 1
        for position in range(count + 1, len(items) + 1):
            confirmed_s[server][position - 1] = -1.0
        with state.lock:
            state.confirmed[server] = count
            state.lost.discard(server)
            state.lock.notify_all()
        self._say(f"worker {server} holds {count} of {len(items)} upload(s); resuming from #{count + 1}")
        return count + 1

    def _query_thread(
        self,
        loop: _LoopThread,
        state: _State,
        inputs_of: Callable[[int], tuple[Any, ...]],
        t0: float,
        deadline: float,
        queries: list[QueryRecord],
        outputs: dict[int, Any],
    ) -> None:
        settings = self.settings
        after_upload = 0
        limit = settings.queries + settings.queries_after_upload + settings.max_extra_queries
        window = _Window(settings.in_flight)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=settings.in_flight, thread_name_prefix="tiercut-query")

        def deliver(_: int, delivered: Any) -> None:  # called in query order
            if delivered is None:  # a query that ended in an unexpected error (re-raised below)
                return
            ready, answer = delivered
            queries.append(ready)
            if settings.verify_outputs:
                outputs[ready.index] = answer

        def one(index: int, inputs: tuple[Any, ...]) -> None:
            try:
                record, output = self._one_query(loop, state, index, inputs, t0)
            except BaseException:
                failed.set()  # as the one-at-a-time loop: an unexpected error ends the queries
                window.abandon(index)
                raise
            window.answered(index, (record, output), deliver)

        failed = threading.Event()
        running: list[concurrent.futures.Future[None]] = []
        try:
            for index in range(limit):
                if state.stop.is_set() or failed.is_set() or time.monotonic() >= deadline:
                    break
                if index >= settings.queries and (
                    settings.queries_after_upload == 0 or after_upload >= settings.queries_after_upload
                ):
                    break
                if state.uploads_settled():
                    after_upload += 1
                if settings.rate_hz is not None:
                    due = t0 + index / settings.rate_hz
                    wait = due - time.monotonic()
                    if wait > 0 and state.stop.wait(min(wait, max(0.0, deadline - time.monotonic()))):
                        break
                if not window.enter(index, (failed, state.stop), deadline):  # backpressure: wait for a free slot
                    break
                inputs = inputs_of(index)
                if settings.in_flight == 1:  # one at a time, on this thread
                    one(index, inputs)
                else:
                    running.append(pool.submit(one, index, inputs))
                    running = [f for f in running if not f.done() or f.exception() is not None]
            for future in running:
                future.result()
        finally:
            pool.shutdown(wait=True)
            self._peak_in_flight = max(self._peak_in_flight, window.peak)
            state.queries_done.set()
            with state.lock:
                state.lock.notify_all()

    def _one_query(
        self, loop: _LoopThread, state: _State, index: int, inputs: tuple[Any, ...], t0: float
    ) -> tuple[QueryRecord, Any]:
        plan, settings = self.plan, self.settings
        confirmed, usable = state.snapshot()
        stage = plan.best_stage(confirmed, usable)
        start = time.monotonic()
        wall_start = time.time()  # the hops carry time.time() bounds
        values: dict[str, Any] = dict(stage.split.input_spec.bind(inputs))
        records: list[HopRecord] = []
        counters = {"sent": 0, "received": 0}
        failed_at: list[int] = []
        exited: list[str] = []
        error = ""
        fallback = False
        future = loop.submit(self._run_remote(stage, values, records, counters, failed_at, exited))
        try:
            future.result(timeout=settings.query_timeout_s)
        except (RemoteError, RouteError, concurrent.futures.TimeoutError) as exc:
            fallback = True
            server = stage.route.steps[failed_at[-1]].device if failed_at else ""
            if isinstance(exc, concurrent.futures.TimeoutError):
                # the remote part may still be running: start over locally from the inputs
                future.cancel()
                error = f"query timed out after {settings.query_timeout_s} s"
                code = "DEADLINE_EXCEEDED"
                values = dict(stage.split.input_spec.bind(inputs))
                position = 0
            else:
                # the remote part has ended: go on locally from the values held before the failed forward
                error = str(exc)
                code = exc.code if isinstance(exc, RemoteError) else "INVALID_ARGUMENT"
                position = failed_at[-1] if failed_at else 0
                if not failed_at:
                    values = dict(stage.split.input_spec.bind(inputs))
            if server and code in _SUSPECT_CODES:
                state.mark_suspect(server, settings.suspect_s)
            if server and code == "NOT_FOUND":
                state.mark_lost(server)
            exited.clear()
            self._finish_locally(stage, position, values, records, exited)
        output = _query_output(stage, values, exited)
        end = time.monotonic()
        record = QueryRecord(
            user=plan.source,
            index=index,
            start_s=start - t0,
            end_s=end - t0,
            stage=stage.index,
            placement=stage.placement,
            devices=tuple(stage.devices) if not fallback else (plan.source,),
            planned_latency_s=stage.latency_s,
            bytes_sent=counters["sent"],
            bytes_received=counters["received"],
            bytes_moved=counters["sent"] + counters["received"],
            fallback=fallback,
            error=error,
            spans=tuple(_span(hop, wall_start, start - t0) for hop in records),
            exit=(exited[0] if exited else stage.last_exit) if stage.answer_name else "",
            transfers=_transfers(records) if stage.answer_name else (),
        )
        return record, output

    async def _run_remote(
        self,
        stage: RuntimeStage,
        values: dict[str, Any],
        records: list[HopRecord],
        counters: dict[str, int],
        failed_at: list[int],
        exited: list[str],
    ) -> None:
        plan = self.plan
        route = stage.route

        async def run_step(step: Any, inputs: Mapping[str, Any]) -> tuple[Mapping[str, Any], float]:
            begin = time.perf_counter()
            outputs = await asyncio.get_running_loop().run_in_executor(None, self._run_here, stage, step.index, inputs)
            return outputs, time.perf_counter() - begin

        async def forward(device: str, at: int, sent: Mapping[str, Any], wanted: list[str], chain: list[str]) -> ForwardResult:
            failed_at.append(at)
            hop, rest = route.next_hop(plan.source, device)
            connection = self.connections.get(hop)
            if connection is None:
                raise RouteError(f"the route relays through {hop!r}, which the client has no connection to")
            meta = {"route": route.to_dict(), "position": at, "chain": chain, "wanted": wanted, "from": plan.source}
            if rest:
                meta["via"] = rest
            if self.settings.cut_compression:
                meta["cut_codec"] = {n: list(spec) for n, spec in self.settings.cut_compression.items()}
            begin = time.time()
            reply = await connection.execute(meta, sent, timeout_s=self.settings.query_timeout_s)
            counters["sent"] += reply.bytes_sent
            counters["received"] += reply.bytes_received
            hops = [HopRecord.from_dict(r) for r in reply.frame.meta.get("records", [])]
            hops.append(
                HopRecord(
                    "forward",
                    plan.source,
                    at,
                    begin,
                    time.time(),
                    peer=device,
                    bytes_sent=reply.bytes_sent,
                    bytes_received=reply.bytes_received,
                    payload_sent=sum(value_nbytes(v) for v in sent.values()),
                    payload_received=sum(value_nbytes(v) for v in reply.frame.values.values()),
                )
            )
            position = int(reply.frame.meta.get("position", -1))
            exit_name = reply.frame.meta.get("exit", "")
            failed_at.pop()
            return ForwardResult(reply.frame.values, position, hops, exit=exit_name if isinstance(exit_name, str) else "")

        position = await run_route(route, plan.source, [], 0, values, run_step, forward, records, exited)
        if position != len(route):
            raise RouteError(f"the route stopped at position {position} of {len(route)}")

    def _finish_locally(
        self, stage: RuntimeStage, position: int, values: dict[str, Any], records: list[HopRecord], exited: list[str]
    ) -> None:
        """Run the rest of the stage's partitions here, from ``position`` (the client holds the whole model);
        an early exit of those steps fires here as it would have on its worker."""
        for step in stage.route.steps[position:]:
            begin = time.time()
            values.update(self._run_here(stage, step.index, {n: values[n] for n in step.input_names}))
            records.append(HopRecord("run", self.plan.source, step.index, begin, time.time(), compute_s=time.time() - begin))
            if step.exit is not None and step.exit.fires(values[step.exit.value]):
                exited.append(step.exit.name)
                return

    def _verify(
        self, queries: list[QueryRecord], outputs: Mapping[int, Any], inputs_of: Callable[[int], tuple[Any, ...]]
    ) -> list[QueryRecord]:
        import dataclasses

        import torch

        from tiercut.runtime.cut_codec import compressed_reference

        gm = self.plan.captured.graph_module
        codecs = dict(self.settings.cut_compression)
        checked = []
        for query in queries:
            output = outputs.get(query.index)
            crossing = [] if query.fallback or not codecs else _crossing_values(self.plan.captured.graph, query.placement,
                                                                                 self.plan.source)
            if crossing:
                expected = compressed_reference(gm, inputs_of(query.index), crossing, codecs)
            else:
                with torch.no_grad():
                    expected = gm(*inputs_of(query.index))
            if query.exit:  # a multi-exit network returns every exit's logits; the query answered with one
                expected = expected[self.plan.exit_positions[query.exit]]
            checked.append(dataclasses.replace(query, output_matches=_outputs_close(output, expected)))
        return checked


#: the trace's span kind of each kind of hop record.
_SPAN_KIND = {"run": "compute", "forward": "transfer", "relay": "relay"}


def _query_output(stage: RuntimeStage, values: Mapping[str, Any], exited: Sequence[str]) -> Any:
    """The query's answer: with exits the logits of the exit it left at (the last active one if none fired)."""
    if not stage.answer_name:
        return stage.split.output_spec.build(values)
    if exited:
        step = next(s for s in stage.route.steps if s.exit is not None and s.exit.name == exited[0])
        assert step.exit is not None
        return values[step.exit.value]
    return values[stage.answer_name]


def _transfers(records: Sequence[HopRecord]) -> tuple[tuple[str, str, int], ...]:
    """Every tensor transfer of a query's forwards, in the order they were made: (from, to, bytes) for the values
    sent, then (to, from, bytes) for the reply (a zero-byte direction is left out)."""
    out: list[tuple[str, str, int]] = []
    for hop in sorted((r for r in records if r.kind == "forward"), key=lambda r: r.start_s):
        if hop.payload_sent:
            out.append((hop.device, hop.peer, hop.payload_sent))
        if hop.payload_received:
            out.append((hop.peer, hop.device, hop.payload_received))
    return tuple(out)


def _span(hop: HopRecord, wall_start: float, start_s: float) -> Span:
    """A hop as a :class:`tiercut.trace.Span` in run seconds (``time.time()`` of ``start_s`` was ``wall_start``).

    A hop another host recorded carries that host's clock; on one host (or
    synchronised clocks) the bounds line up with the client's.
    """
    offset = start_s - wall_start
    return Span(
        _SPAN_KIND.get(hop.kind, hop.kind), hop.device, hop.start_s + offset, hop.end_s + offset, peer=hop.peer,
        work_s=hop.compute_s, nbytes=hop.bytes_sent + hop.bytes_received,
    )


def _outputs_close(got: Any, expected: Any) -> bool:
    import torch

    if isinstance(expected, torch.Tensor):
        return isinstance(got, torch.Tensor) and got.shape == expected.shape and bool(torch.allclose(got, expected, atol=1e-5))
    if isinstance(expected, (tuple, list)):
        return (
            isinstance(got, (tuple, list))
            and len(got) == len(expected)
            and all(_outputs_close(a, b) for a, b in zip(got, expected))
        )
    if isinstance(expected, dict):
        return (
            isinstance(got, dict) and got.keys() == expected.keys() and all(_outputs_close(got[k], expected[k]) for k in expected)
        )
    return bool(got == expected)


__all__ = ["MigrationClient", "QueryRecord", "RunResult", "RunSettings", "UploadAttempt", "default_query_inputs", "value_nbytes"]
