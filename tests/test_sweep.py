"""``tiercut sweep``: grid validation (one-line errors), Ray == serial, resumable after an interruption.

One local Ray (2 CPUs) is started for the module's Ray tests and shared;
the models are layer-graph JSON files of two small torch networks, so a
cell is a plan and a short simulation (milliseconds).
"""

from __future__ import annotations

import json
import math

import pytest
import yaml

from tiercut.errors import TiercutError
from tiercut.sweep import TIMING_COLUMNS, expand, grid_from_mapping, load_grid, read_table, run_sweep


def _graph(width: int):
    """A small conv chain as a layer graph (figures of a 32x32 input; no tracing, so the fixture is instant)."""
    from tiercut.graph.types import LayerGraph, Node

    act = 4 * width * 32 * 32
    nodes = [
        Node("x", "input", out_bytes=4 * 3 * 32 * 32, out_shape=(1, 3, 32, 32)),
        Node("conv1", "conv2d", ("x",), flops=2 * 27 * width * 1024, matmul_flops=2 * 27 * width * 1024,
             param_bytes=4 * 27 * width, out_bytes=act),
        Node("relu1", "relu", ("conv1",), flops=width * 1024, out_bytes=act),
        Node("conv2", "conv2d", ("relu1",), flops=2 * 9 * width * width * 1024, matmul_flops=2 * 9 * width * width * 1024,
             param_bytes=4 * 9 * width * width, out_bytes=act),
        Node("pool", "adaptiveavgpool2d", ("conv2",), flops=width * 1024, out_bytes=4 * width),
        Node("fc", "linear", ("pool",), flops=2 * width * 10, matmul_flops=2 * width * 10, param_bytes=4 * width * 10,
             out_bytes=40, is_output=True),
    ]
    return LayerGraph(tuple(nodes), model=f"chain{width}")


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory):
    """Two graph JSON files and a 2 x 2 x 3 grid over them (with one simulated replication)."""
    folder = tmp_path_factory.mktemp("grid")
    for name, width in (("small", 8), ("wide", 256)):
        (folder / f"{name}.json").write_text(json.dumps(_graph(width).to_dict()))
    grid = {
        "name": "t",
        "models": ["small.json", {"model": "wide.json", "name": "wide"}],
        "environments": ["three-tier", "neurosurgeon-wifi"],
        "planners": ["mincut", "greedy", "neurosurgeon"],
        "simulate": {"queries": 5},
    }
    (folder / "grid.yaml").write_text(yaml.safe_dump(grid))
    partial = dict(grid, models=["small.json"])
    (folder / "partial.yaml").write_text(yaml.safe_dump(partial))
    return folder


def _comparable(rows):
    """Rows without the wall-clock columns, NaN made comparable."""
    def same(v):
        return "nan" if isinstance(v, float) and math.isnan(v) else v

    return [{k: same(v) for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


# ----------------------------------------------------------------- the grid
BASE = {"models": ["resnet18"], "environments": ["three-tier"], "planners": ["mincut"]}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"models": []}, "models: Tuple should have at least 1 item"),
        ({"planners": ["no-such-planner"]}, "planners.0: planner 'no-such-planner' is not registered"),
        ({"planners": [{"name": "ga", "settings": {"no_such_setting": 1}}]}, "planners.0"),
        ({"environments": ["no-such-env"]}, "environments.0"),
        ({"models": ["os:system"]}, "would import code; a grid is data only"),
        ({"models": ["resnet18.py:factory"]}, "would import code"),
        ({"models": ["nothing.txt"]}, "is not a zoo model"),
        ({"models": [{"model": "resnet18", "input_shape": [1, 0, 4]}]}, "input_shape must be 1 to 8 positive integers"),
        ({"settings": {"bandwidth": [1, 2]}}, "setting 'bandwidth' is not one a grid can vary"),
        ({"settings": {"objective": ["speed"]}}, "settings.objective.0"),
        ({"settings": {"objective": []}}, "lists no values"),
        ({"simulate": {"replications": 0}}, "simulate.replications"),
        ({"simulate": {"queries": 5, "rate": 3}}, "simulate.rate: Extra inputs are not permitted"),
        ({"planners": ["mincut", "mincut"]}, "planners lists 'mincut' twice"),
        ({"extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_bad_grids_are_one_line_errors_naming_the_field(change, message):
    with pytest.raises(TiercutError) as info:
        grid_from_mapping({**BASE, **change}, label="grid g.yaml")
    text = str(info.value)
    assert message in text and text.startswith("grid g.yaml: ") and "\n" not in text


def test_bad_grid_files_exit_2_with_one_line(tmp_path, capsys):
    from tiercut.cli import main

    cases = {
        "syntax.yaml": "models: [resnet18\n",
        "list.yaml": "- resnet18\n",
        "code.yaml": yaml.safe_dump({**BASE, "models": ["mypkg.mod:factory"]}),
        "tag.yaml": "models: !!python/object/apply:os.system ['true']\nenvironments: [three-tier]\nplanners: [mincut]\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        code = main(["sweep", str(tmp_path / name), "--serial", "-q", "-o", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        assert code == 2, (name, err)
        assert len(err.splitlines()) == 1 and err.startswith("tiercut: error: grid") and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()  # nothing written for a bad grid
    assert main(["sweep", str(tmp_path / "code.yaml"), "--serial", "--address", "x:1"]) == 2
    assert "drop --address" in capsys.readouterr().err


def test_cells_expand_in_order_and_keys_follow_the_inputs(grid_dir):
    grid = load_grid(grid_dir / "grid.yaml")
    cells = expand(grid)
    assert grid.size == len(cells) == 12
    assert [(c.model.label, c.environment.label, c.planner.label) for c in cells[:4]] == [
        ("small", "three-tier", "mincut"), ("small", "three-tier", "greedy"), ("small", "three-tier", "neurosurgeon"),
        ("small", "neurosurgeon-wifi", "mincut"),
    ]
    assert len({c.key() for c in cells}) == 12
    again = expand(load_grid(grid_dir / "grid.yaml"))
    assert [c.key() for c in again] == [c.key() for c in cells]  # a key is a pure function of the inputs
    # the same cell under another label has the same key; another setting, another key
    renamed = grid_from_mapping(
        {"models": [{"model": "small.json", "name": "other"}], "environments": ["three-tier"], "planners": ["mincut"],
         "simulate": {"queries": 5}}, base_dir=grid_dir,
    )
    assert expand(renamed)[0].key() == cells[0].key()
    fewer = grid_from_mapping(
        {"models": ["small.json"], "environments": ["three-tier"], "planners": ["mincut"], "simulate": {"queries": 6}},
        base_dir=grid_dir,
    )
    assert expand(fewer)[0].key() != cells[0].key()


@pytest.mark.slow  # twelve plans and simulations, three times
def test_an_interrupted_serial_sweep_resumes_without_recomputing(grid_dir, tmp_path, monkeypatch):
    import tiercut.sweep.runner as runner

    grid = load_grid(grid_dir / "grid.yaml")
    extracted = []
    real_extract = runner.extract_graph
    monkeypatch.setattr(runner, "extract_graph", lambda model, g: extracted.append(model.label) or real_extract(model, g))
    seen = []

    def stop_after_five(row):
        seen.append(row["key"])
        if len(seen) == 5:
            raise KeyboardInterrupt  # the user stops the sweep after 5 cells

    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid, tmp_path, serial=True, on_row=stop_after_five)
    stored = sorted(p.name for p in (tmp_path / "cells").glob("*.json"))
    assert stored == sorted(f"{k}.json" for k in seen)
    assert not (tmp_path / "results.parquet").exists()  # no table from a partial sweep
    assert extracted == ["small"]  # one graph extraction for the model's five cells
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").glob("*.json")}
    recomputed = []
    result = run_sweep(grid, tmp_path, serial=True, on_row=lambda row: recomputed.append(row["key"]))
    assert (result.reused, result.computed) == (5, 7)
    assert extracted == ["small", "small", "wide"]  # once per model per run, only for models with cells left
    assert not set(recomputed) & set(seen)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").glob("*.json") if p.name in mtimes} == mtimes
    assert [r["position"] for r in result.rows] == list(range(12))
    # a damaged cell file is computed again, the others are not
    (tmp_path / "cells" / f"{seen[0]}.json").write_text("{not json")
    again = run_sweep(grid, tmp_path, serial=True)
    assert (again.reused, again.computed) == (11, 1)
    assert _comparable(again.rows) == _comparable(result.rows)


# ----------------------------------------------------------------- on Ray
@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of 2 CPUs for the module's Ray tests (start-up takes seconds)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.mark.slow  # starts a local Ray
def test_ray_sweep_equals_serial_and_resumes_a_partial_grid(grid_dir, tmp_path, local_ray):
    grid = load_grid(grid_dir / "grid.yaml")
    serial = run_sweep(grid, tmp_path / "serial", serial=True)
    # the interrupted sweep: only the first model's cells were finished, on Ray
    partial = run_sweep(load_grid(grid_dir / "partial.yaml"), tmp_path / "ray")
    assert (partial.mode, partial.computed, partial.reused, partial.failed) == ("ray", 6, 0, 0)
    done_before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "cells").glob("*.json")}
    full = run_sweep(grid, tmp_path / "ray")
    assert (full.computed, full.reused, full.failed, full.workers) == (6, 6, 0, 2)
    assert len(full.nodes) == 1 and full.graphs == {"wide": "file"}  # one local node; only the model with cells left
    assert {n: m for n, m in ((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "ray" / "cells").glob("*.json"))
            if n in done_before} == done_before  # finished cells were not recomputed
    assert _comparable(full.rows) == _comparable(serial.rows)
    assert all(r["error"] == "" and r["feasible"] for r in full.rows)
    assert all(r["sim_queries"] == 5 for r in full.rows)
    parquet = read_table(tmp_path / "ray" / "results.parquet")
    assert _comparable(parquet) == _comparable(read_table(tmp_path / "serial" / "results.parquet"))
    assert [r["model"] for r in parquet] == ["small"] * 6 + ["wide"] * 6
    assert (tmp_path / "ray" / "results.csv").exists() and "| planner |" in (tmp_path / "ray" / "report.md").read_text()


@pytest.mark.slow  # planners' imports and two plans: seconds on a loaded machine
def test_cli_sweep_serial_writes_the_table_and_report_then_reuses_them(grid_dir, tmp_path, capsys):
    from tiercut.cli import main

    grid = {"name": "one", "models": ["small.json"], "environments": ["three-tier"], "planners": ["mincut", "local"]}
    path = grid_dir / "one.yaml"
    path.write_text(yaml.safe_dump(grid))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--serial", "-q", "-o", str(out), "--format", "csv"]) == 0
    text = capsys.readouterr().out
    assert "sweep one: 2 cells (2 computed, 0 reused)" in text and "| small | three-tier | mincut |" in text
    assert (out / "results.csv").exists() and not (out / "results.parquet").exists() and (out / "report.md").exists()
    rows = read_table(out / "results.csv")
    assert [r["planner"] for r in rows] == ["mincut", "local"] and rows[1]["devices"] == "end"
    assert rows[0]["objective_value"] <= rows[1]["objective_value"]  # min-cut is optimal, local a candidate
    assert main(["sweep", str(path), "--serial", "-q", "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["computed"], summary["reused"], summary["workers"]) == (0, 2, 1)
    assert main(["sweep", str(path), "--format", "xlsx"]) == 2
    assert "--format 'xlsx'" in capsys.readouterr().err


def test_the_example_grid_loads():
    from pathlib import Path

    grid = load_grid(Path(__file__).parents[1] / "examples" / "sweep" / "presets.yaml")
    assert grid.size == 24 and [p.label for p in grid.planners] == ["mincut", "neurosurgeon", "ga(seed=0)"]


# ----------------------------------------------------------------- on a multi-process Ray cluster (--address)
def _cluster_env(**extra: str) -> dict[str, str]:
    """The environment of a separate process importing this checkout's tiercut (the cluster's nodes, the driver)."""
    import os
    from pathlib import Path

    import tiercut

    src = str(Path(tiercut.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": src + (os.pathsep + path if path else ""), **extra}


def _sweep_cli(args, env):
    """``tiercut sweep ARGS`` as a separate driver process: (exit code, stdout, stderr)."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tiercut", "sweep", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)  # a hang guard, not a speed assertion
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A Ray cluster of separate processes on this machine: a head node (2 CPUs) and a worker node (1 CPU), both
    ``ray start --block`` in their own sessions, their workers' graph cache in their own folder. Teardown ends those
    processes only (not ``ray stop``, which would end every Ray of the user on the machine)."""
    from tiercut.sweep.cluster import LocalRayCluster

    pytest.importorskip("ray", reason="Ray is not installed (pip install 'tiercut[sweep]')")
    workers_cache = tmp_path_factory.mktemp("workers-cache")
    cluster = LocalRayCluster(head_cpus=2, worker_nodes=1, worker_cpus=1,
                              env=_cluster_env(TIERCUT_CACHE_DIR=str(workers_cache)))
    try:
        cluster.start()
    except TiercutError as exc:
        pytest.skip(f"cannot start a local Ray cluster with ray start: {exc}")
    cluster.workers_cache = workers_cache
    sessions = {process.pid for process in cluster.processes}
    try:
        yield cluster
    finally:
        cluster.stop()
    from tiercut.sweep.cluster import session_members

    assert not session_members(sessions)  # every process of the cluster (nodes, Ray's workers) has ended


@pytest.mark.slow  # a cluster of processes and a driver process: tens of seconds on a loaded machine
def test_cli_sweep_with_address_runs_on_the_cluster_and_equals_serial(grid_dir, tmp_path, ray_cluster):
    grid = load_grid(grid_dir / "grid.yaml")
    serial = run_sweep(grid, tmp_path / "serial", serial=True)
    env = _cluster_env(TIERCUT_CACHE_DIR=str(tmp_path / "driver-cache"), **ray_cluster.driver_env)
    code, out, err = _sweep_cli([grid_dir / "grid.yaml", "--address", ray_cluster.address, "-q", "--json",
                                 "-o", tmp_path / "cluster"], env)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["mode"], summary["computed"], summary["failed"]) == ("ray", 12, 0)
    assert summary["workers"] == ray_cluster.cpus == 3  # the cluster's CPUs, not a local Ray's
    assert summary["nodes"] and set(summary["nodes"]) <= set(ray_cluster.ids)  # every cell ran on the cluster
    assert summary["graphs"] == {"small": "file", "wide": "file"}  # read by the driver, shipped by the object store
    table = read_table(tmp_path / "cluster" / "results.parquet")
    assert _comparable(table) == _comparable(read_table(tmp_path / "serial" / "results.parquet"))
    assert _comparable(table) == _comparable(serial.rows)
    # resumable against the cluster too: nothing is computed again
    code, out, err = _sweep_cli([grid_dir / "grid.yaml", "--address", ray_cluster.address, "-q", "--json",
                                 "-o", tmp_path / "cluster"], env)
    assert code == 0, err
    assert (json.loads(out)["computed"], json.loads(out)["reused"]) == (0, 12)
    # the Ray Client form of the address (ray://head:port) runs the same cells on the same cluster
    code, out, err = _sweep_cli([grid_dir / "partial.yaml", "--address", ray_cluster.client_address, "-q", "--json",
                                 "-o", tmp_path / "client"], env)
    assert code == 0, err
    assert json.loads(out)["computed"] == 6 and set(json.loads(out)["nodes"]) <= set(ray_cluster.ids)
    assert _comparable(read_table(tmp_path / "client" / "results.parquet")) == _comparable(serial.rows[:6])


@pytest.mark.slow  # traces a zoo model in a cluster task (torch import and tracing: tens of seconds)
def test_graph_cache_when_the_driver_and_the_workers_are_separate_processes(tmp_path, ray_cluster):
    """The cache is per host and environment: a task traces into its node's cache, the graph comes back through
    the object store into the driver's cache, and the next sweep reads the driver's cache (no task traces), even
    when the workers' cache is gone (as on another host)."""
    grid = {"name": "zoo", "models": [{"model": "mobilenet_v2", "input_shape": [1, 3, 32, 32], "name": "mnv2"}],
            "environments": ["three-tier"], "planners": ["mincut", "local"]}
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(grid))
    driver_cache = tmp_path / "driver-cache"
    env = _cluster_env(TIERCUT_CACHE_DIR=str(driver_cache), **ray_cluster.driver_env)
    first_code, first_out, first_err = _sweep_cli([path, "--address", ray_cluster.address, "-q", "--json",
                                                   "-o", tmp_path / "a"], env)
    assert first_code == 0, first_err
    first = json.loads(first_out)
    assert first["graphs"] == {"mnv2": "task"} and first["computed"] == 2
    assert len(list((driver_cache / "graphs").glob("*.json"))) == 1  # the driver's cache has it now
    worker_entries = list((ray_cluster.workers_cache / "graphs").glob("*.json"))
    assert [p.name for p in worker_entries] == [p.name for p in (driver_cache / "graphs").glob("*.json")]
    for entry in worker_entries:  # as if the workers were on another host, without this graph
        entry.unlink()
    code, out, err = _sweep_cli([path, "--address", ray_cluster.address, "-q", "--json", "-o", tmp_path / "b"], env)
    assert code == 0, err
    second = json.loads(out)
    assert second["graphs"] == {"mnv2": "cache"} and second["computed"] == 2
    assert not list((ray_cluster.workers_cache / "graphs").glob("*.json"))  # no task traced it again
    assert _comparable(read_table(tmp_path / "b" / "results.csv")) == _comparable(read_table(tmp_path / "a" /
                                                                                             "results.csv"))


def test_a_bad_address_fails_at_once_with_one_line(grid_dir, tmp_path, capsys):
    from tiercut.cli import main
    from tiercut.sweep.cluster import free_port
    from tiercut.sweep.runner import check_address

    port = free_port()  # nothing listens on it
    code = main(["sweep", str(grid_dir / "partial.yaml"), "--address", f"127.0.0.1:{port}", "-q",
                 "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in err and "check --address" in err
    assert not list((tmp_path / "out").glob("cells/*.json"))  # no cell computed
    for bad in ("nohost", "host:abc", "ray://:10001", "h:0", "h:70000"):
        with pytest.raises(TiercutError, match="is not host:port") as info:
            check_address(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(TiercutError, match=f"ray://127.0.0.1:{port}"):
        check_address(f"ray://127.0.0.1:{port}")


@pytest.mark.slow  # Ray retries a refused token for about ten seconds
def test_a_driver_without_the_clusters_token_gets_one_line(grid_dir, tmp_path, ray_cluster):
    wrong = tmp_path / "token"
    wrong.write_text("0" * 64)
    env = _cluster_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(wrong))
    code, _, err = _sweep_cli([grid_dir / "partial.yaml", "--address", ray_cluster.address, "-q",
                                 "-o", tmp_path / "out"], env)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "refused this driver's auth token" in lines[0] and "RAY_AUTH_TOKEN_PATH" in lines[0]
