"""``tiercut serve``: run a worker for one edge or cloud device."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from tiercut.cli.checks import check_finite
from tiercut.cli.options import alias
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
    if not value > 0 or value * units[unit] >= 2**63:
        raise TiercutError(f"size {text!r} must be > 0 and below 8 EiB")
    return int(value * units[unit])


TLS_DIR_FILES = {"cert": "tls.crt", "key": "tls.key", "ca": "ca.crt"}


def tls_files(tls_dir: Path | None, cert: Path | None, key: Path | None, ca: Path | None) -> tuple[Path | None, ...]:
    """``--tls-dir DIR`` as DIR/tls.crt, DIR/tls.key, DIR/ca.crt (a Kubernetes TLS Secret's names), or the three flags."""
    if tls_dir is None:
        return cert, key, ca
    if any(p is not None for p in (cert, key, ca)):
        raise TiercutError("give --tls-dir or --tls-cert/--tls-key/--tls-ca, not both")
    if not tls_dir.is_dir():
        raise TiercutError(f"--tls-dir {tls_dir} is not a folder holding tls.crt, tls.key and ca.crt")
    return tuple(tls_dir / TLS_DIR_FILES[what] for what in ("cert", "key", "ca"))


def torch_threads_default(torch_threads: int | None) -> tuple[int, str]:
    """The intra-op threads and why: ``--torch-threads``, else one per CPU this process may use (:mod:`tiercut.runtime.cpus`)."""
    if torch_threads is not None:
        return torch_threads, "--torch-threads"
    from tiercut.runtime.cpus import cpu_budget

    budget = cpu_budget()
    if budget.quota_cpus is None:
        return budget.threads, f"{budget.affinity} CPUs in this process's affinity, no cgroup CPU quota"
    return budget.threads, f"cgroup CPU quota {budget.quota_cpus:g} CPUs ({budget.quota_file}), affinity {budget.affinity}"


def serve(
    device: Annotated[str, typer.Option("--device", help="the device this worker serves (its name in the environment)")],
    listen: Annotated[
        str, typer.Option("--listen", envvar="TIERCUT_LISTEN", help="HOST:PORT to bind, port 0: any free one ($TIERCUT_LISTEN)")
    ] = "127.0.0.1:50051",
    health_listen: Annotated[
        str | None,
        typer.Option(
            "--health-listen",
            envvar="TIERCUT_HEALTH_LISTEN",
            help="HOST:PORT of a plaintext port serving only the gRPC health service (probes; $TIERCUT_HEALTH_LISTEN)",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="TIERCUT_TOKEN", help="shared secret clients send (also from $TIERCUT_TOKEN)"),
    ] = None,
    client_tokens: Annotated[
        Path | None,
        typer.Option(
            "--client-tokens",
            help="private file (chmod 600) of 'NAME TOKEN' lines: each client its own token, and its partitions and "
            "weights kept apart from every other client's",
        ),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate chain of this worker")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of this worker")] = None,
    tls_ca: Annotated[Path | None, typer.Option("--tls-ca", help="PEM CA that signs client certificates (mutual TLS)")] = None,
    tls_dir: Annotated[
        Path | None,
        typer.Option("--tls-dir", envvar="TIERCUT_TLS_DIR", help="folder with tls.crt, tls.key and ca.crt ($TIERCUT_TLS_DIR)"),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option("--store", envvar="TIERCUT_STORE", help="folder where confirmed partitions persist across restarts"),
    ] = None,
    max_message_bytes: Annotated[str, typer.Option("--max-message-bytes", help="largest upload or query message")] = "1GiB",
    max_store_bytes: Annotated[str, typer.Option("--max-store-bytes", help="bound on the weights and programs held")] = "8GiB",
    max_run_bytes: Annotated[
        str, typer.Option("--max-run-bytes", help="bound on the intermediates one partition run holds (checked at upload)")
    ] = "2GiB",
    max_pending_bytes: Annotated[
        str, typer.Option("--max-pending-bytes", help="bound on bytes held for clients at once (incomplete uploads, queries)")
    ] = "2GiB",
    max_pending_bytes_per_peer: Annotated[
        str, typer.Option("--max-pending-bytes-per-peer", help="the same bound per client connection")
    ] = "1GiB",
    max_concurrent_rpcs: Annotated[int, typer.Option("--max-concurrent-rpcs", help="calls served at once")] = 64,
    max_concurrent_uploads: Annotated[int, typer.Option("--max-concurrent-uploads", help="uploads received at once")] = 8,
    max_pending_uploads: Annotated[
        int, typer.Option("--max-pending-uploads", help="incomplete uploads kept for a resend at once")
    ] = 32,
    max_pending_uploads_per_client: Annotated[
        int, typer.Option("--max-pending-uploads-per-client", help="the same bound per client (token)")
    ] = 8,
    max_queued_runs: Annotated[
        int, typer.Option("--max-queued-runs", help="partition runs waiting for a thread; more are turned away as busy")
    ] = 16,
    max_query_s: Annotated[float, typer.Option("--max-query-s", help="the longest a query may run here")] = 600.0,
    idle_s: Annotated[float, typer.Option("--idle-s", help="end a call that sends nothing for this long")] = 60.0,
    peers: Annotated[
        str | None, typer.Option("--peers", help="workers it may forward to: name=host:port,... (e.g. cloud=10.0.0.2:50051)")
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", help="environment preset or file: emulate its links on what this worker sends")
    ] = None,
    bandwidth_scale: Annotated[float, typer.Option("--bandwidth-scale", help="multiply emulated bandwidths by this")] = 1.0,
    concurrent_partitions: Annotated[
        int, typer.Option("--concurrent-partitions", help="partitions executed concurrently")
    ] = 4,
    old_threads: Annotated[int | None, typer.Option("--threads", hidden=True, help="deprecated: --concurrent-partitions")] = None,
    torch_threads: Annotated[
        int | None,
        typer.Option("--torch-threads", help="intra-op threads of torch (default: one per CPU affinity and cgroup quota allow)"),
    ] = None,
    compute_slowdown: Annotated[
        float,
        typer.Option("--compute-slowdown", help="emulate a device this many times slower than this host (>= 1; tests)"),
    ] = 1.0,
    torch_device: Annotated[
        str, typer.Option("--torch-device", help="cpu, cuda, cuda:N or auto: where partitions and profiles run")
    ] = "cpu",
    allow_onnx: Annotated[
        bool, typer.Option("--allow-onnx", help="also run onnx programs (onnxruntime; op-type allow-list, static shapes)")
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="allow a non-loopback address without TLS (a token travels in clear) or without credentials"
        ),
    ] = False,
) -> None:
    """Serve partitions of one device over gRPC: uploads with confirmations, queries, forwarding, profiling."""
    from tiercut.profile.measure import resolve_torch_device
    from tiercut.runtime.links import LinkTable
    from tiercut.runtime.protocol import Credentials
    from tiercut.runtime.worker import (
        WorkerConfig,
        is_loopback,
        parse_address,
        parse_peers,
        read_client_tokens,
        run_worker,
    )

    concurrent_partitions = alias(
        concurrent_partitions, old_threads, new="--concurrent-partitions", old="--threads", default=4
    )
    host, _ = parse_address(listen)
    tls_cert, tls_key, tls_ca = tls_files(tls_dir, tls_cert, tls_key, tls_ca)
    credentials = Credentials(token=token, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca)
    tokens = read_client_tokens(client_tokens) if client_tokens is not None else {}
    if not is_loopback(host) and not credentials.uses_tls and not insecure:
        if credentials.token or tokens:
            raise TiercutError(
                f"worker on {listen} would receive its token in clear; pass --tls-cert/--tls-key/--tls-ca, "
                "or --insecure on a trusted network"
            )
        raise TiercutError(
            f"worker would accept anyone on {listen}; pass --token (or $TIERCUT_TOKEN) with --tls-dir (or "
            "--tls-cert/--tls-key/--tls-ca), or --insecure on a trusted network"
        )
    credentials.check_readable()
    threads_used, threads_reason = torch_threads_default(torch_threads)
    check_finite("--bandwidth-scale", bandwidth_scale, positive=True)
    check_finite("--max-query-s", max_query_s, positive=True)
    check_finite("--idle-s", idle_s, positive=True)
    links = None
    if env is not None:
        from tiercut.env import load_environment

        environment = load_environment(env)
        environment.device(device)  # the device must be in it
        links = LinkTable.from_environment(environment, device, bandwidth_scale=bandwidth_scale)
    config = WorkerConfig(
        device=device,
        listen=listen,
        credentials=credentials,
        store_dir=store,
        max_message_bytes=parse_bytes(max_message_bytes),
        max_store_bytes=parse_bytes(max_store_bytes),
        max_run_bytes=parse_bytes(max_run_bytes),
        max_pending_bytes=parse_bytes(max_pending_bytes),
        max_pending_bytes_per_peer=parse_bytes(max_pending_bytes_per_peer),
        max_concurrent_rpcs=max_concurrent_rpcs,
        max_concurrent_uploads=max_concurrent_uploads,
        max_pending_uploads=max_pending_uploads,
        max_pending_uploads_per_client=max_pending_uploads_per_client,
        max_queued_runs=max_queued_runs,
        max_query_s=max_query_s,
        idle_s=idle_s,
        peers=parse_peers(peers),
        links=links,
        threads=concurrent_partitions,
        torch_threads=threads_used,
        compute_slowdown=compute_slowdown,
        torch_device=resolve_torch_device(torch_device),
        allow_onnx=allow_onnx,
        health_listen=health_listen,
        client_tokens=tokens,
    )
    typer.echo(f"torch intra-op threads: {threads_used} ({threads_reason})", err=True)
    run_worker(config)
