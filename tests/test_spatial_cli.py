"""``tiercut plan --spatial auto|off --max-tiles N``: tiled plans through the CLI, and its user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from spatial_fixtures import edge_cluster_problem
from tiercut.cli import main
from tiercut.plan.spatial import plan_from_json, recompute

MODEL = ["spatial_fixtures:SmallCNN", "--allow-code", "--input-shape", "1,3,40,40"]
UNTOUCHABLE = ["no_such_package.module:factory", "--allow-code", "--input-shape", "1,3,40,40"]


@pytest.fixture
def cluster(tmp_path: Path) -> list[str]:
    problem = edge_cluster_problem(3)
    env = {
        "name": "cluster",
        "devices": [{"name": d.name, "tier": d.tier, "power_compute_w": d.power_compute_w} for d in problem.devices],
        "links": [{"a": k.a, "b": k.b, "bandwidth_bytes_per_s": k.bandwidth_bytes_per_s, "latency_s": k.latency_s}
                  for k in problem.links],
        "users": [{"name": "me", "device": "phone", "model": MODEL[0]}],
    }  # fmt: skip
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(env))
    (tmp_path / "times.json").write_text(json.dumps({n: dict(row) for n, row in problem.compute_s.items()}))
    return ["--env", str(tmp_path / "cluster.yaml"), "--compute-table", str(tmp_path / "times.json")]


@pytest.mark.slow
def test_spatial_auto_plans_tiles_and_the_json_recomputes(cluster, capsys):
    assert main(["plan", *MODEL, *cluster, "--spatial", "auto", "--max-tiles", "3", "--set", "time_limit_s=30", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (stage,) = data["plan"]["tiled_stages"]
    assert 2 <= len(stage["tiles"]) <= 3
    assert data["plan"]["settings"]["base"] == "ilp" and data["plan"]["settings"]["base_settings"] == {"time_limit_s": 30}
    problem, plan = plan_from_json(data)
    again = recompute(problem, plan).evaluation
    assert again.latency_s == pytest.approx(data["plan"]["latency_s"], rel=1e-9)

    assert main(["plan", *MODEL, *cluster, "--spatial", "off", "--json"]) == 0
    layer_only = json.loads(capsys.readouterr().out)
    assert "tiled_stages" not in layer_only["plan"] and "spatial_stacks" not in layer_only["problem"]
    assert data["plan"]["latency_s"] < layer_only["plan"]["latency_s"]


def test_spatial_table_names_the_tiled_stage(cluster, capsys):
    assert main(["plan", *MODEL, *cluster, "--spatial", "auto", "--max-tiles", "2"]) == 0
    out = capsys.readouterr().out
    assert "tiled stage: layers" in out and "home edge0" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--spatial", "maybe"], "--spatial 'maybe' is not known; use auto or off"),
        (["--spatial", "auto", "--max-tiles", "0"], "--max-tiles 0 must be >= 1"),
    ],
)
def test_bad_spatial_options_fail_before_the_model_is_built(extra, message, capsys):
    assert main(["plan", *UNTOUCHABLE, "--env", "three-tier", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_spatial_auto_needs_module_granularity(cluster, capsys):
    assert main(["plan", *MODEL, *cluster, "--spatial", "auto", "--granularity", "block"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--spatial auto needs --granularity module" in err and len(err.splitlines()) == 1
