"""A local multi-process Ray cluster (``ray start`` processes), for testing and timing ``tiercut sweep --address``.

:class:`LocalRayCluster` starts a head node (``ray start --head --block``)
and, optionally, worker nodes (``ray start --address=... --block``) on this
machine, each its own process tree in its own session, with every port it
opens chosen free (so two clusters, or a cluster and an in-process
``ray.init()``, do not collide). :meth:`LocalRayCluster.stop` ends exactly
those process groups (SIGTERM, then SIGKILL): it does not run ``ray stop``,
which kills every Ray process of the user on the machine, including Rays it
did not start. A driver (``tiercut sweep GRID --address``) is a separate
process that connects to :attr:`LocalRayCluster.address`.

Worker processes inherit the environment of their node's ``ray start``
(``env``): ``PYTHONPATH`` for where ``tiercut`` is imported from and
``TIERCUT_CACHE_DIR`` for their graph cache; the driver's environment does
not reach them.

Authentication: Ray (2.5x and later) turns token authentication on for a
head when a token file exists (``~/.ray/auth_token``, which any local
``ray.init()`` creates), but not for a node joining it, so whether a
cluster comes up would depend on what ran before. The cluster therefore
always uses token authentication with a token of its own (a file in its
temporary folder): ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` in
every node's environment and in :attr:`LocalRayCluster.driver_env`, which a
driver (``tiercut sweep --address``) needs too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tiercut.errors import TiercutError


def free_port() -> int:
    """A TCP port nothing listens on now (the OS's choice; a race with another process is possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def session_members(sessions: set[int]) -> list[int]:
    """The live processes (not zombies) whose session id is one of ``sessions`` (Linux ``/proc``)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) in sessions:  # after "comm)": state, ppid, pgrp, session
            out.append(int(entry.name))
    return out


def ray_executable() -> Path:
    """The ``ray`` command beside this Python (the venv's ``bin``)."""
    return Path(sys.executable).parent / "ray"


class LocalRayCluster:
    """A head node and ``worker_nodes`` worker nodes, each a ``ray start --block`` process on this machine.

    Args:
        head_cpus: CPUs the head node offers.
        worker_nodes: worker nodes to add (each ``worker_cpus`` CPUs).
        env: extra environment of the node processes (and so of their workers).
        object_store_bytes: each node's object store.
        start_timeout_s: how long to wait for the nodes to register.
    """

    def __init__(self, head_cpus: int = 2, worker_nodes: int = 0, worker_cpus: int = 1,
                 env: Mapping[str, str] | None = None, object_store_bytes: int = 100 * 2**20,
                 start_timeout_s: float = 120.0) -> None:
        self.head_cpus = head_cpus
        self.worker_nodes = worker_nodes
        self.worker_cpus = worker_cpus
        self.env = {**os.environ, **(env or {})}
        self.object_store_bytes = object_store_bytes
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.client_port = 0
        self.temp_dir = ""
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.ids: list[str] = []  # the nodes' ids (hex), once started

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def client_address(self) -> str:
        """The head's Ray Client address (``ray://``)."""
        return f"ray://127.0.0.1:{self.client_port}"

    @property
    def driver_env(self) -> dict[str, str]:
        """What a driver process's environment needs to connect to this cluster (its token)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(Path(self.temp_dir) / "auth_token")}

    @property
    def cpus(self) -> int:
        return self.head_cpus + self.worker_nodes * self.worker_cpus

    def _node_ports(self) -> list[str]:
        """Every port a node opens besides the head's GCS port, chosen free."""
        options = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                   "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
        out: list[str] = []
        for option in options:
            out += [option, str(free_port())]
        return out

    def _launch(self, args: Sequence[str], name: str) -> None:
        log = Path(self.temp_dir) / f"{name}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            self.processes.append(subprocess.Popen(
                [str(ray_executable()), "start", "--block", "--disable-usage-stats", *args], stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env, start_new_session=True,
            ))

    def start(self, attempts: int = 2) -> str:
        """Start the nodes and wait until every one has registered; the head's address. A cluster that does not come
        up is stopped and started again with other ports (a free port may be taken between its choice and Ray's
        bind), ``attempts`` times in all; then TiercutError."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except TiercutError:
                if attempt == attempts:
                    raise
        raise TiercutError("attempts must be >= 1")

    def _start_once(self) -> str:
        self.processes, self.logs = [], []
        if not ray_executable().exists():
            raise TiercutError(f"no ray command at {ray_executable()}; install Ray into this Python's environment")
        # a short root: Ray's socket paths under it must stay below the 107-byte limit of a Unix socket path
        self.temp_dir = tempfile.mkdtemp(prefix="tcray-", dir="/tmp")
        token = Path(self.temp_dir) / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env.update(self.driver_env)
        self.port = free_port()
        self.client_port = free_port()
        try:
            self._launch(["--head", "--port", str(self.port), "--node-ip-address", "127.0.0.1",
                          "--num-cpus", str(self.head_cpus), "--include-dashboard", "false",
                          "--ray-client-server-port", str(self.client_port), "--temp-dir", self.temp_dir,
                          "--object-store-memory", str(self.object_store_bytes), *self._node_ports()], "head")
            self._wait_for_port()
            for i in range(self.worker_nodes):
                self._launch(["--address", self.address, "--node-ip-address", "127.0.0.1",
                              "--num-cpus", str(self.worker_cpus),
                              "--object-store-memory", str(self.object_store_bytes), *self._node_ports()], f"worker{i}")
            self.ids = self.node_ids()  # waits for every node
        except BaseException:
            self.stop(keep_logs=True)  # the error names a log in it
            raise
        return self.address

    def _wait_for_port(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return
            time.sleep(0.2)
        raise TiercutError(f"the Ray head did not listen on port {self.port} within {self.start_timeout_s:g} s; "
                           f"see {self.logs[0]}")

    def _check_alive(self) -> None:
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
                raise TiercutError(f"ray start exited with {process.returncode}: {' '.join(tail)[:300]}; see {log}")

    def node_ids(self) -> list[str]:
        """The alive nodes' ids (hex), asked of the cluster by a separate driver process once all have registered."""
        script = (
            "import json, sys, time, ray\n"
            "ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, logging_level='ERROR')\n"
            "deadline = time.monotonic() + float(sys.argv[3])\n"
            "while True:\n"
            "    alive = [n['NodeID'] for n in ray.nodes() if n['Alive']]\n"
            "    if len(alive) >= int(sys.argv[2]) or time.monotonic() > deadline:\n"
            "        break\n"
            "    time.sleep(0.5)\n"
            "print(json.dumps(sorted(alive)))\n"
        )
        self._check_alive()
        try:
            done = subprocess.run([sys.executable, "-c", script, self.address, str(1 + self.worker_nodes),
                                   str(self.start_timeout_s)], capture_output=True, text=True, env=self.env,
                                  timeout=self.start_timeout_s + 60)
        except subprocess.TimeoutExpired:
            raise TiercutError(f"listing the nodes of the Ray cluster at {self.address} took over "
                               f"{self.start_timeout_s + 60:g} s; see {', '.join(map(str, self.logs))}") from None
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise TiercutError(f"cannot list the nodes of the Ray cluster at {self.address}: "
                               f"{(done.stderr.strip().splitlines() or ['no output'])[-1][:300]}")
        ids = json.loads(lines[-1])
        if len(ids) < 1 + self.worker_nodes:
            raise TiercutError(f"{len(ids)} of {1 + self.worker_nodes} Ray nodes registered within "
                               f"{self.start_timeout_s:g} s; see {', '.join(map(str, self.logs))}")
        return ids

    def stop(self, keep_logs: bool = False) -> None:
        """End this cluster's processes only: SIGTERM to each node's process group, then SIGKILL to whatever is left
        of the sessions the nodes were started in (Ray's workers, agents; Ray's processes take SIGTERM slowly), waiting
        until they are gone; then the cluster's temporary folder (its logs) is removed, unless ``keep_logs``."""
        sessions = {process.pid for process in self.processes}
        for process in reversed(self.processes):  # worker nodes first, then the head
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        deadline = time.monotonic() + 30.0
        while (left := session_members(sessions)) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5.0)
        self.processes = []
        if self.temp_dir and not keep_logs:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["LocalRayCluster", "free_port", "ray_executable", "session_members"]
