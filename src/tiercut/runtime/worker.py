"""The worker: a gRPC service one runs per edge or cloud device (``tiercut serve``).

It receives partition bundles in chunks, verifies them (SHA-256 over the
whole bundle, then every weight digest and program hash, then loads every
program) and answers a confirmation result; it executes partitions on
received values and returns the result or forwards it, with the index of the
next partition, to the next device (:func:`tiercut.runtime.route.run_route`).

It never imports, evals or unpickles anything it receives: bundles are
safetensors files, programs are checked data run by a fixed interpreter or
onnxruntime (:mod:`tiercut.runtime.artifact`), query values are frames
(:mod:`tiercut.runtime.codec`).

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
from tiercut.runtime.artifact import ArtifactError, PartitionBundle, sha256_hex
from tiercut.runtime.codec import DEFAULT_CHUNK_BYTES, CodecError, decode_chunks, encode_chunks
from tiercut.runtime.links import LinkTable, shaped
from tiercut.runtime.profiling import ProfileService, on_device, pause
from tiercut.runtime.protocol import (
    AUTH_METADATA_KEY,
    SERVICE,
    ConfirmationResult,
    Connection,
    Credentials,
    RemoteError,
    UploadHeader,
    decode_chunk,
    grpc_options,
)
from tiercut.runtime.route import ForwardResult, HopRecord, Route, RouteError, Step, run_route
from tiercut.runtime.store import MissingWeightsError, PartitionStore, StoreFullError

#: programs whose last run took less than this run on the event loop itself (no thread handoff)
INLINE_RUN_S = 0.0005
#: query frames smaller than this are decoded on the event loop (a copy at memory speed)
INLINE_DECODE_BYTES = 8 << 20


class UnknownPartitionError(TiercutError):
    """A route names a partition program this worker does not hold."""


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


@dataclass(eq=False)
class _PartialUpload:
    """Chunks of an upload received so far (kept for a resend of the missing ones)."""

    header: UploadHeader
    buffer: bytearray
    received: bytearray
    updated_s: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of one worker.

    Attributes:
        device: the device name it serves (as in the environment).
        listen: ``host:port`` to bind (port 0: any free port).
        credentials: token and/or mutual TLS; with neither, anyone who can
            reach the port may use the worker (loopback and tests only).
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
        compute_slowdown: emulate a device this many times slower than this
            host: every partition run and every profiled call waits ``k - 1``
            times its own duration (:mod:`tiercut.runtime.profiling`); 1: off.
        torch_device: where partitions and profiles run (``cpu`` or ``cuda[:N]``).
    """

    device: str
    listen: str = "127.0.0.1:0"
    credentials: Credentials = field(default_factory=Credentials)
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
    compute_slowdown: float = 1.0
    torch_device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.device:
            raise TiercutError("a worker needs a device name; pass --device")
        parse_address(self.listen)
        for name, value in (
            ("max_message_bytes", self.max_message_bytes),
            ("max_store_bytes", self.max_store_bytes),
            ("chunk_bytes", self.chunk_bytes),
            ("threads", self.threads),
        ):
            if value <= 0:
                raise TiercutError(f"worker setting {name} is {value}; it must be > 0")
        if self.device in self.peers:
            raise TiercutError(f"worker {self.device!r} lists itself among its peers; drop that entry")
        if not (math.isfinite(self.compute_slowdown) and 1.0 <= self.compute_slowdown <= 1000.0):
            raise TiercutError(f"compute slowdown {self.compute_slowdown} must be a number in [1, 1000] (1: this host's speed)")


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
    _peers: dict[str, Connection] = field(default_factory=dict, init=False, repr=False)
    _pending: dict[str, _PartialUpload] = field(default_factory=dict, init=False, repr=False)
    _last_run_s: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _device_programs: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _started_s: float = field(default=0.0, init=False, repr=False)

    # ----------------------------------------------------------- lifecycle
    async def start(self) -> int:
        """Open the store, bind and start serving; returns the bound port."""
        import grpc

        config = self.config
        if config.torch_threads:
            import torch

            torch.set_num_threads(config.torch_threads)
        self.store = PartitionStore(directory=config.store_dir, max_bytes=config.max_store_bytes)
        report = self.store.open()
        if report.loaded:
            self.log(f"[{config.device}] reloaded {len(report.loaded)} partition(s) from {config.store_dir}")
        for partition_id, reason in report.dropped:
            self.log(f"[{config.device}] dropped stored partition {partition_id}: {reason}")
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="tiercut-run")
        self._server = grpc.aio.server(options=grpc_options(config.chunk_bytes))
        handlers = {
            "Upload": grpc.stream_unary_rpc_method_handler(self._upload),
            "Execute": grpc.stream_stream_rpc_method_handler(self._execute),
            "Status": grpc.unary_unary_rpc_method_handler(self._status),
            "Drop": grpc.unary_unary_rpc_method_handler(self._drop),
            "Profile": grpc.unary_unary_rpc_method_handler(ProfileService(self).handle),
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        if config.credentials.uses_tls:
            port = self._server.add_secure_port(config.listen, config.credentials.server_credentials())
        else:
            port = self._server.add_insecure_port(config.listen)
        if not port:
            raise TiercutError(
                f"worker {config.device!r} cannot listen on {config.listen}; is the port free and the address local?"
            )
        await self._server.start()
        self.port = port
        self._started_s = time.time()
        return port

    async def stop(self, grace_s: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace_s)
        for peer in self._peers.values():
            await peer.close()
        self._peers.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    # ----------------------------------------------------------- helpers
    def _count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    async def _authorize(self, context: Any) -> None:
        import grpc

        token = self.config.credentials.token
        if not token:
            return
        metadata = dict(context.invocation_metadata() or ())
        sent = str(metadata.get(AUTH_METADATA_KEY, ""))
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            self._count("refused")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token; pass the worker's --token")

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _peer(self, device: str) -> Connection:
        connection = self._peers.get(device)
        if connection is None:
            address = self.config.peers.get(device)
            if address is None:
                raise RouteError(
                    f"worker {self.config.device!r} must forward to {device!r} but has no address for it; "
                    f"start it with --peers {device}=HOST:PORT"
                )
            links = self.config.links
            connection = Connection(
                device=device,
                address=address,
                credentials=self.config.credentials,
                shaper=links.shaper(device) if links is not None else None,
                chunk_bytes=self.config.chunk_bytes,
                max_message_bytes=self.config.max_message_bytes,
            )
            self._peers[device] = connection
        return connection

    # ----------------------------------------------------------- Upload
    def _pending_bytes(self, except_id: str = "") -> int:
        return sum(len(p.buffer) for pid, p in self._pending.items() if pid != except_id)

    def _expire_pending(self) -> None:
        now = time.monotonic()
        for partition_id in [pid for pid, p in self._pending.items() if now - p.updated_s > self.config.pending_ttl_s]:
            del self._pending[partition_id]

    async def _upload(self, request_iterator: Any, context: Any) -> bytes:
        import grpc

        await self._authorize(context)
        assert self.store is not None
        config = self.config
        iterator = request_iterator.__aiter__()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
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
        self._expire_pending()
        partial = self._pending.get(header.partition_id)
        if partial is None or partial.header != header:
            try:
                self.store.check_capacity(header.total_bytes + self._pending_bytes(header.partition_id))
            except StoreFullError as exc:
                self._count("uploads_refused")
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            partial = _PartialUpload(header, bytearray(header.total_bytes), bytearray(header.chunk_count))
            self._pending[header.partition_id] = partial
        damaged = 0
        async for message in iterator:
            chunk = decode_chunk(message)
            if chunk is None:
                damaged += 1
                continue
            offset, data = chunk
            index, remainder = divmod(offset, header.chunk_bytes)
            if remainder or index >= header.chunk_count or header.chunk_range(index)[1] != len(data):
                damaged += 1
                continue
            partial.buffer[offset : offset + len(data)] = data
            partial.received[index] = 1
        partial.updated_s = time.monotonic()
        received = sum(header.chunk_range(i)[1] for i, got in enumerate(partial.received) if got)

        def failure(code: str, reason: str, **extra: Any) -> bytes:
            self._count("uploads_failed")
            self.log(f"[{config.device}] {time.time():.3f} CR failure {header.partition_id}: {code}: {reason}")
            return ConfirmationResult(False, header.partition_id, code, reason, received_bytes=received, **extra).to_bytes()

        missing = [i for i, got in enumerate(partial.received) if not got]
        if missing:
            return failure(
                "incomplete",
                f"{len(missing)} of {header.chunk_count} chunk(s) missing ({damaged} damaged message(s) ignored); resend them",
                missing_chunks=tuple(missing),
            )
        if self._pending.get(header.partition_id) is partial:
            del self._pending[header.partition_id]
        data = bytes(partial.buffer)
        digest = await self._in_thread(sha256_hex, data)
        if digest != header.sha256:
            return failure("corrupt", "the bytes received do not hash to the announced SHA-256", sha256=digest)
        try:
            bundle = await self._in_thread(PartitionBundle.from_bytes, data)
            if bundle.partition_id != header.partition_id:
                return failure("invalid", f"the bundle holds partition {bundle.partition_id!r}, not {header.partition_id!r}")
            stored = await self._in_thread(self.store.admit, bundle, data, digest)
        except MissingWeightsError as exc:
            return failure("missing_weights", str(exc), missing=tuple(exc.missing))
        except StoreFullError as exc:
            return failure("store_full", str(exc))
        except ArtifactError as exc:
            code = "conflict" if "already held" in str(exc) else "invalid"
            return failure(code, str(exc))
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
    async def _run_step(self, step: Step, inputs: Mapping[str, Any]) -> tuple[Mapping[str, Any], float]:
        assert self.store is not None
        if step.program_id is None:
            raise RouteError(f"partition {step.index} is routed to worker {self.config.device!r} without a program id")
        program = self.store.program(step.program_id) if self.store.has_program(step.program_id) else None
        if program is None:
            raise UnknownPartitionError(
                f"partition {step.index} (program {step.program_id[:12]}) is not on device {self.config.device!r}; "
                "upload it before querying it"
            )

        slowdown = self.config.compute_slowdown
        if self.config.torch_device != "cpu":
            program = self._device_programs.setdefault(program.program_id, on_device(program, self.config.torch_device))

        def timed() -> tuple[Mapping[str, Any], float]:
            start = time.perf_counter()
            outputs = program.run(inputs)
            if slowdown > 1.0:
                pause((slowdown - 1.0) * (time.perf_counter() - start))
            seconds = time.perf_counter() - start
            self._last_run_s[program.program_id] = seconds
            return outputs, seconds

        self._count("steps_run")
        if self._last_run_s.get(program.program_id, math.inf) < INLINE_RUN_S:
            return timed()  # a handoff to a thread would cost more than the run itself
        return await self._in_thread(timed)

    async def _execute(self, request_iterator: Any, context: Any) -> Any:
        import grpc

        await self._authorize(context)
        config = self.config
        chunks: list[bytes] = []
        total = 0
        async for chunk in request_iterator:
            total += len(chunk)
            if total > config.max_message_bytes:
                self._count("queries_refused")
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"query message exceeds this worker's --max-message-bytes {config.max_message_bytes}",
                )
            chunks.append(chunk)
        try:
            if total < INLINE_DECODE_BYTES:
                frame = decode_chunks(chunks, max_bytes=config.max_message_bytes)
            else:
                frame = await self._in_thread(functools.partial(decode_chunks, chunks, max_bytes=config.max_message_bytes))
        except CodecError as exc:
            self._count("queries_damaged")
            await context.abort(grpc.StatusCode.DATA_LOSS, f"query message is damaged: {exc}")
        chunks = []
        meta = frame.meta
        try:
            route = Route.from_dict(meta.get("route"))
            position = int(meta.get("position", 0))
            chain = [str(d) for d in meta.get("chain", [])]
            wanted = [str(n) for n in meta.get("wanted", [])]
            sender = str(meta.get("from", chain[-1] if chain else ""))
            query_id = str(meta.get("query_id", ""))
        except (RouteError, TypeError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"query message has no valid route: {exc}")
        if not 0 <= position < len(route) or route.steps[position].device != config.device:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"partition position {position} of the route is not on device {config.device!r}",
            )

        async def forward(device: str, at: int, values: Mapping[str, Any], want: list[str], calls: list[str]) -> ForwardResult:
            peer = self._peer(device)
            out_meta = {
                "route": route.to_dict(),
                "position": at,
                "chain": calls,
                "wanted": want,
                "from": config.device,
                "query_id": query_id,
            }
            start = time.time()
            reply = await peer.execute(out_meta, values, timeout_s=config.peer_timeout_s)
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
                )
            )
            return ForwardResult(reply.frame.values, int(reply.frame.meta.get("position", -1)), records)

        values = dict(frame.values)
        records: list[HopRecord] = []
        try:
            end = await run_route(route, config.device, chain, position, values, self._run_step, forward, records)
        except UnknownPartitionError as exc:
            self._count("queries_unknown")
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except RemoteError as exc:
            code = getattr(grpc.StatusCode, exc.code, grpc.StatusCode.UNAVAILABLE)
            await context.abort(code, str(exc))
        except (ArtifactError, RouteError, CodecError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        missing = [n for n in wanted if n not in values]
        if missing:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the route does not produce {missing[0]!r} here")
        reply_chunks = encode_chunks(
            {"position": end, "records": [r.to_dict() for r in records], "device": config.device},
            {n: values[n] for n in wanted},
            chunk_bytes=config.chunk_bytes,
        )
        self._count("queries_ok")
        shaper = config.links.shaper(sender) if config.links is not None and sender else None
        if shaper is None:
            for chunk in reply_chunks:
                yield chunk
        else:
            async for chunk in shaped(reply_chunks, shaper):
                yield chunk

    # ----------------------------------------------------------- Status / Drop
    async def _status(self, request: bytes, context: Any) -> bytes:
        await self._authorize(context)
        assert self.store is not None
        body = {
            "device": self.config.device,
            "pid": os.getpid(),
            "uptime_s": time.time() - self._started_s,
            "partitions": [
                {"partition_id": p.partition_id, "sha256": p.sha256, "nbytes": p.nbytes, "programs": list(p.program_ids)}
                for p in self.store.partitions()
            ],
            "held_bytes": self.store.held_bytes,
            "max_store_bytes": self.config.max_store_bytes,
            "max_message_bytes": self.config.max_message_bytes,
            "counters": dict(self.counters),
            **memory_usage(),
        }
        return json.dumps(body).encode()

    async def _drop(self, request: bytes, context: Any) -> bytes:
        import grpc

        await self._authorize(context)
        assert self.store is not None
        try:
            body = json.loads(request or b"{}")
            if body.get("all"):
                ids = [p.partition_id for p in self.store.partitions()]
            else:
                ids = [str(p) for p in body.get("partition_ids", [])]
        except (UnicodeDecodeError, ValueError, AttributeError, TypeError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "drop request is not JSON with partition_ids or all")
        dropped = [p for p in reversed(ids) if self.store.drop(p)]
        self._device_programs.clear()  # device copies of dropped programs must not outlive them
        if dropped:
            self.log(f"[{self.config.device}] dropped {len(dropped)} partition(s)")
        return json.dumps({"dropped": dropped}).encode()


def run_worker(config: WorkerConfig, *, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (blocking). Prints ``listening on HOST:PORT`` once bound."""

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


__all__ = ["UnknownPartitionError", "Worker", "WorkerConfig", "memory_usage", "parse_address", "parse_peers", "run_worker"]
