"""The worker: a gRPC service one runs per edge or cloud device (``tiercut serve``).

It receives partition bundles in chunks, verifies them (SHA-256 over the
whole bundle, then every weight digest and program id, then loads every
program: allow-list and propagation, :mod:`tiercut.runtime.interpreter`)
and answers a confirmation result; it executes partitions on received
values and returns the result or forwards it, with the index of the next
partition, to the next device (:func:`tiercut.runtime.route.run_route`).

It never imports, evals or unpickles anything it receives: bundles are
safetensors files, programs are checked data run by a fixed interpreter or
onnxruntime (:mod:`tiercut.runtime.artifact`), query values are frames
(:mod:`tiercut.runtime.codec`).

A client holding a valid token is still untrusted, so every resource a
client can make the worker hold is bounded (:class:`WorkerConfig`):

* bytes: an upload's buffer grows as its chunks arrive (never from the size
  it announces), and the bytes held for clients (chunks of incomplete
  uploads, query messages being received) are bounded per connection and in
  total (:class:`ByteBudget`); an upload has at most ``max_chunks_per_upload``
  chunks; at most ``max_pending_uploads`` incomplete uploads are kept, each
  for ``pending_ttl_s`` after its last chunk;
* calls: at most ``max_concurrent_rpcs`` at once (gRPC's own bound), at most
  ``max_concurrent_uploads`` uploads, and a call that sends nothing for
  ``idle_s`` is ended;
* execution: never on the event loop. Partition runs go to ``threads``
  executor threads with at most ``max_queued_runs`` waiting (beyond that the
  query is turned away as busy); a run stops at the next step once the
  query's deadline (the client's, at most ``max_query_s``) passes or the
  client goes away, and frees its memory; a program's intermediates are
  bounded when it is loaded (``max_run_bytes``). Hashing, parsing and
  admitting uploads use their own small executor, so Status and uploads
  are answered while long queries run.

Clients are kept apart: with ``client_tokens`` each client authenticates
with its own token, whose name is the *owner* of what it uploads. It runs,
lists and drops only its own partitions, and its programs may use only
weights it uploaded itself, while identical bytes are still stored once
(:class:`~tiercut.runtime.store.PartitionStore`). A forwarded query carries
its client's token to the next worker, so it runs there as the same owner.

Settings live in :class:`WorkerConfig`; :class:`Worker` serves them inside a
running event loop (:meth:`Worker.start`, :meth:`Worker.stop`);
:func:`run_worker` is the blocking entry point of ``tiercut serve``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hmac
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.runtime import cut_codec
from tiercut.runtime.artifact import DEFAULT_MAX_RUN_BYTES, ArtifactError, PartitionBundle, RunControl, sha256_hex
from tiercut.runtime.codec import DEFAULT_CHUNK_BYTES, CodecError, decode_chunks, encode_chunks, value_nbytes
from tiercut.runtime.health import WorkerHealth
from tiercut.runtime.interpreter import RunStoppedError
from tiercut.runtime.links import LinkTable, shaped
from tiercut.runtime.profiling import ProfileService, on_device
from tiercut.runtime.protocol import (
    AUTH_METADATA_KEY,
    REPLY_NEEDS_EXECUTE_TEXT,
    SERVICE,
    ConfirmationResult,
    Connection,
    Credentials,
    RemoteError,
    UploadHeader,
    decode_chunk,
    grpc_options,
    reuse_message_memory,
)
from tiercut.runtime.route import (
    MAX_RELAYS,
    MAX_ROUTE_NAMES,
    ForwardResult,
    HopRecord,
    Route,
    RouteError,
    Step,
    run_route,
)
from tiercut.runtime.store import SHARED_OWNER, MissingWeightsError, PartitionStore, StoreFullError

#: query frames smaller than this are decoded on the event loop (a copy at memory speed, not execution)
INLINE_DECODE_BYTES = 8 << 20
#: threads that hash, parse and admit uploads and decode large frames (apart from the execution threads)
AUX_THREADS = 2


class WorkerBusyError(TiercutError):
    """Every execution thread and queue slot is taken; the query should retry later or run elsewhere."""


class UnknownPartitionError(TiercutError):
    """A route names a partition program this worker does not hold."""


def _run_cpu_s(torch_device: str) -> float:
    """The CPU seconds a run on this thread has used so far: the thread's own when torch computes on it alone
    (one intra-op thread), else the process's (which then also counts concurrent runs)."""
    import torch

    if torch_device == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time()
    return time.process_time()


def emulated_wait_s(slowdown: float, cpu_s: float, wall_s: float, torch_device: str = "cpu") -> float:
    """How long a run that used ``cpu_s`` CPU seconds (``wall_s`` wall seconds) waits to look ``slowdown``
    times slower: ``(slowdown - 1) * cpu_s`` on the CPU (what the device would take for the same work, not
    the time spent waiting for a core), ``(slowdown - 1) * wall_s`` on a GPU (whose work is not CPU time)."""
    return max(0.0, (slowdown - 1.0) * (cpu_s if torch_device == "cpu" else wall_s))


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise TiercutError(f"address {text!r} is not host:port; write e.g. 127.0.0.1:50051")
    if not 0 <= int(port) <= 65535:
        raise TiercutError(f"port {port} of {text!r} is out of range 0..65535")
    return host.strip("[]"), int(port)


def parse_peers(text: str | None) -> dict[str, str]:
    """``edge=127.0.0.1:50051,cloud=127.0.0.1:50052`` -> {device: address}."""
    peers: dict[str, str] = {}
    if not text:
        return peers
    for item in text.split(","):
        name, sep, address = item.strip().partition("=")
        if not sep or not name:
            raise TiercutError(f"worker entry {item!r} is not name=host:port; write e.g. edge=127.0.0.1:50051")
        parse_address(address)
        if name in peers:
            raise TiercutError(f"device {name!r} is given two addresses; give one")
        peers[name] = address
    return peers


def read_client_tokens(path: Path) -> dict[str, str]:
    """Client name -> token from a private file of ``NAME TOKEN`` lines (``#`` comments) for ``client_tokens``.

    The file must not be readable by group or others (``chmod 600``), as a
    token file of ``tiercut deploy``; each name and token is checked by
    :class:`WorkerConfig`.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TiercutError(f"cannot read the client token file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if mode & 0o077:
        raise TiercutError(f"client token file {path} is readable by others; run chmod 600 {path}")
    tokens: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:
            raise TiercutError(f"{path}:{number} is not 'NAME TOKEN'; write one client per line")
        name, token = fields
        if name in tokens:
            raise TiercutError(f"{path}:{number} names client {name[:64]!r} a second time; give each client one line")
        tokens[name] = token
    if not tokens:
        raise TiercutError(f"client token file {path} names no client; write 'NAME TOKEN' lines")
    return tokens


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback interface."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def memory_usage() -> dict[str, int]:
    """Resident and peak resident bytes of this process (Linux ``/proc``; zeros elsewhere)."""
    usage = {"rss_bytes": 0, "peak_rss_bytes": 0}
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    usage["rss_bytes"] = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    usage["peak_rss_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return usage


class BudgetExceededError(TiercutError):
    """Holding more bytes for clients would pass a bound (per connection or in total)."""


@dataclass(eq=False)
class ByteBudget:
    """Bytes a worker holds for its clients, bounded per connection and in total.

    Used from the event loop only (no lock). ``peer`` is gRPC's name of the
    connection (``ipv4:10.0.0.5:41234``).
    """

    total_limit: int
    per_peer_limit: int
    total: int = 0
    by_peer: dict[str, int] = field(default_factory=dict)

    def reserve(self, peer: str, nbytes: int) -> None:
        held = self.by_peer.get(peer, 0)
        if held + nbytes > self.per_peer_limit:
            raise BudgetExceededError(
                f"this connection would hold {held + nbytes} bytes pending, more than the worker's bound of "
                f"{self.per_peer_limit} per connection (--max-pending-bytes-per-peer)"
            )
        if self.total + nbytes > self.total_limit:
            raise BudgetExceededError(
                f"the worker would hold {self.total + nbytes} bytes pending for its clients, more than its bound of "
                f"{self.total_limit} (--max-pending-bytes); retry later"
            )
        self.by_peer[peer] = held + nbytes
        self.total += nbytes

    def release(self, peer: str, nbytes: int) -> None:
        held = self.by_peer.get(peer, 0) - nbytes
        if held > 0:
            self.by_peer[peer] = held
        else:
            self.by_peer.pop(peer, None)
        self.total -= nbytes


#: characters of a client's name (``WorkerConfig.client_tokens``)
_CLIENT_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(eq=False)
class _PartialUpload:
    """Chunks of an upload received so far (kept for a resend of the missing ones).

    Chunks are kept as they arrived (views of the received messages) and
    joined only once all are in: memory grows with the data, never with the
    size the header announces. Each chunk is charged to the connection that
    sent it.
    """

    header: UploadHeader
    chunks: dict[int, memoryview] = field(default_factory=dict)
    charged: dict[str, int] = field(default_factory=dict)
    updated_s: float = field(default_factory=time.monotonic)

    @property
    def received_bytes(self) -> int:
        return sum(len(c) for c in self.chunks.values())

    def release(self, budget: ByteBudget) -> None:
        for peer, nbytes in self.charged.items():
            budget.release(peer, nbytes)
        self.charged.clear()
        self.chunks.clear()


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of one worker.

    Attributes:
        device: the device name it serves (as in the environment).
        listen: ``host:port`` to bind (port 0: any free port).
        credentials: token and/or mutual TLS; with neither, anyone who can
            reach the port may use the worker (loopback and tests only).
            Clients holding ``credentials.token`` (or all clients, without
            tokens) are one owner, :data:`~tiercut.runtime.store.SHARED_OWNER`.
        client_tokens: client name -> its own token, each also accepted; a
            client's partitions and weights are its own (it cannot run,
            list, use the weights of or drop another client's). Give every
            worker of a deployment the same table: a forwarded query runs on
            the next worker as its client (:func:`read_client_tokens` reads
            one from a private file).
        store_dir: folder where confirmed partitions persist (None: memory only).
        max_message_bytes: largest upload or query frame accepted.
        max_store_bytes: bound on the weights and programs held.
        peers: device -> ``host:port`` of the workers it may forward to.
        links: emulated outgoing links (None: no emulation).
        chunk_bytes: bytes per gRPC message it sends.
        threads: threads executing partitions concurrently.
        torch_threads: intra-op threads of torch (None: torch's default).
        peer_timeout_s: deadline of a forward to a peer.
        pending_ttl_s: how long the chunks of an incomplete upload are kept for a resend.
        max_pending_bytes: bytes held for clients at once (incomplete uploads'
            chunks, query messages being received), in total.
        max_pending_bytes_per_peer: the same, per client connection.
        max_chunks_per_upload: chunks one upload may announce.
        max_concurrent_uploads: uploads received at once.
        max_pending_uploads: incomplete uploads kept for a resend at once.
        max_pending_uploads_per_client: the same, per client (token owner), so
            one client cannot take every slot from the others.
        max_concurrent_rpcs: calls served at once (gRPC's ``maximum_concurrent_rpcs``).
        max_queued_runs: partition runs waiting for an execution thread; more
            are turned away as busy.
        max_run_bytes: intermediates one run of a program may hold at once
            (checked when the program is loaded, on fake tensors).
        max_query_s: the longest a query may run here (a client's shorter
            deadline wins).
        idle_s: a call that sends no message for this long is ended.
        allow_onnx: also run ``onnx`` programs (in onnxruntime, under their own
            op-type allow-list and static shape check); off by default, so
            a worker runs allow-listed ATen programs only.
        compute_slowdown: emulate a device this many times slower than this
            host: every partition run then sleeps ``k - 1`` times the CPU
            time it used (:func:`emulated_wait_s`: on a core shared with
            other processes its wall time would count their work too, and a
            sleep leaves the core to them, so slowed workers sharing cores do
            not inflate each other), and every profiled call waits ``k - 1``
            times its own duration (:mod:`tiercut.runtime.profiling`); 1: off.
        torch_device: where partitions and profiles run (``cpu`` or ``cuda[:N]``).
        cut_compression: accept values compressed at a cut (JALAD:
            :mod:`tiercut.runtime.cut_codec`), advertised in ``Status``; off, a
            compressed query is refused and clients send raw tensors.
        health_listen: ``host:port`` of a plaintext port serving only the
            gRPC health service (:mod:`tiercut.runtime.health`; for probes that
            cannot speak TLS); None: health on the worker's own port only.
    """

    device: str
    listen: str = "127.0.0.1:0"
    credentials: Credentials = field(default_factory=Credentials)
    client_tokens: Mapping[str, str] = field(default_factory=dict)
    store_dir: Path | None = None
    max_message_bytes: int = 1 << 30
    max_store_bytes: int = 8 * 1024**3
    peers: Mapping[str, str] = field(default_factory=dict)
    links: LinkTable | None = None
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    threads: int = 4
    torch_threads: int | None = None
    peer_timeout_s: float = 600.0
    pending_ttl_s: float = 600.0
    max_pending_bytes: int = 2 << 30
    max_pending_bytes_per_peer: int = 1 << 30
    max_chunks_per_upload: int = 1 << 16
    max_concurrent_uploads: int = 8
    max_pending_uploads: int = 32
    max_pending_uploads_per_client: int = 8
    max_concurrent_rpcs: int = 64
    max_queued_runs: int = 16
    max_run_bytes: int = DEFAULT_MAX_RUN_BYTES
    max_query_s: float = 600.0
    idle_s: float = 60.0
    allow_onnx: bool = False
    compute_slowdown: float = 1.0
    torch_device: str = "cpu"
    health_listen: str | None = None
    cut_compression: bool = True

    def __post_init__(self) -> None:
        if not self.device:
            raise TiercutError("a worker needs a device name; pass --device")
        parse_address(self.listen)
        if self.health_listen is not None:
            parse_address(self.health_listen)
        for name in (
            "max_message_bytes",
            "max_store_bytes",
            "chunk_bytes",
            "threads",
            "max_pending_bytes",
            "max_pending_bytes_per_peer",
            "max_chunks_per_upload",
            "max_concurrent_uploads",
            "max_pending_uploads",
            "max_pending_uploads_per_client",
            "max_concurrent_rpcs",
            "max_run_bytes",
        ):
            value = getattr(self, name)
            if value <= 0:
                raise TiercutError(f"worker setting {name} is {value}; it must be > 0")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise TiercutError(f"worker setting torch_threads is {self.torch_threads}; it must be >= 1")
        if self.max_queued_runs < 0:
            raise TiercutError(f"worker setting max_queued_runs is {self.max_queued_runs}; it must be >= 0")
        for name in ("peer_timeout_s", "pending_ttl_s", "max_query_s", "idle_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise TiercutError(f"worker setting {name} is {value}; it must be a finite number > 0")
        if self.device in self.peers:
            raise TiercutError(f"worker {self.device!r} lists itself among its peers; drop that entry")
        tokens = [self.credentials.token] if self.credentials.token else []
        for name, token in self.client_tokens.items():
            if not isinstance(name, str) or not 0 < len(name) <= 64 or not set(name) <= _CLIENT_NAME or name == SHARED_OWNER:
                raise TiercutError(
                    f"client name {str(name)[:80]!r} must be 1-64 letters, digits, '_', '.' or '-', and not "
                    f"{SHARED_OWNER!r}; rename it"
                )
            if not isinstance(token, str) or not token or any(c.isspace() for c in token) or len(token) > 512:
                raise TiercutError(f"the token of client {name!r} must be 1-512 characters without spaces; give another")
            if token in tokens:
                raise TiercutError(f"the token of client {name!r} is also another client's or the shared one; give each its own")
            tokens.append(token)
        if not (math.isfinite(self.compute_slowdown) and 1.0 <= self.compute_slowdown <= 1000.0):
            raise TiercutError(f"compute slowdown {self.compute_slowdown} must be a number in [1, 1000] (1: this host's speed)")


def _shown(text: str, limit: int = 80) -> str:
    """A client-chosen string as it may appear in a log line: escaped and cut."""
    return ascii(text[:limit]) + ("..." if len(text) > limit else "")


@dataclass(eq=False)
class Worker:
    """A running worker service (create with a config, then ``await start()``)."""

    config: WorkerConfig
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))
    store: PartitionStore | None = field(default=None, init=False)
    port: int = field(default=0, init=False)
    counters: dict[str, int] = field(default_factory=dict, init=False)
    _server: Any = field(default=None, init=False, repr=False)
    _executor: Any = field(default=None, init=False, repr=False)
    _aux_executor: Any = field(default=None, init=False, repr=False)
    _run_slots: Any = field(default=None, init=False, repr=False)
    _runs_waiting: int = field(default=0, init=False, repr=False)
    _runs_waiting_peak: int = field(default=0, init=False, repr=False)  # the most runs that waited at once
    _runs_active: int = field(default=0, init=False, repr=False)
    _uploads_active: int = field(default=0, init=False, repr=False)
    _budget: ByteBudget | None = field(default=None, init=False, repr=False)
    _reaper: Any = field(default=None, init=False, repr=False)
    _peers: dict[str, Connection] = field(default_factory=dict, init=False, repr=False)
    _pending: dict[tuple[str, str], _PartialUpload] = field(default_factory=dict, init=False, repr=False)
    _device_programs: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _accepted: tuple[tuple[bytes, str], ...] = field(default=(), init=False, repr=False)
    _started_s: float = field(default=0.0, init=False, repr=False)
    health: Any = field(default=None, init=False, repr=False)

    # ----------------------------------------------------------- lifecycle
    async def start(self) -> int:
        """Open the store, bind and start serving; returns the bound port."""
        import grpc

        config = self.config
        if config.torch_threads:
            import torch

            torch.set_num_threads(config.torch_threads)
        self.store = PartitionStore(
            directory=config.store_dir,
            max_bytes=config.max_store_bytes,
            max_run_bytes=config.max_run_bytes,
            formats=("aten-json", "onnx") if config.allow_onnx else ("aten-json",),
        )
        report = self.store.open()
        if report.removed:
            self.log(f"[{config.device}] removed {len(report.removed)} leftover temporary file(s) from {config.store_dir}")
        if report.loaded:
            self.log(f"[{config.device}] reloaded {len(report.loaded)} partition(s) from {config.store_dir}")
        for partition_id, reason in report.dropped:
            self.log(f"[{config.device}] dropped stored partition {_shown(partition_id)}: {reason}")
        self._budget = ByteBudget(config.max_pending_bytes, config.max_pending_bytes_per_peer)
        accepted = [(config.credentials.token, SHARED_OWNER)] if config.credentials.token else []
        accepted += [(token, name) for name, token in config.client_tokens.items()]
        self._accepted = tuple((f"Bearer {token}".encode(), owner) for token, owner in accepted)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="tiercut-run")
        self._aux_executor = concurrent.futures.ThreadPoolExecutor(max_workers=AUX_THREADS, thread_name_prefix="tiercut-aux")
        self._run_slots = asyncio.Semaphore(config.threads)
        self._server = grpc.aio.server(
            options=grpc_options(config.chunk_bytes), maximum_concurrent_rpcs=config.max_concurrent_rpcs
        )
        handlers = {
            "Upload": grpc.stream_unary_rpc_method_handler(self._upload),
            "Execute": grpc.stream_stream_rpc_method_handler(self._execute),
            "Run": grpc.unary_unary_rpc_method_handler(self._run),
            "Status": grpc.unary_unary_rpc_method_handler(self._status),
            "Drop": grpc.unary_unary_rpc_method_handler(self._drop),
            "Profile": grpc.unary_unary_rpc_method_handler(ProfileService(self).handle),
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.health = WorkerHealth()
        await self.health.not_serving()
        self.health.register(self._server)
        try:
            if config.credentials.uses_tls:
                port = self._server.add_secure_port(config.listen, config.credentials.server_credentials())
            else:
                port = self._server.add_insecure_port(config.listen)
        except RuntimeError:  # grpcio >= 1.5x raises where older ones returned 0
            port = 0
        if not port:
            raise TiercutError(
                f"worker {config.device!r} cannot listen on {config.listen}; is the port free and the address local?"
            )
        if config.health_listen is not None:  # before the worker serves: a health port that cannot bind stops it
            health_port = await self.health.start_port(config.health_listen)
            self.log(f"[{config.device}] gRPC health service (Check only, plaintext) on port {health_port}")
        await self._server.start()
        await self.health.serving()
        self.port = port
        self._started_s = time.time()
        self._reaper = asyncio.get_running_loop().create_task(self._reap_pending())
        return port

    async def stop(self, grace_s: float = 1.0) -> None:
        if self.health is not None:
            await self.health.stopping(grace_s)
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        if self._server is not None:
            await self._server.stop(grace_s)
        for peer in self._peers.values():
            await peer.close()
        self._peers.clear()
        for executor in (self._executor, self._aux_executor):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    # ----------------------------------------------------------- helpers
    def _count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    async def _authorize(self, context: Any) -> str:
        """The caller's owner name (``SHARED_OWNER`` without per-client tokens); aborts on a missing or wrong token."""
        import grpc

        if not self._accepted:
            return SHARED_OWNER
        sent = _authorization(context).encode()
        owner = None
        for expected, name in self._accepted:  # each compared in constant time; no early exit
            if hmac.compare_digest(sent, expected):
                owner = name
        if owner is None:
            self._count("refused")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token; pass the worker's --token")
        return owner

    async def _in_aux(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run hashing, parsing or admission off the event loop (not on the execution threads)."""
        return await asyncio.get_running_loop().run_in_executor(self._aux_executor, function, *args)

    async def _next(self, iterator: Any) -> Any:
        """The next message of a client stream, or None when it ends; TimeoutError after ``idle_s`` of silence."""
        try:
            async with asyncio.timeout(self.config.idle_s):  # a timer on this task: no task per message
                return await iterator.__anext__()
        except StopAsyncIteration:
            return None

    def _peer(self, device: str) -> Connection:
        connection = self._peers.get(device)
        if connection is None:
            address = self.config.peers.get(device)
            if address is None:
                raise RouteError(
                    f"worker {self.config.device!r} must forward to {device[:80]!r} but has no address for it; "
                    f"start it with --peers {device[:80]}=HOST:PORT"
                )
            links = self.config.links
            connection = Connection(
                device=device,
                address=address,
                credentials=self.config.credentials,
                shaper=links.shaper(device) if links is not None else None,
                chunk_bytes=self.config.chunk_bytes,
                max_message_bytes=self.config.max_message_bytes,
                borrow_replies=True,  # the values only feed this worker's programs and replies, which never write them
            )
            self._peers[device] = connection
        return connection

    # ----------------------------------------------------------- Upload
    def _forget_pending(self, key: tuple[str, str]) -> None:
        partial = self._pending.pop(key, None)
        if partial is not None and self._budget is not None:
            partial.release(self._budget)

    def _expire_pending(self) -> None:
        now = time.monotonic()
        for key in [key for key, p in self._pending.items() if now - p.updated_s > self.config.pending_ttl_s]:
            self._forget_pending(key)
            self._count("uploads_expired")

    async def _reap_pending(self) -> None:
        """Expire idle incomplete uploads even when no upload comes to trigger it."""
        period = min(30.0, max(0.05, self.config.pending_ttl_s / 4))
        while True:
            await asyncio.sleep(period)
            self._expire_pending()

    async def _upload(self, request_iterator: Any, context: Any) -> bytes:
        import grpc

        owner = await self._authorize(context)
        config = self.config
        if self._uploads_active >= config.max_concurrent_uploads:
            self._count("uploads_busy")
            return ConfirmationResult(
                False, "", "busy", f"the worker receives {self._uploads_active} uploads already (its bound); retry later"
            ).to_bytes()
        self._uploads_active += 1
        try:
            return await self._receive_upload(request_iterator.__aiter__(), context, grpc, owner)
        except TimeoutError:
            self._count("uploads_idle")
            return ConfirmationResult(
                False, "", "timeout", f"the upload sent nothing for {config.idle_s:g} s; the worker ended it"
            ).to_bytes()
        finally:
            self._uploads_active -= 1

    async def _receive_upload(self, iterator: Any, context: Any, grpc: Any, owner: str) -> bytes:
        assert self.store is not None and self._budget is not None
        config = self.config
        first = await self._next(iterator)
        if first is None:
            return ConfirmationResult(False, "", "incomplete", "the upload carried no message").to_bytes()
        try:
            header = UploadHeader.from_bytes(first)
        except CodecError as exc:
            self._count("uploads_failed")
            return ConfirmationResult(False, "", "corrupt", str(exc)).to_bytes()
        if header.total_bytes > config.max_message_bytes:
            self._count("uploads_refused")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"partition {header.partition_id!r} of {header.total_bytes} bytes exceeds this worker's "
                f"--max-message-bytes {config.max_message_bytes}",
            )
        if header.chunk_count > config.max_chunks_per_upload:
            self._count("uploads_refused")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"partition {header.partition_id!r} comes in {header.chunk_count} chunks, more than this worker's bound "
                f"of {config.max_chunks_per_upload} per upload; send larger chunks",
            )
        self._expire_pending()
        key = (owner, header.partition_id)  # each client's incomplete uploads are its own
        partial = self._pending.get(key)
        if partial is None or partial.header != header:
            self._forget_pending(key)
            own = sum(1 for pending_owner, _ in self._pending if pending_owner == owner)
            if own >= config.max_pending_uploads_per_client:
                self._count("uploads_busy")
                return ConfirmationResult(
                    False,
                    header.partition_id,
                    "busy",
                    f"this client has {own} incomplete uploads here (the bound per client); "
                    "finish or let them expire, then retry",
                ).to_bytes()
            if len(self._pending) >= config.max_pending_uploads:
                self._count("uploads_busy")
                return ConfirmationResult(
                    False,
                    header.partition_id,
                    "busy",
                    f"the worker keeps {len(self._pending)} incomplete uploads (its bound); retry later",
                ).to_bytes()
            try:  # the whole upload counts, not what deduplication would add: fitting reveals no held weights
                self.store.check_capacity(header.total_bytes)
            except StoreFullError as exc:
                self._count("uploads_refused")
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            partial = _PartialUpload(header)
            self._pending[key] = partial
        peer = str(context.peer() or "")
        damaged = 0
        over_budget = ""
        while True:
            message = await self._next(iterator)
            if message is None:
                break
            chunk = decode_chunk(message)
            if chunk is None:
                damaged += 1
                continue
            offset, data = chunk
            index, remainder = divmod(offset, header.chunk_bytes)
            if remainder or index >= header.chunk_count or header.chunk_range(index)[1] != len(data):
                damaged += 1
                continue
            if index in partial.chunks or over_budget:
                continue
            try:
                self._budget.reserve(peer, len(data))
            except BudgetExceededError as exc:
                over_budget = str(exc)  # keep reading (the stream must end), keep nothing more
                continue
            partial.charged[peer] = partial.charged.get(peer, 0) + len(data)
            partial.chunks[index] = data
            partial.updated_s = time.monotonic()
        partial.updated_s = time.monotonic()
        received = partial.received_bytes

        def failure(code: str, reason: str, **extra: Any) -> bytes:
            self._count("uploads_failed")
            self.log(f"[{config.device}] {time.time():.3f} CR failure {header.partition_id}: {code}: {reason}")
            return ConfirmationResult(False, header.partition_id, code, reason, received_bytes=received, **extra).to_bytes()

        missing = [i for i in range(header.chunk_count) if i not in partial.chunks]
        if missing:
            code, reason = (
                ("busy", f"{over_budget}; {len(missing)} of {header.chunk_count} chunk(s) still to send")
                if over_budget
                else (
                    "incomplete",
                    f"{len(missing)} of {header.chunk_count} chunk(s) missing ({damaged} damaged message(s) ignored); "
                    "resend them",
                )
            )
            return failure(code, reason, missing_chunks=tuple(missing))
        data = b"".join(partial.chunks[i] for i in range(header.chunk_count))
        if self._pending.get(key) is partial:
            del self._pending[key]
        partial.chunks.clear()  # ``data`` holds the bytes now; the budget stays charged until they are processed
        try:
            digest = await self._in_aux(sha256_hex, data)
            if digest != header.sha256:
                return failure("corrupt", "the bytes received do not hash to the announced SHA-256", sha256=digest)
            bundle = await self._in_aux(PartitionBundle.from_bytes, data)
            if bundle.partition_id != header.partition_id:
                return failure("invalid", f"the bundle holds partition {bundle.partition_id!r}, not {header.partition_id!r}")
            stored = await self._in_aux(functools.partial(self.store.admit, bundle, data, digest, owner=owner))
        except MissingWeightsError as exc:
            return failure("missing_weights", str(exc), missing=tuple(exc.missing))
        except StoreFullError as exc:
            return failure("store_full", str(exc))
        except ArtifactError as exc:
            code = "conflict" if "already held" in str(exc) else "invalid"
            return failure(code, str(exc))
        finally:
            partial.release(self._budget)
        self._count("uploads_ok")
        self.log(
            f"[{config.device}] {time.time():.3f} CR ok {header.partition_id} ({received} bytes, "
            f"{len(stored.program_ids)} program(s))"
        )
        return ConfirmationResult(
            True,
            header.partition_id,
            "ok",
            "stored and verified",
            sha256=digest,
            received_bytes=received,
            programs=stored.program_ids,
        ).to_bytes()

    # ----------------------------------------------------------- Execute
    async def _run_step(
        self, step: Step, inputs: Mapping[str, Any], control: RunControl, owner: str = SHARED_OWNER
    ) -> tuple[Mapping[str, Any], float]:
        """Run one of ``owner``'s partitions on an execution thread (bounded queue; stops with ``control``)."""
        assert self.store is not None
        if step.program_id is None:
            raise RouteError(f"partition {step.index} is routed to worker {self.config.device!r} without a program id")
        program_id = step.program_id
        if not self.store.has_program(program_id, owner):  # another client's program is unknown to this one
            raise UnknownPartitionError(
                f"partition {step.index} (program {program_id[:12]!r}) is not on device {self.config.device!r}; "
                "upload it before querying it"
            )
        if self._runs_waiting >= self.config.max_queued_runs and self._runs_active >= self.config.threads:
            self._count("queries_busy")
            raise WorkerBusyError(
                f"worker {self.config.device!r} is busy: {self._runs_active} runs active and {self._runs_waiting} waiting "
                "(its bound); retry later"
            )
        store = self.store

        slowdown = self.config.compute_slowdown
        device = self.config.torch_device

        def timed() -> tuple[Mapping[str, Any], float]:
            program = store.program(program_id, owner)  # on this thread: rebuilding an evicted program takes time
            if program is None:
                raise UnknownPartitionError(f"partition {step.index} was dropped from device {self.config.device!r}")
            if device != "cpu":  # its weights copied to the GPU once
                program = self._device_programs.get(program_id) or self._device_programs.setdefault(
                    program_id, on_device(program, device))
            start, cpu_start = time.perf_counter(), _run_cpu_s(device)
            outputs = program.run(inputs, control)
            if slowdown > 1.0:
                time.sleep(emulated_wait_s(slowdown, _run_cpu_s(device) - cpu_start, time.perf_counter() - start, device))
            return outputs, time.perf_counter() - start

        self._runs_waiting += 1
        self._runs_waiting_peak = max(self._runs_waiting_peak, self._runs_waiting)
        try:
            await self._run_slots.acquire()
        finally:
            self._runs_waiting -= 1
        self._runs_active += 1
        try:
            self._count("steps_run")
            future = asyncio.get_running_loop().run_in_executor(self._executor, timed)
            try:
                return await asyncio.shield(future)
            except RunStoppedError:
                self._count_stopped(control)
                raise
            except asyncio.CancelledError:
                control.cancelled.set()  # the caller went away (or its deadline passed): the run stops at its next step
                with contextlib.suppress(BaseException):
                    await future  # hold the slot until the thread is free again
                self._count_stopped(control)
                raise
        finally:
            self._runs_active -= 1
            self._run_slots.release()

    def _count_stopped(self, control: RunControl) -> None:
        self._count("runs_stopped")
        self._count("stopped_runs_steps_done", control.steps_done)

    async def _admit_message(self, context: Any, grpc: Any, peer: str, received: int, nbytes: int) -> None:
        """Charge ``nbytes`` more of a query message to its connection's budget (after ``received``), or abort."""
        assert self._budget is not None
        config = self.config
        if received + nbytes > config.max_message_bytes:
            self._count("queries_refused")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"query message exceeds this worker's --max-message-bytes {config.max_message_bytes}",
            )
        try:
            self._budget.reserve(peer, nbytes)
        except BudgetExceededError as exc:
            self._count("queries_busy")
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"worker {config.device!r} is busy: {exc}")

    async def _receive_query(self, request_iterator: Any, context: Any, grpc: Any, charged: list[int]) -> list[bytes]:
        """The chunks of a query message, charged to the connection's budget as they arrive (``charged[0]``).

        The caller releases the charge when the query ends: its decoded values
        (views of these chunks) take as many bytes while it runs.
        """
        config = self.config
        peer = str(context.peer() or "")
        chunks: list[bytes] = []
        iterator = request_iterator.__aiter__()
        while True:
            try:
                chunk = await self._next(iterator)
            except TimeoutError:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED, f"the query sent nothing for {config.idle_s:g} s; the worker ended it"
                )
            if chunk is None:
                return chunks
            await self._admit_message(context, grpc, peer, charged[0], len(chunk))
            charged[0] += len(chunk)
            chunks.append(chunk)

    def _query_control(self, context: Any) -> RunControl:
        """The query's deadline: the client's, at most ``max_query_s`` from now."""
        remaining = context.time_remaining()
        limit_s = self.config.max_query_s if remaining is None else min(self.config.max_query_s, max(0.0, remaining))
        return RunControl(deadline_s=time.monotonic() + limit_s)

    async def _execute(self, request_iterator: Any, context: Any) -> Any:
        """``Execute``: a query frame in any number of messages, answered the same way."""
        import grpc

        owner = await self._authorize(context)
        assert self._budget is not None
        control = self._query_control(context)
        charged = [0]
        try:
            chunks = await self._receive_query(request_iterator, context, grpc, charged)
            reply, shaper = await self._answer(chunks, context, control, owner)
            if shaper is None:
                for chunk in reply:
                    yield chunk
            else:
                async for chunk in shaped(reply, shaper):
                    yield chunk
        finally:  # the query's bytes (its message, then its values) are held until it ends
            self._budget.release(str(context.peer() or ""), charged[0])

    async def _run(self, request: bytes, context: Any) -> bytes:
        """``Run``: a query frame in one message, answered with one message (one gRPC batch each way)."""
        import grpc

        owner = await self._authorize(context)
        assert self._budget is not None
        control = self._query_control(context)
        peer = str(context.peer() or "")
        await self._admit_message(context, grpc, peer, 0, len(request))
        try:
            reply, shaper = await self._answer([request], context, control, owner)
            if len(reply) > 1:
                self._count("queries_reply_too_large")
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"the reply takes {len(reply)} messages of at most {self.config.chunk_bytes} bytes; "
                    f"{REPLY_NEEDS_EXECUTE_TEXT}",
                )
            if shaper is not None:
                async for _ in shaped(reply, shaper):
                    pass
            return reply[0]
        finally:
            self._budget.release(peer, len(request))

    async def _answer(
        self, chunks: list[bytes], context: Any, control: RunControl, owner: str
    ) -> tuple[list[bytes], Any]:
        """Decode ``owner``'s query, run its route from here, encode the reply: (reply messages, shaper of the link back)."""
        import grpc

        config = self.config
        sent = _authorization(context)  # forwarded as it came: the next worker runs the query for the same client
        forward_metadata = ((AUTH_METADATA_KEY, sent),) if sent else None
        total = sum(len(c) for c in chunks)
        try:
            if total < INLINE_DECODE_BYTES:
                frame = decode_chunks(chunks, max_bytes=config.max_message_bytes, borrow=True)
            else:
                frame = await self._in_aux(
                    functools.partial(decode_chunks, chunks, max_bytes=config.max_message_bytes, borrow=True)
                )
        except CodecError as exc:
            self._count("queries_damaged")
            await context.abort(grpc.StatusCode.DATA_LOSS, f"query message is damaged: {exc}")
        chunks.clear()  # tensors within one chunk view it (and keep it); the caller's charge lasts until the query ends
        meta = frame.meta
        try:
            route = Route.from_dict(meta.get("route"))
            position = meta.get("position", 0)
            chain = meta.get("chain", [])
            wanted = meta.get("wanted", [])
            query_id = meta.get("query_id", "")
            if not isinstance(position, int) or isinstance(position, bool):
                raise RouteError("the route position is not an integer")
            for what, names in (("call chain", chain), ("wanted values", wanted)):
                if not isinstance(names, list) or len(names) > MAX_ROUTE_NAMES or not all(isinstance(n, str) for n in names):
                    raise RouteError(f"the {what} is not a list of at most {MAX_ROUTE_NAMES} names")
            sender = meta.get("from", chain[-1] if chain else "")
            if not isinstance(sender, str) or not isinstance(query_id, str):
                raise RouteError("the sender or query id is not a string")
        except RouteError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"query message has no valid route: {exc}")
        via = meta.get("via")
        if via:
            timeout_s = max(0.001, min(config.peer_timeout_s, control.deadline_s - time.monotonic()))
            return await self._relay(context, frame, via, sender, timeout_s, forward_metadata)
        values = dict(frame.values)
        codecs: dict[str, tuple[int, str]] = {}
        try:  # JALAD cut compression: decode what arrived compressed, within the message budget
            codecs = cut_codec.wire_codecs(meta) if config.cut_compression else {}  # off: raw onwards and back
            if meta.get(cut_codec.META_COMPRESSED):
                if not config.cut_compression:
                    raise cut_codec.CutCodecError("this worker does not accept compressed values; send them raw")
                values = cut_codec.decompress_values(
                    values, meta[cut_codec.META_COMPRESSED], max_bytes=config.max_message_bytes
                )
        except cut_codec.CutCodecError as exc:
            self._count("queries_damaged")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"query message: {exc}")
        if not 0 <= position < len(route) or route.steps[position].device != config.device:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"partition position {position} of the route is not on device {config.device!r}",
            )

        async def forward(device: str, at: int, values: Mapping[str, Any], want: list[str], calls: list[str]) -> ForwardResult:
            hop, rest = route.next_hop(config.device, device)
            peer = self._peer(hop)
            out_meta = {
                "route": route.to_dict(),
                "position": at,
                "chain": calls,
                "wanted": want,
                "from": config.device,
                "query_id": query_id[:128],
            }
            if rest:
                out_meta["via"] = rest
            if codecs:
                out_meta[cut_codec.META_CODECS] = meta[cut_codec.META_CODECS]
            start = time.time()
            timeout_s = max(0.001, min(config.peer_timeout_s, control.deadline_s - time.monotonic()))
            reply = await peer.execute(out_meta, values, timeout_s=timeout_s, metadata=forward_metadata)
            records = [HopRecord.from_dict(r) for r in reply.frame.meta.get("records", [])]
            records.append(
                HopRecord(
                    "forward",
                    config.device,
                    at,
                    start,
                    time.time(),
                    peer=device,
                    bytes_sent=reply.bytes_sent,
                    bytes_received=reply.bytes_received,
                    payload_sent=sum(value_nbytes(v) for v in values.values()),
                    payload_received=sum(value_nbytes(v) for v in reply.frame.values.values()),
                )
            )
            exit_name = reply.frame.meta.get("exit", "")
            return ForwardResult(reply.frame.values, int(reply.frame.meta.get("position", -1)), records,
                                 exit=exit_name if isinstance(exit_name, str) else "")

        async def run_step(step: Step, inputs: Mapping[str, Any]) -> tuple[Mapping[str, Any], float]:
            return await self._run_step(step, inputs, control, owner)

        records: list[HopRecord] = []
        exited: list[str] = []
        try:
            end = await run_route(route, config.device, chain, position, values, run_step, forward, records, exited)
        except UnknownPartitionError as exc:
            self._count("queries_unknown")
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except WorkerBusyError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except RunStoppedError as exc:
            code = grpc.StatusCode.DEADLINE_EXCEEDED if exc.reason == "deadline" else grpc.StatusCode.CANCELLED
            await context.abort(code, str(exc))
        except RemoteError as exc:
            code = getattr(grpc.StatusCode, exc.code, grpc.StatusCode.UNAVAILABLE)
            await context.abort(code, str(exc))
        except (ArtifactError, RouteError, CodecError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        reply_meta: dict[str, Any] = {"position": end, "records": [r.to_dict() for r in records], "device": config.device}
        if exited:  # an early exit fired here or below: only its answer goes back (values holds just that)
            self._count("queries_exited")
            reply_meta["exit"] = exited[0]
            reply_values = dict(values)
        else:
            missing = [n for n in wanted if n not in values]
            if missing:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the route does not produce {missing[0][:80]!r} here")
            reply_values = {n: values[n] for n in wanted}
        reply_values, compressed = cut_codec.compress_values(reply_values, codecs)
        if compressed:
            reply_meta[cut_codec.META_COMPRESSED] = compressed
        reply_chunks = encode_chunks(reply_meta, reply_values, chunk_bytes=config.chunk_bytes)
        self._count("queries_ok")
        return reply_chunks, (config.links.shaper(sender) if config.links is not None and sender else None)

    async def _relay(
        self, context: Any, frame: Any, via: Any, sender: str, timeout_s: float, metadata: Any = None
    ) -> tuple[list[bytes], Any]:
        """Pass a query message on to the next device of its path and its reply back, computing nothing.

        The path (``via``: the devices after this one, the last the
        destination) is bounded and must not loop; the next device must be
        one of this worker's peers (the allow-list of where it may send).
        """
        import grpc

        config = self.config
        if (
            not isinstance(via, list)
            or not all(isinstance(d, str) and d for d in via)
            or len(via) > MAX_RELAYS
            or len(set(via)) != len(via)
            or config.device in via
        ):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "query message has a malformed relay path")
        try:
            peer = self._peer(via[0])
        except RouteError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        out_meta = {**frame.meta, "from": config.device}
        if len(via) > 1:
            out_meta["via"] = via[1:]
        else:
            out_meta.pop("via", None)
        start = time.time()
        try:
            reply = await peer.execute(out_meta, frame.values, timeout_s=timeout_s, metadata=metadata, decode_compressed=False)
        except RemoteError as exc:
            code = getattr(grpc.StatusCode, exc.code, grpc.StatusCode.UNAVAILABLE)
            await context.abort(code, str(exc))
        records = [r for r in reply.frame.meta.get("records", []) if isinstance(r, dict)]
        records.append(
            HopRecord(
                "relay", config.device, int(frame.meta.get("position", 0)), start, time.time(), peer=via[0],
                bytes_sent=reply.bytes_sent, bytes_received=reply.bytes_received,
            ).to_dict()
        )
        self._count("queries_relayed")
        reply_chunks = encode_chunks(
            {**reply.frame.meta, "records": records, "device": config.device},
            dict(reply.frame.values),
            chunk_bytes=config.chunk_bytes,
        )
        return reply_chunks, (config.links.shaper(sender) if config.links is not None and sender else None)

    # ----------------------------------------------------------- Status / Drop
    async def _status(self, request: bytes, context: Any) -> bytes:
        """What the worker holds for the caller (its own partitions only) and how loaded it is."""
        owner = await self._authorize(context)
        assert self.store is not None and self._budget is not None
        body = {
            "device": self.config.device,
            "pid": os.getpid(),
            "uptime_s": time.time() - self._started_s,
            "partitions": [
                {"partition_id": p.partition_id, "sha256": p.sha256, "nbytes": p.nbytes, "programs": list(p.program_ids)}
                for p in self.store.partitions(owner)
            ],
            "held_bytes": self.store.held_bytes,
            "max_store_bytes": self.config.max_store_bytes,
            "max_message_bytes": self.config.max_message_bytes,
            "pending_bytes": self._budget.total,
            "pending_uploads": len(self._pending),
            "uploads_active": self._uploads_active,
            "runs_active": self._runs_active,
            "runs_waiting": self._runs_waiting,
            "runs_waiting_peak": self._runs_waiting_peak,
            "max_queued_runs": self.config.max_queued_runs,
            "counters": dict(self.counters),
            "cut_codec": cut_codec.WIRE_FORMAT if self.config.cut_compression else None,
            **memory_usage(),
        }
        return json.dumps(body).encode()

    async def _drop(self, request: bytes, context: Any) -> bytes:
        """Forget the caller's partitions (listed, or all of its own); other clients' stay, even identical ones."""
        import grpc

        owner = await self._authorize(context)
        assert self.store is not None
        try:
            body = json.loads(request or b"{}")
            if body.get("all"):
                ids = [p.partition_id for p in self.store.partitions(owner)]
            else:
                ids = [str(p) for p in body.get("partition_ids", [])]
        except (UnicodeDecodeError, ValueError, AttributeError, TypeError, RecursionError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "drop request is not JSON with partition_ids or all")
        store = self.store
        dropped = await self._in_aux(lambda: [p for p in reversed(ids) if store.drop(p, owner)])
        self._device_programs.clear()  # device copies of dropped programs must not outlive them
        if dropped:
            self.log(f"[{self.config.device}] dropped {len(dropped)} partition(s)")
        return json.dumps({"dropped": dropped}).encode()


def _authorization(context: Any) -> str:
    """The ``authorization`` metadata a call carried ('' without)."""
    for key, value in context.invocation_metadata() or ():
        if key == AUTH_METADATA_KEY:
            return str(value)
    return ""


def run_worker(config: WorkerConfig, *, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (blocking). Prints ``listening on HOST:PORT`` once bound."""

    reuse_message_memory(config.chunk_bytes)

    async def main() -> None:
        worker = Worker(config)
        port = await worker.start()
        host, _ = parse_address(config.listen)
        shown = f"[{host}]" if ":" in host else host
        line = f"tiercut worker {config.device!r} listening on {shown}:{port}"
        (announce or (lambda text: print(text, flush=True)))(line)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await worker.stop()

    asyncio.run(main())


__all__ = [
    "ByteBudget",
    "UnknownPartitionError",
    "Worker",
    "WorkerBusyError",
    "WorkerConfig",
    "is_loopback",
    "memory_usage",
    "parse_address",
    "parse_peers",
    "read_client_tokens",
    "run_worker",
]
