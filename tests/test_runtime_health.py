"""The standard gRPC health service (grpc.health.v1) on a real worker, over real gRPC."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from test_runtime_worker import tls_files  # noqa: F401  (the module's mutual-TLS certificates fixture)
from tiercut.runtime.health import HEALTH_MAX_MESSAGE_BYTES
from tiercut.runtime.protocol import SERVICE, Credentials
from tiercut.runtime.worker import Worker, WorkerConfig

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _run(coro):
    return asyncio.run(coro)


async def _check(address: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        return reply.status


async def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code()


def test_a_token_worker_answers_serving_without_the_token_and_only_to_check():
    async def scenario():
        config = WorkerConfig(device="edge", credentials=Credentials(token="secret"), health_listen="127.0.0.1:0")
        worker = Worker(config, log=lambda line: None)
        port = await worker.start()
        main, health = f"127.0.0.1:{port}", f"127.0.0.1:{worker.health.port}"
        try:
            statuses = [await _check(main), await _check(main, SERVICE), await _check(health), await _check(health, SERVICE)]
            async with grpc.aio.insecure_channel(main) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                unknown = await _code(stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10))
                watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
                watched = await _code(watch.read())
            async with grpc.aio.insecure_channel(health) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                huge = health_pb2.HealthCheckRequest(service="x" * (2 * HEALTH_MAX_MESSAGE_BYTES))
                too_big = await _code(stub.Check(huge, timeout=10))
                # the health port serves nothing else: the worker's own service is not there
                status = channel.unary_unary(f"/{SERVICE}/Status")(b"{}", timeout=10)
                other = await _code(status)
            await worker.health.servicer.enter_graceful_shutdown()  # what stop() does first
            stopping = [await _check(main), await _check(health, SERVICE)]
            return statuses, unknown, watched, too_big, other, stopping
        finally:
            await worker.stop()

    statuses, unknown, watched, too_big, other, stopping = _run(scenario())
    assert statuses == [SERVING] * 4
    assert unknown == grpc.StatusCode.NOT_FOUND
    assert watched == grpc.StatusCode.UNIMPLEMENTED  # Watch would let a caller pin a stream for ever
    assert too_big == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert other == grpc.StatusCode.UNIMPLEMENTED
    assert stopping == [NOT_SERVING, NOT_SERVING]


def test_a_mutual_tls_worker_serves_plaintext_health_on_its_health_port_only(tls_files: Path):  # noqa: F811
    """Kubernetes' gRPC probe cannot speak TLS: it asks the plaintext health port; the data port stays mTLS."""
    server = Credentials(tls_cert=tls_files / "server.pem", tls_key=tls_files / "server.key", tls_ca=tls_files / "ca.pem")

    async def scenario():
        worker = Worker(WorkerConfig(device="edge", credentials=server, health_listen="127.0.0.1:0"), log=lambda line: None)
        port = await worker.start()
        try:
            health = await _check(f"127.0.0.1:{worker.health.port}")
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                plain_on_data_port = await _code(call)
            return health, plain_on_data_port
        finally:
            await worker.stop()

    health, plain_on_data_port = _run(scenario())
    assert health == SERVING
    assert plain_on_data_port in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_a_worker_without_a_health_port_has_none():
    async def scenario():
        worker = Worker(WorkerConfig(device="edge"), log=lambda line: None)
        port = await worker.start()
        try:
            return worker.health.port, await _check(f"127.0.0.1:{port}")
        finally:
            await worker.stop()

    assert _run(scenario()) == (0, SERVING)


def test_a_health_port_in_use_stops_the_worker_before_it_serves():
    import socket

    from tiercut.errors import TiercutError

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]

    async def scenario():
        worker = Worker(WorkerConfig(device="edge", health_listen=f"127.0.0.1:{taken}"), log=lambda line: None)
        try:
            with pytest.raises(TiercutError, match=f"health port 127.0.0.1:{taken} cannot be bound"):
                await worker.start()
        finally:
            await worker.stop()

    try:
        _run(scenario())
    finally:
        holder.close()


def test_serve_on_a_port_in_use_is_a_one_line_error(capsys):
    import socket

    from tiercut.runtime.__main__ import main

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        taken = holder.getsockname()[1]
        assert main(["--device", "edge", "--listen", f"127.0.0.1:{taken}"]) == 2
    finally:
        holder.close()
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{taken}" in err and "Traceback" not in err
