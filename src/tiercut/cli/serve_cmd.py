"""``tiercut serve``: run a worker for one edge or cloud device."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from tiercut.errors import TiercutError


def parse_bytes(text: str) -> int:
    """``"512MB"``, ``"4GiB"``, ``"1e9"`` -> bytes."""
    units = {
        "": 1,
        "b": 1,
        "kb": 10**3,
        "mb": 10**6,
        "gb": 10**9,
        "tb": 10**12,
        "kib": 2**10,
        "mib": 2**20,
        "gib": 2**30,
        "tib": 2**40,
    }
    match = re.fullmatch(r"([0-9.]+(?:e[+-]?[0-9]+)?)([a-z]*)", text.strip().lower().replace(" ", ""))
    if match is None:
        raise TiercutError(f"size {text!r} is not a number of bytes; write e.g. 512MB, 4GiB or 1e9")
    number, unit = match.groups()
    try:
        value = float(number)
    except ValueError:
        raise TiercutError(f"size {text!r} is not a number of bytes; write e.g. 512MB, 4GiB or 1e9") from None
    if unit not in units:
        raise TiercutError(f"size unit {unit!r} of {text!r} is not known; use B, KB, MB, GB, KiB, MiB or GiB")
    if value <= 0:
        raise TiercutError(f"size {text!r} must be > 0")
    return int(value * units[unit])


def serve(
    device: Annotated[str, typer.Option("--device", help="the device this worker serves (its name in the environment)")],
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to bind; port 0 picks a free port")] = "127.0.0.1:50051",
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="TIERCUT_TOKEN", help="shared secret clients send (also from $TIERCUT_TOKEN)"),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate chain of this worker")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of this worker")] = None,
    tls_ca: Annotated[Path | None, typer.Option("--tls-ca", help="PEM CA that signs client certificates (mutual TLS)")] = None,
    store: Annotated[
        Path | None, typer.Option("--store", help="folder where confirmed partitions persist across restarts")
    ] = None,
    max_message_bytes: Annotated[str, typer.Option("--max-message-bytes", help="largest upload or query message")] = "1GiB",
    max_store_bytes: Annotated[str, typer.Option("--max-store-bytes", help="bound on the weights and programs held")] = "8GiB",
    peers: Annotated[
        str | None, typer.Option("--peers", help="workers it may forward to: name=host:port,... (e.g. cloud=10.0.0.2:50051)")
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", help="environment preset or file: emulate its links on what this worker sends")
    ] = None,
    bandwidth_scale: Annotated[float, typer.Option("--bandwidth-scale", help="multiply emulated bandwidths by this")] = 1.0,
    threads: Annotated[int, typer.Option("--threads", help="partitions executed concurrently")] = 4,
    torch_threads: Annotated[int | None, typer.Option("--torch-threads", help="intra-op threads of torch")] = None,
    compute_slowdown: Annotated[
        float,
        typer.Option("--compute-slowdown", help="emulate a device this many times slower than this host (>= 1; tests)"),
    ] = 1.0,
    torch_device: Annotated[
        str, typer.Option("--torch-device", help="cpu, cuda, cuda:N or auto: where partitions and profiles run")
    ] = "cpu",
    insecure: Annotated[
        bool, typer.Option("--insecure", help="allow serving without a token or TLS on a non-loopback address")
    ] = False,
) -> None:
    """Serve partitions of one device over gRPC: uploads with confirmations, queries, forwarding, profiling."""
    from tiercut.profile.measure import resolve_torch_device
    from tiercut.runtime.links import LinkTable
    from tiercut.runtime.protocol import Credentials
    from tiercut.runtime.worker import WorkerConfig, parse_address, parse_peers, run_worker

    host, _ = parse_address(listen)
    credentials = Credentials(token=token, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca)
    loopback = host in ("127.0.0.1", "::1", "localhost")
    if not credentials.token and not credentials.uses_tls and not loopback and not insecure:
        raise TiercutError(
            f"worker would accept anyone on {listen}; pass --token (or $TIERCUT_TOKEN) or --tls-cert/--tls-key/--tls-ca, "
            "or --insecure on a trusted network"
        )
    links = None
    if env is not None:
        from tiercut.env import load_environment

        environment = load_environment(env)
        environment.device(device)  # the device must be in it
        if not bandwidth_scale > 0:
            raise TiercutError(f"--bandwidth-scale {bandwidth_scale} must be > 0")
        links = LinkTable.from_environment(environment, device, bandwidth_scale=bandwidth_scale)
    config = WorkerConfig(
        device=device,
        listen=listen,
        credentials=credentials,
        store_dir=store,
        max_message_bytes=parse_bytes(max_message_bytes),
        max_store_bytes=parse_bytes(max_store_bytes),
        peers=parse_peers(peers),
        links=links,
        threads=threads,
        torch_threads=torch_threads,
        compute_slowdown=compute_slowdown,
        torch_device=resolve_torch_device(torch_device),
    )
    run_worker(config)
