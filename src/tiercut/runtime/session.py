"""A run on one machine: local workers for the server devices, then the client.

:class:`LocalCluster` starts one worker process per server device (each
knowing the others as peers, each emulating its outgoing links of the
environment) and stops them at the end; :func:`run_migration` connects a
:class:`~tiercut.runtime.client.MigrationClient` to workers (local or
remote) with the client's emulated links and runs the plan.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.runtime.client import MigrationClient, RunResult, RunSettings
from tiercut.runtime.codec import DEFAULT_CHUNK_BYTES
from tiercut.runtime.links import FaultPlan, LinkTable
from tiercut.runtime.migration import MigrationPlan
from tiercut.runtime.processes import WorkerProcess, free_port, spawn_worker
from tiercut.runtime.protocol import Connection, Credentials


@dataclass(eq=False)
class LocalCluster:
    """Worker processes on this machine, one per device (a context manager).

    Attributes:
        devices: the server devices to start.
        env: environment preset or file the workers emulate links of (None: no emulation).
        bandwidth_scale: multiplier of the emulated bandwidths.
        token: the shared token (default: a fresh random one).
        store_root: parent folder of the workers' stores (None: memory only).
        log_dir: where each worker's stderr goes (default: a temporary folder).
        host: address to bind (loopback).
        extra_args: more worker options (e.g. ``["--max-store-bytes", "1GiB"]``).
        torch_threads: intra-op threads of each worker (default: this machine's
            cores shared between the workers and the client, at least 1; several
            processes each using every core slow each other down several-fold).
    """

    devices: Sequence[str]
    env: str | None = None
    bandwidth_scale: float = 1.0
    token: str | None = None
    store_root: Path | None = None
    log_dir: Path | None = None
    host: str = "127.0.0.1"
    extra_args: Sequence[str] = ()
    torch_threads: int | None = None
    processes: dict[str, WorkerProcess] = field(default_factory=dict, init=False)
    _tmp: Any = field(default=None, init=False, repr=False)

    @property
    def addresses(self) -> dict[str, str]:
        return {d: p.address for d, p in self.processes.items()}

    def credentials(self) -> Credentials:
        return Credentials(token=self.token)

    @property
    def threads_per_process(self) -> int:
        """Cores per process when the workers and the client share this machine."""
        if self.torch_threads is not None:
            return self.torch_threads
        return max(1, (os.cpu_count() or 1) // (len(self.devices) + 1))

    def _args(self) -> list[str]:
        return [*self.extra_args, "--torch-threads", str(self.threads_per_process)]

    def start(self) -> LocalCluster:
        if self.token is None:
            self.token = secrets.token_hex(16)
        if self.log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tiercut-workers-")
            self.log_dir = Path(self._tmp.name)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        ports = {device: free_port(self.host) for device in self.devices}
        addresses = {device: f"{shown}:{port}" for device, port in ports.items()}
        try:
            for device in self.devices:
                self.processes[device] = spawn_worker(
                    device,
                    listen=addresses[device],
                    token=self.token,
                    env=self.env,
                    bandwidth_scale=self.bandwidth_scale,
                    peers={d: a for d, a in addresses.items() if d != device},
                    store=None if self.store_root is None else self.store_root / device,
                    extra_args=self._args(),
                    log_path=self.log_dir / f"{device}.log",
                )
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, device: str) -> WorkerProcess:
        """Start ``device``'s worker again on the same address (after a kill)."""
        old = self.processes[device]
        old.stop(timeout_s=5)
        peers = {d: p.address for d, p in self.processes.items() if d != device}
        assert self.log_dir is not None
        process = spawn_worker(
            device,
            listen=old.address,
            token=self.token,
            env=self.env,
            bandwidth_scale=self.bandwidth_scale,
            peers=peers,
            store=None if self.store_root is None else self.store_root / device,
            extra_args=self._args(),
            log_path=self.log_dir / f"{device}.log",
        )
        self.processes[device] = process
        return process

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def connections_for(
    plan: MigrationPlan,
    addresses: Mapping[str, str],
    *,
    credentials: Credentials,
    environment: Any | None = None,
    bandwidth_scale: float = 1.0,
    faults: Mapping[str, FaultPlan] | None = None,
    reply_faults: Mapping[str, FaultPlan] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> dict[str, Connection]:
    """A connection per server and per relay of ``plan``, shaped by the client's links in ``environment``.

    A server the client has no link to is reached through relays for queries
    (:attr:`MigrationPlan.relays`); its uploads still go straight to it,
    unshaped (the runtime does not relay uploads).
    """
    devices = [*plan.servers, *plan.relays]
    missing = [s for s in devices if s not in addresses]
    if missing:
        raise TiercutError(f"no worker address for device {missing[0]!r}; pass --workers {missing[0]}=HOST:PORT")
    links = (
        LinkTable.from_environment(environment, plan.source, bandwidth_scale=bandwidth_scale) if environment is not None else None
    )
    if environment is not None:
        relayed = {d for s in plan.stages for key, path in s.route.relays.items() for d in (key.partition(">")[2],)}
        for server in devices:
            if links is not None and links.shaper(server) is None and server not in relayed:
                raise TiercutError(
                    f"environment {getattr(environment, 'name', '')!r} has no link between {plan.source!r} and {server!r} "
                    "and the plan routes nothing there through relays; the client cannot reach that server"
                )
    return {
        server: Connection(
            device=server,
            address=addresses[server],
            credentials=credentials,
            shaper=links.shaper(server) if links is not None else None,
            faults=(faults or {}).get(server),
            reply_faults=(reply_faults or {}).get(server),
            chunk_bytes=chunk_bytes,
        )
        for server in devices
    }


def run_migration(
    plan: MigrationPlan,
    addresses: Mapping[str, str],
    *,
    credentials: Credentials,
    settings: RunSettings,
    environment: Any | None = None,
    bandwidth_scale: float = 1.0,
    faults: Mapping[str, FaultPlan] | None = None,
    reply_faults: Mapping[str, FaultPlan] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    query_inputs: Callable[[int], tuple[Any, ...]] | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``plan`` against the workers at ``addresses`` (see :class:`~tiercut.runtime.client.MigrationClient`)."""
    connections = connections_for(
        plan,
        addresses,
        credentials=credentials,
        environment=environment,
        bandwidth_scale=bandwidth_scale,
        faults=faults,
        reply_faults=reply_faults,
        chunk_bytes=chunk_bytes,
    )
    client = MigrationClient(plan, connections, settings, query_inputs=query_inputs, log=log)
    return client.run()


def run_adaptive(
    problem: Any,
    plan: MigrationPlan,
    placement: Mapping[str, str],
    addresses: Mapping[str, str],
    *,
    credentials: Credentials,
    settings: RunSettings,
    adapt: Any,
    replan: bool = True,
    schedule: Any | None = None,
    environment: Any | None = None,
    bandwidth_scale: float = 1.0,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    label: str = "",
    query_inputs: Callable[[int], tuple[Any, ...]] | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``plan`` and adapt it to the links as measured (:class:`~tiercut.runtime.adaptive.AdaptiveClient`).

    ``problem``: the problem ``plan`` was made for (the client and the servers it may use); every server of it
    gets a connection, shaped like the client's links in ``environment``. ``schedule``: a
    :class:`~tiercut.runtime.adapt.LinkSchedule` applied to those shapers (needs ``environment``).
    ``replan=False``: the plan stays (the static baseline under the same schedule).
    """
    from tiercut.runtime.adaptive import AdaptiveClient
    from tiercut.runtime.protocol import Connection

    servers = [d for d in problem.device_names if d != problem.source]
    missing = [s for s in servers if s not in addresses]
    if missing:
        raise TiercutError(f"no worker address for device {missing[0]!r}; pass --workers {missing[0]}=HOST:PORT")
    if schedule is not None and environment is None:
        raise TiercutError("--link-schedule changes the emulated links' rates; drop --no-emulate-links")
    links = None
    if environment is not None:
        links = LinkTable.from_environment(environment, problem.source, bandwidth_scale=bandwidth_scale)
    connections = {
        server: Connection(
            device=server,
            address=addresses[server],
            credentials=credentials,
            shaper=links.shaper(server) if links is not None else None,
            chunk_bytes=chunk_bytes,
        )
        for server in servers
    }
    client = AdaptiveClient(
        problem, plan, dict(placement), connections, settings, adapt, label=label, schedule=schedule,
        query_inputs=query_inputs, log=log, replan=replan,
    )
    return client.run()


__all__ = ["LocalCluster", "connections_for", "run_adaptive", "run_migration"]
