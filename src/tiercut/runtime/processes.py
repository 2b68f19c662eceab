"""Local worker processes: start one per server device, find its port, stop it.

``tiercut run`` without ``--workers`` starts a worker process per server
device of the environment (``python -m tiercut.runtime``, the same options as
``tiercut serve``), waits for its ``listening on HOST:PORT`` line and stops
it at the end. Only processes started here are ever signalled, by their own
process id.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError

_ANNOUNCE = "listening on "


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(eq=False)
class WorkerProcess:
    """A worker started as a child process."""

    device: str
    address: str
    popen: Any
    command: tuple[str, ...]
    log_path: Path | None = None
    _stopped: bool = field(default=False, init=False, repr=False)

    @property
    def pid(self) -> int:
        return int(self.popen.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """Kill it at once (SIGKILL), as a crash would."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=30)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask it to stop (SIGTERM), then kill it if it does not within ``timeout_s``."""
        if self._stopped:
            return
        self._stopped = True
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.popen.stdout,):
            if stream is not None:
                stream.close()

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def worker_command(
    device: str,
    *,
    listen: str,
    env: str | None = None,
    bandwidth_scale: float = 1.0,
    peers: Mapping[str, str] | None = None,
    store: Path | None = None,
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """The command line of a worker (``python -m tiercut.runtime ...``; the token goes in its environment)."""
    command = [python, "-m", "tiercut.runtime", "--device", device, "--listen", listen]
    if env is not None:
        command += ["--env", env, "--bandwidth-scale", repr(float(bandwidth_scale))]
    if peers:
        command += ["--peers", ",".join(f"{name}={address}" for name, address in peers.items())]
    if store is not None:
        command += ["--store", str(store)]
    command += list(extra_args)
    return command


def spawn_worker(
    device: str,
    *,
    listen: str = "127.0.0.1:0",
    token: str | None = None,
    env: str | None = None,
    bandwidth_scale: float = 1.0,
    peers: Mapping[str, str] | None = None,
    store: Path | None = None,
    extra_args: Sequence[str] = (),
    command_prefix: Sequence[str] = (),
    log_path: Path | None = None,
    startup_timeout_s: float = 120.0,
) -> WorkerProcess:
    """Start a worker process and wait until it listens; the token travels in its environment, not argv."""
    command = list(command_prefix) + worker_command(
        device, listen=listen, env=env, bandwidth_scale=bandwidth_scale, peers=peers, store=store, extra_args=extra_args
    )
    child_env = dict(os.environ)
    # the image's defaults (a worker image running `tiercut run`) must not leak into local workers
    for key in ("TIERCUT_TOKEN", "TIERCUT_LISTEN", "TIERCUT_HEALTH_LISTEN", "TIERCUT_STORE", "TIERCUT_TLS_DIR"):
        child_env.pop(key, None)
    if token:
        child_env["TIERCUT_TOKEN"] = token
    stderr = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        popen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=child_env)
    finally:
        if log_path is not None:
            stderr.close()  # type: ignore[union-attr]
    process = WorkerProcess(device, "", popen, tuple(command), log_path)
    deadline = time.monotonic() + startup_timeout_s
    selector = selectors.DefaultSelector()
    assert popen.stdout is not None
    selector.register(popen.stdout, selectors.EVENT_READ)
    buffer = b""
    try:
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                raise TiercutError(
                    f"worker {device!r} exited with status {popen.returncode} before listening"
                    + (f": {process.log_tail(5)}" if log_path else "")
                )
            if not selector.select(timeout=0.2):
                continue
            chunk = os.read(popen.stdout.fileno(), 4096)
            if not chunk:
                continue
            buffer += chunk
            for line in buffer.decode(errors="replace").splitlines():
                if _ANNOUNCE in line:
                    address = line.rsplit(_ANNOUNCE, 1)[1].strip()
                    process.address = address
                    return process
        raise TiercutError(f"worker {device!r} did not start listening within {startup_timeout_s:.0f} s")
    except BaseException:
        process.stop(timeout_s=5)
        raise
    finally:
        selector.close()


__all__ = ["WorkerProcess", "free_port", "spawn_worker", "worker_command"]
