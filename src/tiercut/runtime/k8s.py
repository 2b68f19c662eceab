"""Kubernetes manifests for the workers of an environment (``tiercut deploy k8s``).

For every server device (tier ``edge`` or ``cloud``) of an environment: a
Deployment of one worker (the ``Dockerfile``'s image, ``tiercut serve`` with
the device's name, its peers as the other devices' Services, the token from
a Secret in ``$TIERCUT_TOKEN``, a store volume, a non-root read-only
container) and a Service in front of it, of the type asked for
(``ClusterIP``, or ``NodePort`` / ``LoadBalancer`` to reach the workers from
outside the cluster, which needs TLS). End devices are clients and get none.
A device whose catalog entry is a GPU (``kind: gpu``) runs the CUDA image
(``Dockerfile.cuda``), requests one ``nvidia.com/gpu`` (the NVIDIA device
plugin's extended resource; a limit, which Kubernetes also uses as the
request) and serves with ``--torch-device cuda``.

Probes: the worker serves the standard gRPC health service
(:mod:`tiercut.runtime.health`) on a plaintext health port of its own
(Kubernetes' gRPC probe cannot speak TLS); a startup probe gives it time to
import torch and reload its store, then readiness and liveness probes ask
``grpc.health.v1.Health/Check`` (built-in ``grpc`` probes, Kubernetes 1.27+).

Resources (:func:`worker_resources`), per device:

- memory request = the worker's own footprint (:data:`WORKER_OVERHEAD_BYTES`)
  + the weights its partitions use + the activations of
  :attr:`K8sSettings.runs` concurrent runs (both from a plan, when given:
  :func:`partition_memory`);
- memory limit = the device's memory less what the node keeps for itself:
  the kubelet's system reservation as GKE computes it (25% of the first
  4 GiB, 20% of the next 4, 10% of the next 8, 6% of the next 112, 2%
  above 128 GiB; cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes)
  and its 100 MiB hard eviction threshold. Not the device's whole memory,
  which would let the worker starve the node's own daemons; a plan needing
  more than that limit is refused;
- the store bound (``--max-store-bytes``) = that limit less the footprint
  and the activations, so the weights a client uploads fit under the limit
  (8 GiB when the device's memory is unknown);
- CPU: the request asked for (default 1) and an optional limit; torch's
  intra-op threads follow the limit (the worker reads its cgroup quota,
  :mod:`tiercut.runtime.cpus`), else the request.

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

import math
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
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
MIB = 2**20
GIB = 2**30
#: an idle worker's resident memory (Python, torch, gRPC): 533 MiB measured (VmRSS of
#: ``python -m tiercut.runtime`` with torch 2.x's CUDA-capable build, on this project's
#: development machine), rounded up
WORKER_OVERHEAD_BYTES = 600 * MIB
#: the kubelet's default hard eviction threshold (memory.available < 100Mi)
EVICTION_THRESHOLD_BYTES = 100 * MIB
#: GKE's memory reservation for the node's own daemons: (size of the band, fraction reserved)
SYSTEM_RESERVED_BANDS = ((4 * GIB, 0.25), (4 * GIB, 0.20), (8 * GIB, 0.10), (112 * GIB, 0.06), (math.inf, 0.02))
#: the store bound when the device's memory is unknown (``tiercut serve``'s default)
DEFAULT_STORE_BYTES = 8 * GIB

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
        service_type: ``ClusterIP`` (inside the cluster), ``NodePort`` or
            ``LoadBalancer`` (reachable from outside: needs ``tls_secret``).
        health_port: the plaintext port serving only the gRPC health
            service, which the probes ask (not part of the Service).
        cpu_limit: CPU limit of each worker (None: none); torch's threads follow it.
        runs: partition runs a worker executes at once (``--threads``); each
            holds its activations.
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
    service_type: str = "ClusterIP"
    health_port: int = 50052
    cpu_limit: str | None = None
    runs: int = 4

    def __post_init__(self) -> None:
        for what, port in (("port", self.port), ("health port", self.health_port)):
            if not 1 <= port <= 65535:
                raise TiercutError(f"{what} {port} is out of range 1..65535")
        if self.port == self.health_port:
            raise TiercutError(f"the health port must differ from the worker's port {self.port}")
        if self.service_type not in SERVICE_TYPES:
            raise TiercutError(f"service type {self.service_type!r} is not one of {', '.join(SERVICE_TYPES)}")
        if self.service_type != "ClusterIP" and self.tls_secret is None:
            raise TiercutError(
                f"a {self.service_type} Service exposes the workers outside the cluster, where a token must not travel "
                "in clear; give --tls-secret"
            )
        for what, value in (("CPU request", self.cpu_request), ("CPU limit", self.cpu_limit)):
            if value is not None:
                cpu_cores(value, what)
        if self.cpu_limit is not None and cpu_cores(self.cpu_limit, "CPU limit") < cpu_cores(self.cpu_request, "CPU request"):
            raise TiercutError(f"CPU limit {self.cpu_limit} is below the CPU request {self.cpu_request}")
        if self.runs < 1:
            raise TiercutError(f"runs per worker {self.runs} must be at least 1")
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
    return f"{max(1, -(-int(nbytes) // MIB))}Mi"


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")


def cpu_cores(quantity: str, what: str = "CPU") -> float:
    """A Kubernetes CPU quantity (``2``, ``1.5``, ``500m``) in cores."""
    match = _CPU.match(quantity.strip())
    if match is None or float(match.group(1)) <= 0:
        raise TiercutError(f"{what} {quantity!r} is not a CPU quantity like 2, 1.5 or 500m")
    return float(match.group(1)) / (1000 if match.group(2) else 1)


def system_reserved_bytes(memory_bytes: int) -> int:
    """Memory a Kubernetes node keeps for its own daemons (GKE's bands, :data:`SYSTEM_RESERVED_BANDS`)."""
    reserved, left = 0.0, float(memory_bytes)
    for size, fraction in SYSTEM_RESERVED_BANDS:
        band = min(left, size)
        reserved += band * fraction
        left -= band
        if left <= 0:
            break
    return math.ceil(reserved)


def allocatable_bytes(memory_bytes: int) -> int:
    """What pods may use of a node of ``memory_bytes``: less the system reservation and the eviction threshold."""
    return memory_bytes - system_reserved_bytes(memory_bytes) - EVICTION_THRESHOLD_BYTES


@dataclass(frozen=True)
class PartitionMemory:
    """What a device's partitions of a plan hold.

    Attributes:
        weights_bytes: the distinct parameters its nodes use (shared ones once).
        activation_bytes: the outputs of its nodes (an upper bound of what one run holds at once).
    """

    weights_bytes: int = 0
    activation_bytes: int = 0


def partition_memory(problem: Any, placement: Mapping[str, str]) -> dict[str, PartitionMemory]:
    """Device -> :class:`PartitionMemory` of a plan (the cost model's memory per device, plus outputs)."""
    from tiercut.cost.model import memory_bytes

    weights = memory_bytes(problem, placement)
    activations: dict[str, int] = dict.fromkeys(problem.device_names, 0)
    for node in problem.graph:
        device = placement.get(node.name)
        if device in activations and not node.is_input:
            activations[device] += int(node.out_bytes)
    return {d: PartitionMemory(int(weights.get(d, 0)), activations[d]) for d in problem.device_names}


@dataclass(frozen=True)
class WorkerResources:
    """The resources of one worker's container and its store bound (see the module doc)."""

    memory_request_bytes: int
    memory_limit_bytes: int | None
    store_bytes: int
    cpu_request: str
    cpu_limit: str | None
    torch_threads: int | None

    def to_k8s(self) -> dict[str, Any]:
        requests = {"cpu": self.cpu_request, "memory": _quantity(self.memory_request_bytes)}
        limits: dict[str, Any] = {}
        if self.memory_limit_bytes is not None:
            limits["memory"] = _quantity(self.memory_limit_bytes)
        if self.cpu_limit is not None:
            limits["cpu"] = self.cpu_limit
        return {"requests": requests, "limits": limits} if limits else {"requests": requests}


def worker_resources(device: Any, settings: K8sSettings, partition: PartitionMemory | None = None) -> WorkerResources:
    """Requests, limits and store bound of ``device``'s worker; refuses a plan that does not fit the device."""
    partition = partition or PartitionMemory()
    working = settings.runs * partition.activation_bytes
    request = WORKER_OVERHEAD_BYTES + partition.weights_bytes + working
    limit = None if not device.memory_bytes else allocatable_bytes(int(device.memory_bytes))
    if limit is not None and request > limit:
        raise TiercutError(
            f"device {device.name!r}: its worker needs {_quantity(request)} (runtime {_quantity(WORKER_OVERHEAD_BYTES)}, "
            f"weights {_quantity(partition.weights_bytes)}, {settings.runs} runs' activations {_quantity(working)}) but "
            f"{_quantity(limit)} of its {_quantity(device.memory_bytes)} are left after the node's reservation; "
            "plan with a memory constraint or give the device more memory"
        )
    store = DEFAULT_STORE_BYTES if limit is None else limit - WORKER_OVERHEAD_BYTES - working
    threads = None
    if settings.cpu_limit is None:  # no quota for the worker to read: one thread per requested core
        threads = max(1, math.floor(cpu_cores(settings.cpu_request)))
    return WorkerResources(request, limit, store, settings.cpu_request, settings.cpu_limit, threads)


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


def worker_manifests(
    environment: Any, settings: K8sSettings | None = None, partitions: Mapping[str, PartitionMemory] | None = None
) -> list[dict[str, Any]]:
    """Namespace, Secret (and ConfigMap) plus a Deployment and a Service per server device.

    ``partitions``: device -> what a plan puts there (:func:`partition_memory`), for the memory requests.
    """
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
        resources = worker_resources(device, settings, (partitions or {}).get(device.name))
        docs.extend(_device_objects(device, names, settings, resources))
    return docs


def _probes(settings: K8sSettings) -> dict[str, Any]:
    """Startup, readiness and liveness: gRPC health checks on the plaintext health port."""
    from tiercut.runtime.protocol import SERVICE

    return {
        # torch's import and a store reload: up to 2 minutes before the other probes start
        "startupProbe": {"grpc": {"port": settings.health_port}, "periodSeconds": 2, "failureThreshold": 60},
        "readinessProbe": {
            "grpc": {"port": settings.health_port, "service": SERVICE},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "grpc": {"port": settings.health_port},
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
    }


def _device_objects(
    device: Any, names: Mapping[str, str], settings: K8sSettings, resources: WorkerResources
) -> list[dict[str, Any]]:
    name = names[device.name]
    namespace = settings.namespace
    labels = {
        "app.kubernetes.io/name": APP_LABEL,
        "app.kubernetes.io/part-of": "tiercut",
        "tiercut.io/device": dns_label(device.name),
        "tiercut.io/tier": device.tier,
    }
    selector = {"app.kubernetes.io/name": APP_LABEL, "tiercut.io/device": labels["tiercut.io/device"]}
    store_bytes = resources.store_bytes
    peers = ",".join(f"{other}={names[other]}.{namespace}.svc:{settings.port}" for other in names if other != device.name)
    args = [
        "--device",
        device.name,
        "--listen",
        f"0.0.0.0:{settings.port}",
        "--health-listen",
        f"0.0.0.0:{settings.health_port}",
        "--store",
        STORE_PATH,
        "--max-store-bytes",
        str(store_bytes),
    ]
    if peers:
        args += ["--peers", peers]
    if resources.torch_threads is not None:
        args += ["--torch-threads", str(resources.torch_threads)]
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
    container_resources = resources.to_k8s()
    if gpu:
        container_resources.setdefault("limits", {})[GPU_RESOURCE] = str(settings.gpus_per_worker)
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
                            "ports": [
                                {"name": "grpc", "containerPort": settings.port, "protocol": "TCP"},
                                {"name": "health", "containerPort": settings.health_port, "protocol": "TCP"},
                            ],
                            **_probes(settings),
                            "resources": container_resources,
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
            "type": settings.service_type,
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
    "SERVICE_TYPES",
    "WORKER_OVERHEAD_BYTES",
    "K8sSettings",
    "PartitionMemory",
    "WorkerResources",
    "allocatable_bytes",
    "cpu_cores",
    "dns_label",
    "manifests_yaml",
    "partition_memory",
    "server_devices",
    "system_reserved_bytes",
    "uses_gpu",
    "validate_manifest",
    "worker_manifests",
    "worker_resources",
]
