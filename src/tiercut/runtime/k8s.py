"""Kubernetes manifests for the workers of an environment (``tiercut deploy k8s``).

For every server device (tier ``edge`` or ``cloud``) of an environment: a
Deployment of one worker (the ``Dockerfile``'s image, ``tiercut serve`` with
the device's name, its peers as the other devices' Services, the token from
a Secret in ``$TIERCUT_TOKEN``, a store volume bounded like the device's
memory, a TCP readiness probe, a non-root read-only container) and a
ClusterIP Service in front of it. End devices are clients and get none.
A device whose catalog entry is a GPU (``kind: gpu``) runs the CUDA image
(``Dockerfile.cuda``), requests one ``nvidia.com/gpu`` (the NVIDIA device
plugin's extended resource; a limit, which Kubernetes also uses as the
request) and serves with ``--torch-device cuda``.

The token travels only as a Kubernetes Secret (never in the Deployment's
arguments or environment literals). With ``tls_secret``, the workers serve
mutual TLS from a Secret of the ``kubernetes.io/tls`` kind plus ``ca.crt``
mounted read-only; without it they pass ``--insecure`` (the token then
crosses the cluster network in clear, which ``tiercut deploy`` warns about).

:func:`validate_manifest` checks a manifest against the Kubernetes object
schema offline, with the official ``kubernetes`` Python client's models
(pydantic models generated from the Kubernetes OpenAPI document, version
37 or later): unknown fields, wrong types and missing required fields are
errors.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError

APP_LABEL = "tiercut-worker"
TOKEN_KEY = "token"
ENVIRONMENT_KEY = "environment.yaml"
STORE_PATH = "/var/lib/tiercut"
CONFIG_PATH = "/etc/tiercut"
TLS_PATH = "/etc/tiercut-tls"
#: keys of the TLS Secret (``kubectl create secret tls NAME --cert --key``, plus ``ca.crt``)
TLS_KEYS = {"cert": "tls.crt", "key": "tls.key", "ca": "ca.crt"}
SERVER_TIERS = ("edge", "cloud")
#: the extended resource the NVIDIA device plugin advertises
GPU_RESOURCE = "nvidia.com/gpu"

#: (apiVersion, kind) -> model class name in ``kubernetes.client``
MODELS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("v1", "Secret"): "V1Secret",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Namespace"): "V1Namespace",
}

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def dns_label(name: str, *, prefix: str = "") -> str:
    """A DNS-1123 label (lower case, digits, '-', at most 63) made from ``name``."""
    text = re.sub(r"[^a-z0-9-]+", "-", (prefix + name).lower()).strip("-")
    text = re.sub(r"-{2,}", "-", text)[:63].rstrip("-")
    if not text or not _DNS_LABEL.match(text):
        raise TiercutError(f"device name {name!r} gives no valid Kubernetes name; rename it with letters and digits")
    return text


@dataclass(frozen=True)
class K8sSettings:
    """How the workers are deployed.

    Attributes:
        image: the worker image (built from the ``Dockerfile``).
        namespace: the namespace of every object (created by the manifests).
        port: the gRPC port of workers and Services.
        secret_name: the Secret holding the token (key ``token``).
        token: the token to put in a generated Secret (None: a random one).
        create_secret: emit the Secret (False: it exists already, e.g.
            ``kubectl create secret generic tiercut-token --from-literal=token=...``).
        emulate_links: workers shape what they send like the environment's
            links (for a test cluster on one fast network); off on a real one.
        cpu_request: CPU each worker requests.
        image_pull_policy: ``IfNotPresent``, ``Always`` or ``Never``.
        gpu_image: the image of workers on GPU devices (``Dockerfile.cuda``).
        gpus_per_worker: ``nvidia.com/gpu`` each GPU worker requests.
        tls_secret: a Secret with ``tls.crt``, ``tls.key`` and ``ca.crt``: the
            workers serve mutual TLS with it (None: plaintext, ``--insecure``).
    """

    image: str = "tiercut-worker:0.1.0"
    namespace: str = "tiercut"
    port: int = 50051
    secret_name: str = "tiercut-token"
    token: str | None = None
    create_secret: bool = True
    emulate_links: bool = False
    cpu_request: str = "1"
    image_pull_policy: str = "IfNotPresent"
    gpu_image: str = "tiercut-worker:0.1.0-cuda"
    gpus_per_worker: int = 1
    tls_secret: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise TiercutError(f"port {self.port} is out of range 1..65535")
        dns_label(self.namespace)
        dns_label(self.secret_name)
        if self.tls_secret is not None:
            dns_label(self.tls_secret)
        if self.image_pull_policy not in ("IfNotPresent", "Always", "Never"):
            raise TiercutError(f"image pull policy {self.image_pull_policy!r} is not IfNotPresent, Always or Never")
        for image in (self.image, self.gpu_image):
            if not image or any(c.isspace() for c in image):
                raise TiercutError(f"image {image!r} is not a container image reference")
        if self.gpus_per_worker < 1:
            raise TiercutError(f"GPUs per worker {self.gpus_per_worker} must be at least 1")


def _quantity(nbytes: int) -> str:
    """Bytes as a Kubernetes quantity in MiB (rounded up)."""
    return f"{max(1, -(-int(nbytes) // 2**20))}Mi"


def uses_gpu(device: Any) -> bool:
    """Whether a device's catalog entry (shipped or a user's file) is a GPU."""
    from tiercut.env import CatalogRef
    from tiercut.profile import get_device_spec

    if isinstance(device.spec, str):
        return get_device_spec(device.spec).kind == "gpu"
    if isinstance(device.spec, CatalogRef):
        return get_device_spec(device.spec.entry, device.spec.catalog).kind == "gpu"
    return False


def server_devices(environment: Any) -> list[Any]:
    """The devices that run workers: every edge and cloud device."""
    return [d for d in environment.devices if d.tier in SERVER_TIERS]


def worker_manifests(environment: Any, settings: K8sSettings | None = None) -> list[dict[str, Any]]:
    """Namespace, Secret (and ConfigMap) plus a Deployment and a Service per server device."""
    import yaml

    settings = settings or K8sSettings()
    servers = server_devices(environment)
    if not servers:
        raise TiercutError(f"environment {environment.name!r} has no edge or cloud device; there is no worker to deploy")
    for device in servers:
        if any(c in device.name for c in ",="):
            raise TiercutError(f"device name {device.name!r} contains ',' or '='; rename it to deploy it")
    names = {d.name: dns_label(d.name, prefix="tiercut-worker-") for d in servers}
    if len(set(names.values())) != len(names):
        raise TiercutError("two devices give the same Kubernetes name; rename them so they differ in letters or digits")
    namespace = settings.namespace
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"app.kubernetes.io/part-of": "tiercut"}},
        }
    ]
    if settings.create_secret:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": settings.secret_name, "namespace": namespace},
                "type": "Opaque",
                "stringData": {TOKEN_KEY: settings.token or secrets.token_hex(24)},
            }
        )
    if settings.emulate_links:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "tiercut-environment", "namespace": namespace},
                "data": {ENVIRONMENT_KEY: yaml.safe_dump(environment.to_dict(), sort_keys=False)},
            }
        )
    for device in servers:
        docs.extend(_device_objects(device, names, settings))
    return docs


def _device_objects(device: Any, names: Mapping[str, str], settings: K8sSettings) -> list[dict[str, Any]]:
    name = names[device.name]
    namespace = settings.namespace
    labels = {
        "app.kubernetes.io/name": APP_LABEL,
        "app.kubernetes.io/part-of": "tiercut",
        "tiercut.io/device": dns_label(device.name),
        "tiercut.io/tier": device.tier,
    }
    selector = {"app.kubernetes.io/name": APP_LABEL, "tiercut.io/device": labels["tiercut.io/device"]}
    memory = device.memory_bytes
    store_bytes = int(memory * 0.5) if memory else 8 * 2**30
    peers = ",".join(f"{other}={names[other]}.{namespace}.svc:{settings.port}" for other in names if other != device.name)
    args = [
        "--device",
        device.name,
        "--listen",
        f"0.0.0.0:{settings.port}",
        "--store",
        STORE_PATH,
        "--max-store-bytes",
        str(store_bytes),
    ]
    if peers:
        args += ["--peers", peers]
    if settings.cpu_request.isdigit():
        args += ["--torch-threads", settings.cpu_request]
    if settings.emulate_links:
        args += ["--env", f"{CONFIG_PATH}/{ENVIRONMENT_KEY}"]
    gpu = uses_gpu(device)
    if gpu:
        args += ["--torch-device", "cuda"]
    mounts = [{"name": "store", "mountPath": STORE_PATH}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [
        {"name": "store", "emptyDir": {"sizeLimit": _quantity(store_bytes + 2**26)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    if settings.tls_secret is not None:
        for what, key in TLS_KEYS.items():
            args += [f"--tls-{what}", f"{TLS_PATH}/{key}"]
        mounts.append({"name": "tls", "mountPath": TLS_PATH, "readOnly": True})
        # owned by root, group fsGroup: the non-root worker reads them through its group
        volumes.append({"name": "tls", "secret": {"secretName": settings.tls_secret, "defaultMode": 0o440}})
    else:
        args.append("--insecure")  # plaintext inside the cluster: the token crosses its network in clear
    if settings.emulate_links:
        mounts.append({"name": "environment", "mountPath": CONFIG_PATH, "readOnly": True})
        volumes.append({"name": "environment", "configMap": {"name": "tiercut-environment"}})
    resources: dict[str, Any] = {"requests": {"cpu": settings.cpu_request, "memory": "512Mi"}}
    if memory:
        resources["limits"] = {"memory": _quantity(memory)}
    if gpu:
        resources.setdefault("limits", {})[GPU_RESOURCE] = str(settings.gpus_per_worker)
    probe = {"tcpSocket": {"port": "grpc"}, "initialDelaySeconds": 5, "periodSeconds": 10}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
                    "containers": [
                        {
                            "name": "worker",
                            "image": settings.gpu_image if gpu else settings.image,
                            "imagePullPolicy": settings.image_pull_policy,
                            "args": args,
                            "env": [
                                {
                                    "name": "TIERCUT_TOKEN",
                                    "valueFrom": {"secretKeyRef": {"name": settings.secret_name, "key": TOKEN_KEY}},
                                },
                            ],
                            "ports": [{"name": "grpc", "containerPort": settings.port, "protocol": "TCP"}],
                            "readinessProbe": probe,
                            "livenessProbe": {**probe, "initialDelaySeconds": 30, "periodSeconds": 20},
                            "resources": resources,
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "grpc", "port": settings.port, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}],
        },
    }
    return [deployment, service]


def manifests_yaml(docs: Sequence[Mapping[str, Any]]) -> str:
    """The manifests as one multi-document YAML stream (``kubectl apply -f``), without YAML anchors."""
    import yaml

    class PlainDumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump_all([dict(d) for d in docs], Dumper=PlainDumper, sort_keys=False)


def validate_manifest(doc: Mapping[str, Any]) -> None:
    """Check one manifest against the Kubernetes object schema; a :class:`TiercutError` names the first problem."""
    try:
        import kubernetes.client as k8s
    except ImportError:
        raise TiercutError("validating Kubernetes manifests needs the kubernetes client (pip install 'kubernetes>=37')") from None
    key = (doc.get("apiVersion"), doc.get("kind"))
    model_name = MODELS.get(key)  # type: ignore[arg-type]
    if model_name is None:
        raise TiercutError(f"manifest of apiVersion {key[0]!r} and kind {key[1]!r} is not one tiercut writes")
    model = getattr(k8s, model_name)
    if not hasattr(model, "model_validate"):
        raise TiercutError("the installed kubernetes client is too old to validate manifests; install kubernetes>=37")
    import pydantic

    try:
        model.model_validate(dict(doc))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TiercutError(f"{key[1]} {doc.get('metadata', {}).get('name', '?')!r}: {where}: {first['msg']}") from None


__all__ = [
    "GPU_RESOURCE",
    "MODELS",
    "K8sSettings",
    "dns_label",
    "manifests_yaml",
    "server_devices",
    "uses_gpu",
    "validate_manifest",
    "worker_manifests",
]
