"""``tiercut deploy k8s``: Kubernetes manifests for the workers of an environment.

The token lives in a Kubernetes Secret in the manifests; a manifest file
holding it is written with mode 0600, and ``--token-file`` keeps the token
(read if the file exists, else generated and written with mode 0600) for the
clients' ``--token``.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from tiercut.cli.checks import check_output_path, write_text_output
from tiercut.cli.options import alias
from tiercut.errors import TiercutError

TARGETS = ("k8s",)
PRIVATE_MODE = 0o600


def _token(path: Path | None) -> str | None:
    """The token in ``path`` (which must be private), or a new one written there (mode 0600); None without a path."""
    if path is None:
        return None
    if path.exists():
        check_output_path(path, "--token-file")
        if os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TiercutError(f"token file {path} is readable by others; run chmod 600 {path}")
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TiercutError(f"cannot read token file {path}: {exc}") from None
        if not token or any(c.isspace() for c in token) or len(token) > 512:
            raise TiercutError(f"token file {path} does not hold one token (no spaces, at most 512 characters)")
        return token
    token = secrets.token_hex(24)
    write_text_output(path, "--token-file", token + "\n", mode=PRIVATE_MODE)
    return token


def plan_partitions(path: Path) -> dict[str, object]:
    """Device -> :class:`~tiercut.runtime.k8s.PartitionMemory` of a plan file (``tiercut plan --json`` output)."""
    from tiercut.datafiles import read_json_file
    from tiercut.problem import Problem
    from tiercut.runtime.k8s import partition_memory

    data = read_json_file(path, "plan file")
    if not isinstance(data, dict) or not isinstance(data.get("problem"), dict) or not isinstance(data.get("plan"), dict):
        raise TiercutError(f"plan file {path} is not the JSON of 'tiercut plan --json' (an object with problem and plan)")
    placement = data["plan"].get("placement")
    if not isinstance(placement, dict) or not all(isinstance(v, str) for v in placement.values()):
        raise TiercutError(f"plan file {path} has no placement (node -> device); write it with 'tiercut plan --json'")
    return partition_memory(Problem.from_dict(data["problem"]), placement)


def deploy(
    target: Annotated[str, typer.Argument(help="what to write manifests for: k8s")],
    env: Annotated[str, typer.Option("--env", help="environment preset or YAML/JSON file whose edge/cloud devices get workers")],
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="write the YAML here, mode 0600 (default: standard output)")
    ] = None,
    old_output: Annotated[Path | None, typer.Option("--output", hidden=True, help="deprecated: --out")] = None,
    image: Annotated[str, typer.Option("--image", help="worker image built from the Dockerfile")] = "tiercut-worker:0.1.0",
    gpu_image: Annotated[
        str, typer.Option("--gpu-image", help="image of workers on GPU devices, built from Dockerfile.cuda")
    ] = "tiercut-worker:0.1.0-cuda",
    namespace: Annotated[str, typer.Option("--namespace", help="namespace of every object")] = "tiercut",
    port: Annotated[int, typer.Option("--port", help="gRPC port of the workers")] = 50051,
    secret_name: Annotated[str, typer.Option("--secret-name", help="Secret holding the token (key 'token')")] = "tiercut-token",
    existing_secret: Annotated[
        bool, typer.Option("--existing-secret", help="do not write the Secret: it exists (kubectl create secret generic ...)")
    ] = False,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="the token for the Secret: read from this file, or generated into it (mode 0600)"),
    ] = None,
    tls_secret: Annotated[
        str | None,
        typer.Option("--tls-secret", help="Secret with tls.crt, tls.key and ca.crt: workers serve mutual TLS with it"),
    ] = None,
    emulate_links: Annotated[
        bool, typer.Option("--emulate-links", help="workers shape their traffic like the environment's links")
    ] = False,
    service_type: Annotated[
        str,
        typer.Option(
            "--service-type", help="ClusterIP (in the cluster), NodePort or LoadBalancer (from outside: needs --tls-secret)"
        ),
    ] = "ClusterIP",
    health_port: Annotated[int, typer.Option("--health-port", help="plaintext port of the gRPC health service (probes)")] = 50052,
    cpu_request: Annotated[str, typer.Option("--cpu-request", help="CPU each worker requests (2, 1.5, 500m)")] = "1",
    cpu_limit: Annotated[
        str | None, typer.Option("--cpu-limit", help="CPU limit of each worker; torch's threads follow it (default: none)")
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option("--plan", help="a 'tiercut plan --json' file: memory requests from the weights and activations it places"),
    ] = None,
    validate: Annotated[
        bool, typer.Option("--validate/--no-validate", help="check every object against the Kubernetes schema (needs kubernetes)")
    ] = False,
) -> None:
    """Write Kubernetes manifests: a Deployment and a Service per edge/cloud device, the token from a Secret."""
    from tiercut.env import load_environment
    from tiercut.runtime.k8s import K8sSettings, manifests_yaml, validate_manifest, worker_manifests

    output = alias(output, old_output, new="--out", old="--output", default=None)
    if target not in TARGETS:
        raise TiercutError(f"deploy target {target!r} is not known; use one of {', '.join(TARGETS)}")
    if output is not None:
        check_output_path(output, "--out")
    if token_file is not None and existing_secret:
        raise TiercutError("--token-file gives the token of a Secret this command writes; drop it with --existing-secret")
    environment = load_environment(env)
    settings = K8sSettings(
        image=image,
        gpu_image=gpu_image,
        namespace=namespace,
        port=port,
        secret_name=secret_name,
        create_secret=not existing_secret,
        emulate_links=emulate_links,
        tls_secret=tls_secret,
        service_type=service_type,
        health_port=health_port,
        cpu_request=cpu_request,
        cpu_limit=cpu_limit,
    )
    partitions = None if plan is None else plan_partitions(plan)
    docs = worker_manifests(environment, settings, partitions)  # checks everything before the token file is written
    token = _token(token_file)
    if token is not None:
        docs = worker_manifests(environment, replace(settings, token=token), partitions)
    if validate:
        for doc in docs:
            validate_manifest(doc)
    text = manifests_yaml(docs)
    if tls_secret is None:
        typer.echo(
            "without --tls-secret the workers serve plaintext (--insecure): the token crosses the cluster network in clear",
            err=True,
        )
    if output is None:
        typer.echo(text, nl=False)
        if not existing_secret:
            typer.echo("the output holds the token in a Secret: keep it private", err=True)
        return
    write_text_output(output, "--out", text, mode=PRIVATE_MODE)
    servers = [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"]
    typer.echo(f"wrote {len(docs)} objects ({', '.join(servers)}) to {output}; apply with: kubectl apply -f {output}")
    if not existing_secret:
        typer.echo(f"the file (mode 0600) holds the token in Secret {secret_name!r}: keep it private", err=True)
