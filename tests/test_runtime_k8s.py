"""Kubernetes manifests for the workers, checked against the Kubernetes object schema.

The schema check uses the official ``kubernetes`` Python client's models
(generated from the Kubernetes OpenAPI document, pydantic, version >= 37):
unknown fields, wrong types and missing required fields fail validation.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from tiercut.env import environment_from_mapping, load_environment
from tiercut.errors import TiercutError
from tiercut.runtime.k8s import K8sSettings, dns_label, manifests_yaml, server_devices, validate_manifest, worker_manifests


@pytest.fixture
def kubernetes_schema():
    return pytest.importorskip(
        "kubernetes", minversion="37", reason="the kubernetes client (>= 37) is needed to check manifests against the schema"
    )


@pytest.mark.parametrize("preset", ["three-tier", "migration-12"])
def test_every_object_is_valid_and_every_server_device_gets_a_deployment_and_a_service(preset, kubernetes_schema):
    environment = load_environment(preset)
    docs = worker_manifests(environment, K8sSettings(emulate_links=True, token="t0ken"))
    for doc in docs:
        validate_manifest(doc)
    servers = server_devices(environment)
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    services = [d for d in docs if d["kind"] == "Service"]
    assert len(deployments) == len(services) == len(servers) > 0
    assert not any(d.tier == "end" for d in servers)
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["stringData"]["token"] == "t0ken"
    for deployment, service, device in zip(deployments, services, servers):
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        args = container["args"]
        assert args[args.index("--device") + 1] == device.name
        token = next(e for e in container["env"] if e["name"] == "TIERCUT_TOKEN")
        assert token["valueFrom"]["secretKeyRef"] == {"name": "tiercut-token", "key": "token"}
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
        others = {d.name for d in servers} - {device.name}
        if others:
            peers = dict(p.split("=") for p in args[args.index("--peers") + 1].split(","))
            assert set(peers) == others
            assert all(address.endswith(":50051") and ".svc" in address for address in peers.values())
        assert container["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert environment_from_mapping(yaml.safe_load(config["data"]["environment.yaml"])).device_names == environment.device_names


def test_the_yaml_stream_reads_back_to_the_same_objects():
    docs = worker_manifests(load_environment("three-tier"), K8sSettings(create_secret=False))
    text = manifests_yaml(docs)
    assert "&id" not in text  # no YAML anchors
    assert list(yaml.safe_load_all(text)) == docs
    assert not any(d["kind"] == "Secret" for d in docs)


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("spec", "template", "spec", "containers", 0, "imagePullPolicy"), 3, "imagePullPolicy"),
        (("spec", "template", "spec", "containers", 0, "portz"), [], "portz"),
        (("spec", "replicas"), "one", "replicas"),
    ],
)
def test_the_schema_check_catches_wrong_objects(path, value, message, kubernetes_schema):
    deployment = next(d for d in worker_manifests(load_environment("three-tier")) if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(TiercutError, match=message):
        validate_manifest(broken)
    missing = copy.deepcopy(deployment)
    del missing["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(TiercutError, match="name"):
        validate_manifest(missing)
    with pytest.raises(TiercutError, match="not one tiercut writes"):
        validate_manifest({"apiVersion": "v1", "kind": "Pod"})


def test_environments_without_servers_or_with_clashing_names_are_refused():
    only_end = environment_from_mapping({"name": "solo", "devices": [{"name": "phone", "tier": "end"}]})
    with pytest.raises(TiercutError, match="no edge or cloud device"):
        worker_manifests(only_end)
    clash = environment_from_mapping(
        {"name": "clash", "devices": [{"name": "Edge_A", "tier": "edge"}, {"name": "edge-a", "tier": "edge"}]}
    )
    with pytest.raises(TiercutError, match="same Kubernetes name"):
        worker_manifests(clash)
    assert dns_label("Edge_Server #1", prefix="tiercut-worker-") == "tiercut-worker-edge-server-1"
    with pytest.raises(TiercutError, match="image"):
        K8sSettings(image="bad image")


def test_gpu_devices_request_an_nvidia_gpu_and_run_the_cuda_image(kubernetes_schema):
    """three-tier's cloud is an A100 (a GPU entry); its edge a Xeon (a CPU entry)."""
    environment = load_environment("three-tier")
    docs = worker_manifests(environment, K8sSettings(gpu_image="reg/tiercut:cuda"))
    for doc in docs:
        validate_manifest(doc)
    by_device = {d["metadata"]["labels"]["tiercut.io/device"]: d for d in docs if d["kind"] == "Deployment"}
    cloud = by_device["cloud"]["spec"]["template"]["spec"]["containers"][0]
    edge = by_device["edge"]["spec"]["template"]["spec"]["containers"][0]
    assert cloud["resources"]["limits"]["nvidia.com/gpu"] == "1" and cloud["image"] == "reg/tiercut:cuda"
    assert cloud["args"][cloud["args"].index("--torch-device") + 1] == "cuda"
    assert "nvidia.com/gpu" not in edge["resources"].get("limits", {}) and "--torch-device" not in edge["args"]
    assert edge["image"] == K8sSettings().image
    with pytest.raises(TiercutError, match="GPUs per worker"):
        K8sSettings(gpus_per_worker=0)


def test_the_cuda_dockerfile_is_a_build_variant_of_the_worker_image():
    """docker cannot run here: the CUDA variant is checked by reading it."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cpu, cuda = (root / "Dockerfile").read_text(), (root / "Dockerfile.cuda").read_text()
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cu" in cuda and "--index-url ${TORCH_INDEX}" in cuda
    assert "NVIDIA_VISIBLE_DEVICES" in cuda and '"--torch-device", "cuda"' in cuda
    for line in ("USER 10001:10001", 'ENTRYPOINT ["python", "-m", "tiercut.runtime"]', "EXPOSE 50051"):
        assert line in cpu and line in cuda  # same non-root worker, same entry point
    statements = [ln for ln in cuda.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    joined, current = [], ""
    for line in statements:  # join backslash continuations into one instruction each
        current += line.rstrip("\\") + " "
        if not line.rstrip().endswith("\\"):
            joined.append(current.split()[0])
            current = ""
    assert joined and not current
    assert set(joined) <= {"ARG", "FROM", "ENV", "WORKDIR", "RUN", "COPY", "USER", "VOLUME", "EXPOSE", "ENTRYPOINT", "CMD"}
    assert joined[0] == "ARG" and joined.count("FROM") == 2  # a two-stage build like ./Dockerfile
