"""``tiercut serve``, ``tiercut run`` and ``tiercut deploy``: output and one-line errors."""

from __future__ import annotations

import json

import pytest
import typer
import yaml

from tiercut.cli.deploy_cmd import deploy
from tiercut.cli.run_cmd import run
from tiercut.cli.serve_cmd import parse_bytes, serve
from tiercut.errors import TiercutError
from tiercut.runtime.processes import spawn_worker


def invoke(command, args: list[str], capsys) -> tuple[int, str, str]:
    """Run one command as ``tiercut`` does: a TiercutError is one line on stderr and exit status 2."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(command)
    app.command("unused")(lambda: None)  # two commands: the first argument names the command
    try:
        app([command.__name__, *args], standalone_mode=False)
        code = 0
    except TiercutError as exc:
        print(f"tiercut: error: {exc}", file=__import__("sys").stderr)
        code = 2
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "edge", "--listen", "0.0.0.0:50999"], "would accept anyone"),
        (["--device", "edge", "--listen", "nonsense"], "host:port"),
        (["--device", "nowhere", "--env", "three-tier"], "no device 'nowhere'"),
        (["--device", "edge", "--max-store-bytes", "12XB"], "unit"),
        (["--device", "edge", "--tls-cert", "c.pem"], "together"),
        (["--device", "edge", "--peers", "cloud"], "name=host:port"),
    ],
)
def test_serve_mistakes_are_one_line_errors(args, message, capsys):
    code, _, err = invoke(serve, args, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_worker_that_cannot_start_is_reported_with_its_reason(tmp_path):
    with pytest.raises(TiercutError, match=r"exited with status 2.*would accept anyone"):
        spawn_worker("edge", listen="0.0.0.0:0", log_path=tmp_path / "w.log", startup_timeout_s=120)


def test_sizes_read_like_people_write_them():
    assert parse_bytes("512MB") == 512 * 10**6
    assert parse_bytes("4GiB") == 4 * 2**30
    assert parse_bytes("1e9") == 10**9
    for bad in ("", "-1", "ten MB"):
        with pytest.raises(TiercutError):
            parse_bytes(bad)


def test_deploy_writes_manifests_for_every_server_device(tmp_path, capsys):
    out = tmp_path / "workers.yaml"
    code, stdout, err = invoke(
        deploy, ["k8s", "--env", "three-tier", "-o", str(out), "--image", "registry.example/tiercut:1",
                 "--gpu-image", "registry.example/tiercut:1-cuda"], capsys
    )
    assert code == 0 and "kubectl apply -f" in stdout and "keep it private" in err
    docs = list(yaml.safe_load_all(out.read_text()))
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert ("Deployment", "tiercut-worker-edge") in kinds and ("Service", "tiercut-worker-cloud") in kinds
    images = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
              for d in docs if d["kind"] == "Deployment"}
    # the Xeon edge runs the CPU image, the A100 cloud the CUDA one
    assert images == {"tiercut-worker-edge": "registry.example/tiercut:1",
                      "tiercut-worker-cloud": "registry.example/tiercut:1-cuda"}
    code, stdout, _ = invoke(deploy, ["k8s", "--env", "three-tier", "--existing-secret"], capsys)
    assert code == 0 and "kind: Deployment" in stdout and "kind: Secret" not in stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["helm", "--env", "three-tier"], "not known"),
        (["k8s", "--env", "no-such-env"], "neither a preset nor a file"),
        (["k8s", "--env", "three-tier", "--port", "0"], "out of range"),
    ],
)
def test_deploy_mistakes_are_one_line_errors(args, message, capsys):
    code, _, err = invoke(deploy, args, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def _tiny_plan(tmp_path):
    from tiercut.graph import capture_model

    captured = capture_model("fixtures_models:tiny_net", (1, 3, 8, 8))
    nodes = [n.name for n in captured.graph.nodes]
    server_side = nodes[2:-1]
    stages = [
        {"from_s": 0.0, "placement": dict.fromkeys(nodes, "end"), "latency_s": 1.0},
        {"from_s": 1.0, "placement": {n: ("edge" if n in server_side else "end") for n in nodes}, "latency_s": 0.5},
    ]
    plan = {
        "schema_version": 1,
        "algorithm": "by-hand",
        "server": "edge",
        "source": "end",
        "partitions": [{"nodes": server_side, "param_bytes": 0, "upload_s": 1.0, "arrives_s": 1.0}],
        "stages": stages,
        "metrics": {"queries_done_by_upload_end": 0, "time_for_n_queries_s": None, "n": 0, "mean_latency_during_upload_s": None},
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"problem": {}, "upload_plan": plan}))
    return path


@pytest.mark.slow
def test_run_with_a_given_upload_plan_prints_the_full_trace(tmp_path, capsys):
    plan = _tiny_plan(tmp_path)
    args = [
        "fixtures_models:tiny_net",
        "--allow-code",
        "--input-shape",
        "1,3,8,8",
        "--env",
        "three-tier",
        "--upload-plan",
        str(plan),
        "--queries",
        "4",
        "--verify",
        "--json",
        "--keep-uploading-s",
        "60",
        "--bandwidth-scale",
        "100",
    ]
    code, stdout, err = invoke(run, args, capsys)
    assert code == 0, err
    trace = json.loads(stdout)["run"]
    assert len(trace["queries"]) == 4 and all(q["output_matches"] for q in trace["queries"])
    assert trace["attempts"] and trace["attempts"][0]["ok"] and trace["upload_end_s"] is not None


@pytest.mark.slow
def test_run_plans_the_upload_with_the_named_planner_and_summarises(capsys, tmp_path):
    args = [
        "fixtures_models:tiny_net",
        "--allow-code",
        "--input-shape",
        "1,3,8,8",
        "--env",
        "three-tier",
        "--upload",
        "ionn",
        "--queries",
        "3",
        "--plot",
        str(tmp_path / "curve.png"),
    ]
    code, stdout, err = invoke(run, args, capsys)
    assert code == 0, err
    assert "3 queries" in stdout and "(ionn" in stdout and "fallbacks to local: 0" in stdout
    assert (tmp_path / "curve.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--artifact-format", "pickle"], "aten-json or onnx"),
        (["--queries", "0"], "must be >= 1"),
        (["--bandwidth-scale", "0"], "must be > 0"),
        (["--upload-plan", "/nonexistent/plan.json"], "cannot read upload plan"),
        (["--workers", "edge"], "name=host:port"),
    ],
)
def test_run_mistakes_are_one_line_errors(extra, message, capsys, tmp_path):
    args = [
        "fixtures_models:tiny_net",
        "--allow-code",
        "--input-shape",
        "1,3,8,8",
        "--env",
        "three-tier",
        "--upload-plan",
        str(_tiny_plan(tmp_path)),
        *extra,
    ]
    code, _, err = invoke(run, args, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_plan_for_another_model_is_refused(capsys, tmp_path):
    path = _tiny_plan(tmp_path)
    data = json.loads(path.read_text())
    data["upload_plan"]["partitions"][0]["nodes"].append("no_such_layer")
    path.write_text(json.dumps(data))
    args = ["fixtures_models:tiny_net", "--allow-code", "--input-shape", "1,3,8,8", "--env", "three-tier"]
    args += ["--upload-plan", str(path)]
    code, _, err = invoke(run, args, capsys)
    assert code == 2 and "no_such_layer" in err and len(err.strip().splitlines()) == 1
