"""``tiercut deploy k8s``: Kubernetes manifests for the workers of an environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tiercut.errors import TiercutError

TARGETS = ("k8s",)


def deploy(
    target: Annotated[str, typer.Argument(help="what to write manifests for: k8s")],
    env: Annotated[str, typer.Option("--env", help="environment preset or YAML/JSON file whose edge/cloud devices get workers")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the YAML here (default: standard output)")] = None,
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
    emulate_links: Annotated[
        bool, typer.Option("--emulate-links", help="workers shape their traffic like the environment's links")
    ] = False,
    validate: Annotated[
        bool, typer.Option("--validate/--no-validate", help="check every object against the Kubernetes schema (needs kubernetes)")
    ] = False,
) -> None:
    """Write Kubernetes manifests: a Deployment and a Service per edge/cloud device, the token from a Secret."""
    from tiercut.env import load_environment
    from tiercut.runtime.k8s import K8sSettings, manifests_yaml, validate_manifest, worker_manifests

    if target not in TARGETS:
        raise TiercutError(f"deploy target {target!r} is not known; use one of {', '.join(TARGETS)}")
    environment = load_environment(env)
    settings = K8sSettings(
        image=image,
        gpu_image=gpu_image,
        namespace=namespace,
        port=port,
        secret_name=secret_name,
        create_secret=not existing_secret,
        emulate_links=emulate_links,
    )
    docs = worker_manifests(environment, settings)
    if validate:
        for doc in docs:
            validate_manifest(doc)
    text = manifests_yaml(docs)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TiercutError(f"cannot write {output}: {exc.strerror}") from None
    servers = [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"]
    typer.echo(f"wrote {len(docs)} objects ({', '.join(servers)}) to {output}; apply with: kubectl apply -f {output}")
    if not existing_secret:
        typer.echo(f"the file holds a generated token in Secret {secret_name!r}: keep it private", err=True)
