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
