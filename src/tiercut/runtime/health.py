"""The standard gRPC health service (``grpc.health.v1.Health``) of a worker.

Kubernetes' gRPC probes, ``grpc_health_probe`` and load balancers ask
``grpc.health.v1.Health/Check``; a worker answers ``SERVING`` for the
overall server (service ``""``) and for its own service
(``tiercut.runtime.Worker``) once it is bound and its store is open, and
``NOT_SERVING`` from the moment it starts stopping. The servicer is the
reference one of the ``grpcio-health-checking`` package.

Only ``Check`` is exposed: ``Watch`` is a stream a caller could hold open
for ever, one of the resources a client must not be able to pin, so it
answers ``UNIMPLEMENTED`` (Kubernetes and ``grpc_health_probe`` use ``Check``).
The health service needs no token: it tells only whether the worker serves.

Kubernetes' gRPC probe cannot speak TLS, so a worker can also serve the
health service alone on a second, plaintext port (``--health-listen``): no
data travels there, calls are few (:data:`HEALTH_MAX_CONCURRENT_RPCS`),
messages tiny (:data:`HEALTH_MAX_MESSAGE_BYTES`) and connections short-lived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.runtime.protocol import SERVICE

HEALTH_SERVICE = "grpc.health.v1.Health"
#: calls the health-only port serves at once (probes are one short call every few seconds)
HEALTH_MAX_CONCURRENT_RPCS = 8
#: a HealthCheckRequest is a service name: larger messages are refused
HEALTH_MAX_MESSAGE_BYTES = 1024
#: options of the health-only server: tiny messages, idle and old connections closed
HEALTH_SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", HEALTH_MAX_MESSAGE_BYTES),
    ("grpc.max_connection_idle_ms", 30_000),
    ("grpc.max_connection_age_ms", 120_000),
    ("grpc.max_connection_age_grace_ms", 5_000),
    ("grpc.so_reuseport", 0),  # a port another process holds is an error, not a shared port
)


def _servicer() -> Any:
    try:
        from grpc_health.v1.health import aio
    except ImportError:
        raise TiercutError("the gRPC health service needs grpcio-health-checking; pip install 'grpcio-health-checking'") from None
    return aio.HealthServicer()


def check_only_handler(servicer: Any) -> Any:
    """A generic handler of ``grpc.health.v1.Health`` with ``Check`` only (``Watch``: UNIMPLEMENTED)."""
    import grpc
    from grpc_health.v1 import health_pb2

    return grpc.method_handlers_generic_handler(
        HEALTH_SERVICE,
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                servicer.Check,
                request_deserializer=health_pb2.HealthCheckRequest.FromString,
                response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
            )
        },
    )


@dataclass(eq=False)
class WorkerHealth:
    """The health status of one worker, served on its own port and optionally on a plaintext health port."""

    services: tuple[str, ...] = ("", SERVICE)
    servicer: Any = field(default_factory=_servicer, init=False, repr=False)
    port: int = field(default=0, init=False)
    _server: Any = field(default=None, init=False, repr=False)

    async def not_serving(self) -> None:
        """Before the worker is ready: every service NOT_SERVING (the reference servicer starts SERVING)."""
        from grpc_health.v1 import health_pb2

        for service in self.services:
            await self.servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    def register(self, server: Any) -> None:
        """Add the service to a worker's gRPC server."""
        server.add_generic_rpc_handlers((check_only_handler(self.servicer),))

    async def start_port(self, listen: str) -> int:
        """Serve the health service alone, plaintext, on ``listen``; returns the bound port."""
        import grpc

        server = grpc.aio.server(options=list(HEALTH_SERVER_OPTIONS), maximum_concurrent_rpcs=HEALTH_MAX_CONCURRENT_RPCS)
        server.add_generic_rpc_handlers((check_only_handler(self.servicer),))
        try:
            port = server.add_insecure_port(listen)
        except RuntimeError:  # grpcio >= 1.5x raises where older ones returned 0
            port = 0
        if not port:
            raise TiercutError(f"health port {listen} cannot be bound; is the port free and the address local?")
        await server.start()
        self._server = server
        self.port = port
        return port

    async def serving(self) -> None:
        from grpc_health.v1 import health_pb2

        for service in self.services:
            await self.servicer.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def stopping(self, grace_s: float = 1.0) -> None:
        """NOT_SERVING for good, then close the health port."""
        await self.servicer.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None


__all__ = ["HEALTH_SERVICE", "WorkerHealth", "check_only_handler"]
