"""The worker's gRPC protocol: methods, messages, credentials, and a client connection.

The service ``tiercut.runtime.Worker`` is served with generic handlers and
raw-bytes messages (no generated code): every message is bytes the two
ends parse as data.

``Upload`` (client stream -> one reply)
    Message 0: an :class:`UploadHeader` (``TCU1`` + JSON: partition id,
    total bytes, SHA-256 of the whole bundle, chunk size). Messages 1..n:
    chunks of at most 4 MB, each with its offset and CRC-32 (``TCK1``
    prefix); a chunk that fails its CRC is ignored. Reply: a
    :class:`ConfirmationResult` (the migration seed's CR): ``ok`` only for a
    bundle that arrived whole, hashed to the announced SHA-256, parsed and
    whose programs loaded; otherwise a failure ``code`` (``incomplete``,
    ``corrupt`` and ``missing_weights`` are worth resending, the others are
    not). After ``incomplete`` the worker keeps the chunks it has (for a
    while) and the CR lists the missing ones, so the resend carries only
    those: with a tenth of the messages lost a 40-chunk partition still gets
    through in a few attempts, where resending everything would almost never
    succeed.
``Execute`` (stream <-> stream)
    One frame (:mod:`tiercut.runtime.codec`) each way, chunked: the route,
    the index of the next partition, the call chain, the values wanted
    back, and the values; the reply carries the wanted values, the position
    reached and what each process did.
``Run`` (unary)
    The same query when its frame and its reply's each fit in one message:
    one gRPC batch each way instead of a message, an end-of-stream and a
    status read apiece (on a 1 MiB hop here about 0.2 ms less per hop).
    A reply that needs more messages is refused after the run
    (``FAILED_PRECONDITION``); :meth:`Connection.execute` then sends the
    query to ``Execute``, which it uses first for every route position
    until a reply there has been one message.
``Status`` / ``Drop`` (unary JSON)
    What the worker holds; forget partitions.

Status codes a caller sees: ``UNAUTHENTICATED`` (no or wrong token),
``RESOURCE_EXHAUSTED`` (message over ``--max-message-bytes``, store over
``--max-store-bytes``, an upload of more chunks than the worker takes, more
concurrent calls than ``--max-concurrent-rpcs``), ``NOT_FOUND`` (a partition
program the worker does not hold), ``DATA_LOSS`` (a frame that fails its
checks), ``INVALID_ARGUMENT`` (values that do not fit the program, a
malformed route), ``DEADLINE_EXCEEDED`` (the query's deadline passed; its
run stopped at the next step), ``UNAVAILABLE`` (a peer that cannot be
reached, or the worker is busy: every execution thread and queue slot is
taken, or the bytes pending for clients are at their bound; retry later).
A failed upload's CR says ``busy`` (retryable) when the worker holds too
many uploads at once or too many pending bytes.

Authentication: a shared token sent as ``authorization: Bearer <token>``
metadata (compared in constant time), and/or mutual TLS (the server asks
for a client certificate signed by ``--tls-ca``).
"""

from __future__ import annotations

import json
import math
import struct
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.runtime.artifact import ArtifactError, check_partition_id
from tiercut.runtime.codec import DEFAULT_CHUNK_BYTES, CodecError, Frame, decode_chunks, encode_chunks
from tiercut.runtime.links import FaultPlan, LinkShaper, shaped
from tiercut.runtime.route import MAX_NAME_CHARS

SERVICE = "tiercut.runtime.Worker"
METHOD_UPLOAD = f"/{SERVICE}/Upload"
METHOD_EXECUTE = f"/{SERVICE}/Execute"
METHOD_RUN = f"/{SERVICE}/Run"
METHOD_STATUS = f"/{SERVICE}/Status"
METHOD_DROP = f"/{SERVICE}/Drop"
UPLOAD_MAGIC = b"TCU1"
CHUNK_MAGIC = b"TCK1"
_CHUNK_PREFIX = struct.Struct("<4sQI")
CHUNK_PREFIX_BYTES = _CHUNK_PREFIX.size
AUTH_METADATA_KEY = "authorization"
#: room for gRPC framing and headers beyond one chunk
MESSAGE_MARGIN_BYTES = 64 * 1024
#: CR codes after which resending the same bundle may succeed
RETRYABLE_CODES = frozenset({"incomplete", "corrupt", "missing_weights", "unavailable", "timeout", "busy"})
CR_CODES = (
    "ok",
    "incomplete",
    "corrupt",
    "invalid",
    "missing_weights",
    "conflict",
    "store_full",
    "too_large",
    "unavailable",
    "timeout",
    "refused",
    "busy",
)
#: what gRPC core says when ``maximum_concurrent_rpcs`` turns a call away (a transient condition)
CONCURRENT_RPC_LIMIT_TEXT = "Concurrent RPC limit exceeded"
#: what a worker says when a ``Run`` query's reply does not fit in one message
REPLY_NEEDS_EXECUTE_TEXT = "send the query to Execute"
#: route positions a connection remembers as answered in one message (forgotten all at once beyond this)
_MAX_REMEMBERED_REPLIES = 4096


class RemoteError(TiercutError):
    """A call to a worker failed; ``code`` is the gRPC status code name (``"UNAVAILABLE"``...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------- messages
@dataclass(frozen=True)
class UploadHeader:
    """First message of an upload: which partition, how many bytes, their SHA-256."""

    partition_id: str
    total_bytes: int
    sha256: str
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    sender: str = ""

    @property
    def chunk_count(self) -> int:
        return max(1, -(-self.total_bytes // self.chunk_bytes)) if self.total_bytes else 0

    def chunk_range(self, index: int) -> tuple[int, int]:
        """Offset and length of chunk ``index``."""
        start = index * self.chunk_bytes
        return start, min(self.chunk_bytes, self.total_bytes - start)

    def to_bytes(self) -> bytes:
        body = {
            "partition_id": self.partition_id,
            "total_bytes": self.total_bytes,
            "sha256": self.sha256,
            "chunk_bytes": self.chunk_bytes,
            "sender": self.sender,
        }
        return UPLOAD_MAGIC + json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> UploadHeader:
        if not data.startswith(UPLOAD_MAGIC):
            raise CodecError("upload does not start with an upload header; the first message was lost or corrupted")
        try:
            body = json.loads(data[len(UPLOAD_MAGIC) :])
            header = cls(
                str(body["partition_id"]),
                int(body["total_bytes"]),
                str(body["sha256"]),
                int(body["chunk_bytes"]),
                str(body.get("sender", "")),
            )
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise CodecError("upload header is not valid; the first message was corrupted") from None
        if not 0 <= header.total_bytes < 2**62 or not 0 < header.chunk_bytes < 2**40:
            raise CodecError("upload header has a negative or absurd size or chunk size")
        if len(header.sha256) != 64 or not set(header.sha256) <= set("0123456789abcdef"):
            raise CodecError("upload header has a malformed SHA-256")
        try:
            check_partition_id(header.partition_id)
        except ArtifactError as exc:
            raise CodecError(f"upload header: {exc}") from None
        if len(header.sender) > MAX_NAME_CHARS:
            raise CodecError("upload header names a sender of more than 256 characters")
        return header


def encode_chunk(offset: int, data: bytes | memoryview) -> bytes:
    """One upload data message: ``TCK1``, offset, CRC-32, then the bytes."""
    return _CHUNK_PREFIX.pack(CHUNK_MAGIC, offset, zlib.crc32(data)) + bytes(data)


def decode_chunk(message: bytes) -> tuple[int, memoryview] | None:
    """(offset, bytes) of an upload data message, or None if it is damaged (bad prefix or CRC)."""
    if len(message) < CHUNK_PREFIX_BYTES:
        return None
    magic, offset, crc = _CHUNK_PREFIX.unpack_from(message, 0)
    data = memoryview(message)[CHUNK_PREFIX_BYTES:]
    if magic != CHUNK_MAGIC or zlib.crc32(data) != crc:
        return None
    return offset, data


@dataclass(frozen=True)
class ConfirmationResult:
    """The worker's answer to one upload (the seed's CR).

    Attributes:
        ok: the partition is stored, verified and runnable.
        partition_id: which partition.
        code: ``ok`` or why not (see :data:`CR_CODES`).
        reason: one line for a person.
        sha256: the SHA-256 the worker computed over what it received.
        received_bytes: bytes received.
        programs: the program ids now runnable (on success).
        missing: weight digests the worker lacks (``missing_weights``).
        missing_chunks: chunk indices still to send (``incomplete``).
    """

    ok: bool
    partition_id: str
    code: str
    reason: str = ""
    sha256: str = ""
    received_bytes: int = 0
    programs: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    missing_chunks: tuple[int, ...] | None = None

    @property
    def retryable(self) -> bool:
        return not self.ok and self.code in RETRYABLE_CODES

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "partition_id": self.partition_id,
            "code": self.code,
            "reason": self.reason,
            "sha256": self.sha256,
            "received_bytes": self.received_bytes,
            "programs": list(self.programs),
            "missing": list(self.missing),
            "missing_chunks": None if self.missing_chunks is None else list(self.missing_chunks),
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ConfirmationResult:
        try:
            body = json.loads(data)
            return cls(
                ok=bool(body["ok"]),
                partition_id=str(body["partition_id"]),
                code=str(body["code"]),
                reason=str(body.get("reason", "")),
                sha256=str(body.get("sha256", "")),
                received_bytes=int(body.get("received_bytes", 0)),
                programs=tuple(str(p) for p in body.get("programs", ())),
                missing=tuple(str(m) for m in body.get("missing", ())),
                missing_chunks=None if body.get("missing_chunks") is None else tuple(int(i) for i in body["missing_chunks"]),
            )
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise CodecError("confirmation result is not valid JSON") from None


# --------------------------------------------------------------------- credentials
@dataclass(frozen=True)
class Credentials:
    """How a process authenticates to workers (and a worker its clients).

    Attributes:
        token: shared secret sent as ``authorization: Bearer <token>``.
        tls_cert, tls_key: this side's certificate chain and private key (PEM files).
        tls_ca: the CA that signs the other side's certificate (PEM file);
            a worker with TLS requires client certificates signed by it (mutual TLS).
        tls_server_name: the name to check in the worker's certificate
            (default: the host of the address).
    """

    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_server_name: str | None = None

    def __post_init__(self) -> None:
        given = [p is not None for p in (self.tls_cert, self.tls_key, self.tls_ca)]
        if any(given) and not all(given):
            raise TiercutError("TLS needs --tls-cert, --tls-key and --tls-ca together (mutual TLS); pass all three")
        if self.token is not None and not self.token:
            raise TiercutError("the token is empty; pass a non-empty --token or none")

    @property
    def uses_tls(self) -> bool:
        return self.tls_cert is not None

    def _read(self, path: Path | None, what: str) -> bytes:
        assert path is not None
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise TiercutError(f"cannot read the TLS {what} {path}: {exc.strerror}; check --tls-{what}") from None
        if b"-----BEGIN " not in data:
            raise TiercutError(f"the TLS {what} {path} is not a PEM file; check --tls-{what}")
        return data

    def check_readable(self) -> None:
        """Raise a :class:`TiercutError` naming the file if a TLS file is unreadable or not the PEM it should be.

        ``--tls-cert`` and ``--tls-key`` must be a certificate chain and its
        (unencrypted) private key, ``--tls-ca`` a certificate; checked with
        Python's ``ssl`` (OpenSSL), before gRPC sees them (it would refuse
        them with a bare "failed to bind").
        """
        if not self.uses_tls:
            return
        import ssl

        for path, what in ((self.tls_cert, "cert"), (self.tls_key, "key"), (self.tls_ca, "ca")):
            self._read(path, what)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_cert_chain(str(self.tls_cert), str(self.tls_key), password=lambda: b"")
        except (ssl.SSLError, OSError, ValueError):
            raise TiercutError(
                f"--tls-cert {self.tls_cert} and --tls-key {self.tls_key} are not a PEM certificate chain and its "
                "unencrypted private key; check the files"
            ) from None
        try:
            context.load_verify_locations(cafile=str(self.tls_ca))
        except (ssl.SSLError, OSError, ValueError):
            raise TiercutError(f"--tls-ca {self.tls_ca} holds no PEM certificate; check the file") from None

    def server_credentials(self) -> Any:
        import grpc

        self.check_readable()
        return grpc.ssl_server_credentials(
            [(self._read(self.tls_key, "key"), self._read(self.tls_cert, "cert"))],
            root_certificates=self._read(self.tls_ca, "ca"),
            require_client_auth=True,
        )

    def channel_credentials(self) -> Any:
        import grpc

        self.check_readable()
        return grpc.ssl_channel_credentials(
            root_certificates=self._read(self.tls_ca, "ca"),
            private_key=self._read(self.tls_key, "key"),
            certificate_chain=self._read(self.tls_cert, "cert"),
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((AUTH_METADATA_KEY, f"Bearer {self.token}"),) if self.token else ()


def grpc_options(chunk_bytes: int) -> list[tuple[str, Any]]:
    """Channel and server options: messages of one chunk plus framing, keepalive for long uploads.

    A channel to a worker that went away tries to reconnect after 0.2 s,
    doubling up to 2 s (gRPC's own default grows to 120 s), so a worker
    that comes back is used again within seconds.
    """
    limit = int(chunk_bytes) + MESSAGE_MARGIN_BYTES
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]


#: glibc's ``mallopt`` parameters (``<malloc.h>``)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc refuses an mmap threshold above this (``HEAP_MAX_SIZE / 2`` on 64-bit)
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024


def reuse_message_memory(chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> bool:
    """Let this process reuse the memory of freed messages instead of handing it back to the OS each time.

    Every message a process receives or sends passes through fresh buffers
    of its size (gRPC's slices, the Python ``bytes``, a frame). With
    glibc's default, adaptive thresholds, memory freed at the top of the
    heap goes back to the OS once more than about two of the largest
    blocks freed so far is free, so with 1 MiB messages the next message's
    buffers fault in fresh, zeroed pages: measured here (2-core Xeon VM),
    a plain grpc.aio echo server took about 560 page faults per 1 MiB round
    trip; its hop was 0.15-0.3 ms longer than with this setting (unary
    echo, load average 12-15; ``benchmarks/runtime_fidelity.py --sections
    transport``), and a worker's 0.7-1.2 ms longer. Blocks
    below two messages (at most 32 MiB) are then served from the heap, and
    up to twice that of free memory is kept per malloc arena (glibc's own
    adaptive rule, fixed at this size).

    Process-wide: a worker process calls it at start (:func:`tiercut.runtime.worker.run_worker`), a
    client when its run starts (:meth:`tiercut.runtime.client.MigrationClient.run`).
    Linux with glibc only; elsewhere it changes nothing and returns False.
    """
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mmap_threshold = min(_MAX_MMAP_THRESHOLD, 2 * int(chunk_bytes))
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 * mmap_threshold))


# --------------------------------------------------------------------- client side
@dataclass(frozen=True)
class ExecuteReply:
    """A decoded reply, the bytes each way (frame bytes, before gRPC framing) and the method that carried it."""

    frame: Frame
    bytes_sent: int
    bytes_received: int
    seconds: float
    method: str = "Execute"


def _status_name(exc: Any) -> str:
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    return getattr(code, "name", "UNKNOWN")


@dataclass(eq=False)
class Connection:
    """A client's (or a forwarding worker's) channel to one worker.

    Create it with settings only; the gRPC channel is opened lazily inside
    the event loop that first uses it. Outgoing messages pass through the
    link shaper (and fault plan) of the link to that worker.

    Attributes:
        device: the worker's device name.
        address: ``host:port``.
        credentials: token and/or TLS.
        shaper: the outgoing link's shaper (None: unshaped).
        faults: faults injected into outgoing messages (tests).
        reply_faults: faults injected into received messages (tests).
        chunk_bytes: bytes per gRPC message.
        max_message_bytes: the largest reply accepted.
        borrow_replies: decoded reply tensors view the received messages
            instead of being copies (:func:`~tiercut.runtime.codec.decode_chunks`);
            only for a caller that never writes into them (a worker).
    """

    device: str
    address: str
    credentials: Credentials = field(default_factory=Credentials)
    shaper: LinkShaper | None = None
    faults: FaultPlan | None = None
    reply_faults: FaultPlan | None = None
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    max_message_bytes: int = 1 << 30
    borrow_replies: bool = False
    _channel: Any = field(default=None, init=False, repr=False)
    _one_message_replies: set[int] = field(default_factory=set, init=False, repr=False)
    _without_run: bool = field(default=False, init=False, repr=False)

    def _open(self) -> Any:
        import grpc

        if self._channel is None:
            options = grpc_options(self.chunk_bytes)
            if self.credentials.tls_server_name:
                options.append(("grpc.ssl_target_name_override", self.credentials.tls_server_name))
            if self.credentials.uses_tls:
                self._channel = grpc.aio.secure_channel(self.address, self.credentials.channel_credentials(), options=options)
            else:
                self._channel = grpc.aio.insecure_channel(self.address, options=options)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()

    def _wrap(self, exc: Exception, what: str) -> RemoteError:
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        return RemoteError(_status_name(exc), f"{what} on worker {self.device!r} ({self.address}) failed: {details}")

    async def execute(
        self,
        meta: Mapping[str, Any],
        values: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
    ) -> ExecuteReply:
        """Send one query frame and decode the reply frame.

        ``metadata`` replaces this connection's credentials metadata for this
        call (a worker forwarding a query sends its client's token on).

        The query goes to ``Run`` when its frame is one message and a reply
        to the same route position has been one message before; otherwise
        (and when ``Run`` says the reply needs more messages, or the worker
        has no ``Run``) to ``Execute``.
        """
        start = time.perf_counter()
        chunks = encode_chunks(meta, values, chunk_bytes=self.chunk_bytes)
        sent = sum(len(c) for c in chunks)
        key = _reply_key(meta)
        received = None
        method = "Run"
        if len(chunks) == 1 and key in self._one_message_replies and not self._without_run:
            received = await self._run(chunks[0], key, timeout_s, metadata)
        if received is None:
            method = "Execute"
            received = await self._execute(chunks, timeout_s, metadata)
            if len(received) == 1:
                if len(self._one_message_replies) >= _MAX_REMEMBERED_REPLIES:
                    self._one_message_replies.clear()
                self._one_message_replies.add(key)
        try:
            frame = decode_chunks(received, max_bytes=self.max_message_bytes, borrow=self.borrow_replies)
        except CodecError as exc:
            raise RemoteError("DATA_LOSS", f"reply of worker {self.device!r} is damaged: {exc}") from None
        return ExecuteReply(frame, sent, sum(len(c) for c in received), time.perf_counter() - start, method)

    async def _run(
        self, message: bytes, key: int, timeout_s: float | None, metadata: Sequence[tuple[str, str]] | None = None
    ) -> list[bytes] | None:
        """The reply of ``Run`` as a list of messages, or None if the query must go to ``Execute`` instead."""
        import grpc

        if self.shaper is not None or (self.faults is not None and self.faults.active):
            arrived = [m async for m in shaped([message], self.shaper, self.faults)]
            message = arrived[0] if arrived else b""  # a lost message: the worker receives an empty frame, as on Execute
        try:
            reply = await self._open().unary_unary(METHOD_RUN)(
                message, metadata=self.credentials.metadata() if metadata is None else tuple(metadata), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            code = _status_name(exc)
            if code == "UNIMPLEMENTED":  # a worker from before Run
                self._without_run = True
                return None
            if code == "FAILED_PRECONDITION" and REPLY_NEEDS_EXECUTE_TEXT in str(exc.details()):
                self._one_message_replies.discard(key)
                return None
            raise self._wrap(exc, "execute") from None
        if len(reply) > self.max_message_bytes:
            raise RemoteError("RESOURCE_EXHAUSTED", f"reply of worker {self.device!r} exceeds {self.max_message_bytes} bytes")
        if self.reply_faults is not None:
            reply = self.reply_faults.apply(reply)
        return [] if reply is None else [reply]

    async def _execute(
        self, chunks: list[bytes], timeout_s: float | None, metadata: Sequence[tuple[str, str]] | None = None
    ) -> list[bytes]:
        """The reply messages of ``Execute``."""
        import grpc

        plain = self.shaper is None and (self.faults is None or not self.faults.active)
        requests = iter(chunks) if plain else shaped(chunks, self.shaper, self.faults)
        call = self._open().stream_stream(METHOD_EXECUTE)(
            requests, metadata=self.credentials.metadata() if metadata is None else tuple(metadata), timeout=timeout_s
        )
        received: list[bytes] = []
        total = 0
        try:
            async for chunk in call:
                if self.reply_faults is not None:
                    chunk = self.reply_faults.apply(chunk)
                    if chunk is None:
                        continue
                total += len(chunk)
                if total > self.max_message_bytes:
                    call.cancel()
                    raise RemoteError(
                        "RESOURCE_EXHAUSTED", f"reply of worker {self.device!r} exceeds {self.max_message_bytes} bytes"
                    )
                received.append(chunk)
        except grpc.aio.AioRpcError as exc:
            raise self._wrap(exc, "execute") from None
        return received

    async def upload(
        self,
        partition_id: str,
        data: bytes,
        sha256: str,
        *,
        chunks: Sequence[int] | None = None,
        sender: str = "",
        timeout_s: float | None = None,
    ) -> ConfirmationResult:
        """Send a bundle (or only the chunks ``chunks``) to ``Upload``; returns the worker's CR.

        A transport failure becomes a failed CR too (``unavailable``, ``timeout``...).
        """
        import grpc

        header = UploadHeader(partition_id, len(data), sha256, self.chunk_bytes, sender)
        indices = range(header.chunk_count) if chunks is None else sorted(set(chunks))
        view = memoryview(data)

        def messages() -> Any:  # lazily: one chunk copy at a time
            yield header.to_bytes()
            for index in indices:
                offset, length = header.chunk_range(index)
                yield encode_chunk(offset, view[offset : offset + length])

        call = self._open().stream_unary(METHOD_UPLOAD)
        try:
            reply = await call(
                shaped(messages(), self.shaper, self.faults), metadata=self.credentials.metadata(), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            code = _status_name(exc)
            details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            mapped = {
                "DEADLINE_EXCEEDED": "timeout",
                "RESOURCE_EXHAUSTED": "busy" if CONCURRENT_RPC_LIMIT_TEXT in str(details) else "too_large",
                "UNAUTHENTICATED": "refused",
                "PERMISSION_DENIED": "refused",
            }.get(code, "unavailable")
            return ConfirmationResult(False, partition_id, mapped, f"{code}: {details}")
        try:
            return ConfirmationResult.from_bytes(reply)
        except CodecError as exc:
            return ConfirmationResult(False, partition_id, "corrupt", str(exc))

    async def _unary(self, method: str, body: Mapping[str, Any], timeout_s: float | None) -> dict[str, Any]:
        import grpc

        try:
            reply = await self._open().unary_unary(method)(
                json.dumps(dict(body)).encode(), metadata=self.credentials.metadata(), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise self._wrap(exc, method.rsplit("/", 1)[-1].lower()) from None
        try:
            data = json.loads(reply)
        except (UnicodeDecodeError, ValueError):
            raise RemoteError("DATA_LOSS", f"worker {self.device!r} sent an unreadable reply") from None
        if not isinstance(data, dict):
            raise RemoteError("DATA_LOSS", f"worker {self.device!r} sent an unreadable reply")
        return data

    async def status(self, *, timeout_s: float | None = 5.0) -> dict[str, Any]:
        """The worker's device, partitions held and bytes used."""
        return await self._unary(METHOD_STATUS, {}, timeout_s)

    async def drop(self, partition_ids: Sequence[str] | None = None, *, timeout_s: float | None = 10.0) -> list[str]:
        """Make the worker forget partitions (all of them when ``partition_ids`` is None)."""
        body: dict[str, Any] = {"all": True} if partition_ids is None else {"partition_ids": list(partition_ids)}
        reply = await self._unary(METHOD_DROP, body, timeout_s)
        return [str(p) for p in reply.get("dropped", [])]


def _reply_key(meta: Mapping[str, Any]) -> int:
    """Which replies a query's is like: its route, position and wanted values."""
    route = json.dumps(meta.get("route"), separators=(",", ":"), default=str)
    return hash((route, str(meta.get("position")), str(meta.get("wanted"))))


def upload_timeout_s(nbytes: int, shaper: LinkShaper | None, *, floor_s: float = 10.0, factor: float = 3.0) -> float:
    """A deadline for uploading ``nbytes``: ``factor`` times the link's transfer time, at least ``floor_s``."""
    if shaper is None or math.isinf(shaper.spec.bandwidth_bps):
        return floor_s + nbytes / 50e6
    return max(floor_s, factor * shaper.spec.transfer_s(nbytes))


__all__ = [
    "AUTH_METADATA_KEY",
    "CHUNK_MAGIC",
    "CR_CODES",
    "METHOD_DROP",
    "METHOD_EXECUTE",
    "METHOD_RUN",
    "METHOD_STATUS",
    "METHOD_UPLOAD",
    "REPLY_NEEDS_EXECUTE_TEXT",
    "RETRYABLE_CODES",
    "SERVICE",
    "ConfirmationResult",
    "Connection",
    "Credentials",
    "ExecuteReply",
    "RemoteError",
    "UploadHeader",
    "decode_chunk",
    "encode_chunk",
    "grpc_options",
    "reuse_message_memory",
    "upload_timeout_s",
]
