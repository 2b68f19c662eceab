"""The worker image's documented ``docker run`` commands, run without docker.

docker cannot run here: each ``docker run`` documented in the Dockerfiles'
comments is parsed (its ``-e`` variables, ``-v`` mounts and arguments, with
the image's ``ENV``) and its arguments given to the image's entry point,
``python -m tiercut.runtime``, with that environment.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_runtime_worker import tls_files  # noqa: F401  (mutual-TLS certificates fixture)
from tiercut.errors import TiercutError

ROOT = Path(__file__).resolve().parent.parent
TLS_MOUNT = "/etc/tiercut-tls"


def _instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    joined, current = [], ""
    for line in dockerfile.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        current += line.rstrip().rstrip("\\") + " "
        if not line.rstrip().endswith("\\"):
            joined.append(current.strip())
            current = ""
    return joined


def image_env(dockerfile: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in _instructions(dockerfile):
        if instruction.startswith("ENV "):
            for pair in shlex.split(instruction[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def documented_runs(dockerfile: str) -> list[list[str]]:
    """Every ``docker run`` command of the comments, as argv (continuations joined)."""
    runs, current = [], None
    for line in dockerfile.splitlines():
        text = line.lstrip("#").strip()
        if current is None and text.startswith("docker run"):
            current = ""
        if current is not None:
            current += text.rstrip("\\") + " "
            if not text.endswith("\\"):
                runs.append(shlex.split(current))
                current = None
    return runs


def parse_run(argv: list[str]) -> tuple[dict[str, str], dict[str, str], str, list[str]]:
    """(``-e`` variables, ``-v`` mounts destination -> source, image, arguments after the image)."""
    env, mounts = {}, {}
    i = 2
    while argv[i].startswith("-"):
        flag = argv[i]
        if flag in ("--rm",):
            i += 1
            continue
        value = argv[i + 1]
        if flag == "-e":
            key, _, val = value.partition("=")
            env[key] = val
        elif flag == "-v":
            source, destination = value.split(":")[:2]
            mounts[destination] = source
        elif flag not in ("-p", "--gpus"):
            raise AssertionError(f"unexpected docker flag {flag}")
        i += 2
    return env, mounts, argv[i], argv[i + 1 :]


@pytest.fixture
def tls_dir(tls_files: Path, tmp_path: Path) -> Path:  # noqa: F811
    """A folder laid out like a Kubernetes TLS Secret (plus ca.crt)."""
    folder = tmp_path / "tls"
    folder.mkdir()
    for source, name in (("server.pem", "tls.crt"), ("server.key", "tls.key"), ("ca.pem", "ca.crt")):
        shutil.copy(tls_files / source, folder / name)
    return folder


def _configs(dockerfile: Path, tls_dir: Path, monkeypatch) -> list[object]:
    """The WorkerConfig each documented run would serve with (the worker itself is not started)."""
    import tiercut.runtime.worker as worker_module
    from tiercut.runtime.__main__ import main

    text = dockerfile.read_text()
    base = image_env(text)
    seen: list[object] = []
    monkeypatch.setattr(worker_module, "run_worker", lambda config, **kw: seen.append(config))
    runs = documented_runs(text)
    assert runs, f"{dockerfile.name} documents no docker run"
    for argv in runs:
        env, mounts, image, args = parse_run(argv)
        assert image.startswith("tiercut-worker:")
        for key in ("TIERCUT_TOKEN", "TIERCUT_LISTEN", "TIERCUT_HEALTH_LISTEN", "TIERCUT_STORE", "TIERCUT_TLS_DIR"):
            monkeypatch.delenv(key, raising=False)
        for key, value in {**base, **env}.items():
            monkeypatch.setenv(key, "t0ken" if "$(" in value else value)
        store = tls_dir.parent / "store"
        monkeypatch.setenv("TIERCUT_STORE", str(store))  # the image's /var/lib/tiercut, writable here
        args = [str(tls_dir) if a == TLS_MOUNT else a for a in args]
        if TLS_MOUNT in " ".join(argv):
            assert mounts.get(TLS_MOUNT, "").endswith("tls")
        if "--torch-device" in args:  # the CUDA image's runs: no GPU here
            args[args.index("--torch-device") + 1] = "cpu"
        assert main(args) == 0, args
    return seen


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_documented_docker_runs_listen_on_every_interface_with_tls_or_an_explicit_insecure(name, tls_dir, monkeypatch):
    configs = _configs(ROOT / name, tls_dir, monkeypatch)
    for config in configs:
        assert config.listen == "0.0.0.0:50051"  # reachable through a published port
        assert config.health_listen == "0.0.0.0:50052"
        assert config.credentials.token == "t0ken"
        assert config.store_dir is not None
        assert config.torch_threads >= 1
    with_tls = [c for c in configs if c.credentials.uses_tls]
    assert with_tls and with_tls[0].credentials.tls_key == tls_dir / "tls.key"


def test_the_image_refuses_to_listen_without_credentials_or_tls(monkeypatch, capsys):
    from tiercut.runtime.__main__ import main

    for key, value in image_env((ROOT / "Dockerfile").read_text()).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TIERCUT_TOKEN", raising=False)
    assert main(["--device", "edge"]) == 2  # the image's CMD, nothing else
    assert "would accept anyone on 0.0.0.0:50051" in capsys.readouterr().err
    monkeypatch.setenv("TIERCUT_TOKEN", "t0ken")
    assert main(["--device", "edge"]) == 2
    assert "would receive its token in clear" in capsys.readouterr().err


def test_tls_dir_and_single_files_exclude_each_other(tmp_path):
    from tiercut.cli.serve_cmd import tls_files as files

    with pytest.raises(TiercutError, match="not both"):
        files(tmp_path, tmp_path / "a.pem", None, None)
    with pytest.raises(TiercutError, match="is not a folder"):
        files(tmp_path / "absent", None, None, None)
    assert files(tmp_path, None, None, None) == (tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt")


@pytest.mark.slow
def test_the_documented_tls_run_serves_a_real_worker_reachable_over_mutual_tls(tls_dir, tls_files):  # noqa: F811
    """The image's TLS `docker run`, for real: a worker process on 0.0.0.0, queried over mTLS with the token."""
    from grpc_health.v1 import health_pb2

    from tiercut.runtime.protocol import Connection, Credentials

    text = (ROOT / "Dockerfile").read_text()
    env, _, _, args = parse_run(next(r for r in documented_runs(text) if TLS_MOUNT in " ".join(r)))
    assert env.keys() == {"TIERCUT_TOKEN"}
    child = {**os.environ, **image_env(text), "TIERCUT_TOKEN": "t0ken"}
    child["PATH"] = os.environ["PATH"]
    child.update(TIERCUT_LISTEN="0.0.0.0:0", TIERCUT_HEALTH_LISTEN="0.0.0.0:0", TIERCUT_STORE=str(tls_dir.parent / "store"))
    child["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    args = [str(tls_dir) if a == TLS_MOUNT else a for a in args]
    process = subprocess.Popen(
        [sys.executable, "-m", "tiercut.runtime", *args],
        env=child,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"listening on 0\.0\.0\.0:(\d+)", line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        port = int(match.group(1))
        health_port = None
        deadline = time.monotonic() + 60
        while health_port is None and time.monotonic() < deadline:
            found = re.search(r"health service .* on port (\d+)", process.stderr.readline())
            health_port = int(found.group(1)) if found else None
        assert health_port

        async def ask():
            client = Credentials(
                token="t0ken", tls_cert=tls_files / "client.pem", tls_key=tls_files / "client.key", tls_ca=tls_files / "ca.pem"
            )
            connection = Connection("edge", f"127.0.0.1:{port}", client)
            try:
                status = await connection.status(timeout_s=20)
            finally:
                await connection.close()
            import grpc
            from grpc_health.v1 import health_pb2_grpc

            async with grpc.aio.insecure_channel(f"127.0.0.1:{health_port}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            return status, reply.status

        status, health = asyncio.run(ask())
        assert status["device"] == "edge"
        assert health == health_pb2.HealthCheckResponse.SERVING
    finally:
        process.terminate()
        process.wait(timeout=30)
