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


# ---------------------------------------------------------------- Service types, probes, resources

GIB, MIB = 2**30, 2**20


def _by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def _container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("service_type", ["ClusterIP", "NodePort", "LoadBalancer"])
def test_each_service_type_validates_and_probes_ask_the_grpc_health_service(service_type, kubernetes_schema):
    from tiercut.runtime.protocol import SERVICE

    settings = K8sSettings(service_type=service_type, tls_secret="tiercut-tls", health_port=8081)
    docs = worker_manifests(load_environment("three-tier"), settings)
    for doc in docs:
        validate_manifest(doc)
    for service in _by_kind(docs, "Service"):
        assert service["spec"]["type"] == service_type
        assert [p["port"] for p in service["spec"]["ports"]] == [settings.port]  # the health port stays inside the pod
    for deployment in _by_kind(docs, "Deployment"):
        container = _container(deployment)
        args = container["args"]
        assert args[args.index("--health-listen") + 1] == "0.0.0.0:8081"
        assert {"name": "health", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == 8081 and "tcpSocket" not in container[probe]
        assert container["readinessProbe"]["grpc"]["service"] == SERVICE
        assert "--tls-dir" not in args and args[args.index("--tls-key") + 1].endswith("tls.key")


def test_services_reachable_from_outside_need_tls_and_settings_are_checked():
    for service_type in ("NodePort", "LoadBalancer"):
        with pytest.raises(TiercutError, match="give --tls-secret"):
            K8sSettings(service_type=service_type)
    for bad, message in (
        ({"service_type": "ExternalName"}, "not one of ClusterIP, NodePort, LoadBalancer"),
        ({"health_port": 50051}, "must differ"),
        ({"health_port": 0}, "health port 0 is out of range"),
        ({"cpu_request": "two"}, "not a CPU quantity"),
        ({"cpu_request": "2", "cpu_limit": "1"}, "below the CPU request"),
    ):
        with pytest.raises(TiercutError, match=message):
            K8sSettings(**bad)


def _one_server(memory: str | None):
    device = {"name": "edge", "tier": "edge"}
    if memory is not None:
        device["memory"] = memory
    return environment_from_mapping({"name": "one", "devices": [{"name": "phone", "tier": "end"}, device],
                                     "links": [{"a": "phone", "b": "edge", "bandwidth": "100 Mbit/s"}]})


@pytest.mark.parametrize(
    "memory, reserved",
    [
        # GKE's bands: 25% of the first 4 GiB, 20% of the next 4, 10% of the next 8, 6% of the next 112, 2% above 128
        ("2 GiB", 0.5 * GIB),
        ("16 GiB", (1 + 0.8 + 0.8) * GIB),
        ("200 GiB", (1 + 0.8 + 0.8 + 0.06 * 112 + 0.02 * 72) * GIB),
    ],
)
def test_memory_limit_is_the_device_memory_less_the_node_reservation(memory, reserved):
    from tiercut.runtime.k8s import WORKER_OVERHEAD_BYTES, allocatable_bytes, system_reserved_bytes

    environment = _one_server(memory)
    device = environment.device("edge")
    assert system_reserved_bytes(device.memory_bytes) == pytest.approx(reserved, abs=1)
    limit = device.memory_bytes - reserved - 100 * MIB
    assert allocatable_bytes(device.memory_bytes) == pytest.approx(limit, abs=1)
    container = _container(_by_kind(worker_manifests(environment), "Deployment")[0])
    assert container["resources"]["limits"]["memory"] == f"{-(-round(limit) // MIB)}Mi"
    assert container["resources"]["requests"]["memory"] == f"{WORKER_OVERHEAD_BYTES // MIB}Mi"
    store = int(container["args"][container["args"].index("--max-store-bytes") + 1])
    assert store == pytest.approx(limit - WORKER_OVERHEAD_BYTES, abs=1)  # what is left under the limit holds weights


def test_unknown_memory_gets_a_request_and_no_limit():
    container = _container(_by_kind(worker_manifests(_one_server(None)), "Deployment")[0])
    assert "limits" not in container["resources"] and container["resources"]["requests"]["memory"] == "600Mi"
    assert container["args"][container["args"].index("--max-store-bytes") + 1] == str(8 * GIB)


def _plan_file(tmp_path, environment, weights_on_edge: int):
    """A plan JSON: input on phone, a big layer and its output on edge."""
    import json

    from tiercut.graph.types import LayerGraph, Node
    from tiercut.problem import build_problem

    graph = LayerGraph(
        (
            Node("x", "input", out_bytes=MIB),
            Node("a", "linear", ("x",), flops=1e9, param_bytes=weights_on_edge, out_bytes=4 * MIB),
            Node("b", "relu", ("a",), out_bytes=4 * MIB),
            Node("c", "linear", ("b",), flops=1e6, param_bytes=8 * MIB, out_bytes=1024, is_output=True),
        ),
        model="big",
    )
    compute = {n: {"phone": 1.0, "edge": 0.1} for n in ("a", "b", "c")}
    problem = build_problem(graph, environment, source="phone", compute_s=compute)
    placement = {"x": "phone", "a": "edge", "b": "edge", "c": "phone"}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"problem": problem.to_dict(), "plan": {"placement": placement}}))
    return path


def test_a_plan_sets_the_request_from_its_weights_and_activations_and_a_plan_too_big_is_refused(tmp_path):
    from tiercut.cli.deploy_cmd import plan_partitions
    from tiercut.runtime.k8s import WORKER_OVERHEAD_BYTES, PartitionMemory

    environment = _one_server("16 GiB")
    partitions = plan_partitions(_plan_file(tmp_path, environment, 300 * MIB))
    assert partitions["edge"] == PartitionMemory(weights_bytes=300 * MIB, activation_bytes=8 * MIB)
    assert partitions["phone"].weights_bytes == 8 * MIB
    settings = K8sSettings(runs=3)
    container = _container(_by_kind(worker_manifests(environment, settings, partitions), "Deployment")[0])
    request = WORKER_OVERHEAD_BYTES + 300 * MIB + 3 * 8 * MIB
    assert container["resources"]["requests"]["memory"] == f"{request // MIB}Mi"
    too_big = plan_partitions(_plan_file(tmp_path, environment, 15 * GIB))
    with pytest.raises(TiercutError, match=r"device 'edge': its worker needs .* plan with a memory constraint"):
        worker_manifests(environment, settings, too_big)


@pytest.mark.parametrize(
    "request_, limit, threads, cpu_limits",
    [("1", None, "1", None), ("2.5", None, "2", None), ("500m", None, "1", None), ("2", "4", None, "4")],
)
def test_torch_threads_follow_the_cpu_limit_else_the_request(request_, limit, threads, cpu_limits):
    settings = K8sSettings(cpu_request=request_, cpu_limit=limit)
    container = _container(_by_kind(worker_manifests(_one_server("16 GiB"), settings), "Deployment")[0])
    args = container["args"]
    assert (args[args.index("--torch-threads") + 1] if "--torch-threads" in args else None) == threads
    assert container["resources"]["requests"]["cpu"] == request_
    assert container["resources"]["limits"].get("cpu") == cpu_limits  # with a limit the worker reads its cgroup quota


def test_deploy_command_writes_a_load_balancer_with_tls_and_a_plan(tmp_path, capsys):
    from tiercut.cli import main

    environment_file = tmp_path / "env.yaml"
    environment_file.write_text(
        "devices:\n  - {name: phone, tier: end}\n  - {name: edge, tier: edge, memory: 16 GiB}\n"
        "links:\n  - {a: phone, b: edge, bandwidth: 100 Mbit/s, latency: 2 ms}\n"
    )
    plan = _plan_file(tmp_path, load_environment(environment_file), 300 * MIB)
    out = tmp_path / "workers.yaml"
    code = main(["deploy", "k8s", "--env", str(environment_file), "--service-type", "LoadBalancer", "--tls-secret", "tls",
                 "--plan", str(plan), "--cpu-limit", "2", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    docs = list(yaml.safe_load_all(out.read_text()))
    assert _by_kind(docs, "Service")[0]["spec"]["type"] == "LoadBalancer"
    container = _container(_by_kind(docs, "Deployment")[0])
    assert container["resources"]["limits"]["cpu"] == "2" and container["resources"]["requests"]["memory"] == "932Mi"
    assert main(["deploy", "k8s", "--env", str(environment_file), "--service-type", "NodePort"]) == 2
    assert "give --tls-secret" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"problem": {}}')
    assert main(["deploy", "k8s", "--env", str(environment_file), "--plan", str(tmp_path / "bad.json")]) == 2
    assert "is not the JSON of 'tiercut plan --json'" in capsys.readouterr().err
