"""The Python API (``import tiercut``): front door, environment variations, typed comparisons, the document's sweep."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import tiercut
from tiercut.errors import TiercutError

ROOT = Path(__file__).resolve().parents[1]
MODEL = "fixtures_models:tiny_net"
SHAPE = (1, 3, 8, 8)
NODES = ("conv", "relu", "left", "right", "add", "flatten", "fc")


@pytest.fixture
def lab(tmp_path: Path) -> dict[str, Path]:
    env = {
        "name": "lab",
        "devices": [
            {"name": "phone", "tier": "end", "power_compute_w": 3.0, "power_tx_w": 1.5, "power_rx_w": 1.0,
             "power_idle_w": 0.2},
            {"name": "edge", "tier": "edge", "power_compute_w": 30.0, "price_per_s": 1e-4},
            {"name": "cloud", "tier": "cloud", "power_compute_w": 100.0, "price_per_s": 1e-3},
        ],
        "links": [{"a": "phone", "b": "edge", "bandwidth_bytes_per_s": 2.0e6, "latency_s": 0.002},
                  {"a": "phone", "b": "cloud", "bandwidth_bytes_per_s": 5.0e5, "latency_s": 0.03},
                  {"a": "edge", "b": "cloud", "bandwidth_bytes_per_s": 1.0e7, "latency_s": 0.01}],
    }
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(env))
    table = {n: {"phone": 0.02, "edge": 0.004, "cloud": 0.001} for n in NODES}
    table["fc"] = {"phone": 0.2, "edge": 0.02, "cloud": 0.002}
    (tmp_path / "times.json").write_text(json.dumps(table))
    return {"env": tmp_path / "lab.yaml", "table": tmp_path / "times.json"}


# ---------------------------------------------------------------- the front door
def test_import_tiercut_loads_neither_torch_nor_the_pipeline():
    code = "import sys, tiercut; print(sorted(m for m in ('torch', 'tiercut.pipeline', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src")}).stdout
    assert out.strip() == "[]"


def test_every_front_door_name_resolves_and_unknown_names_fail():
    for name in tiercut.__all__:
        assert getattr(tiercut, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'planify'"):
        tiercut.planify  # noqa: B018
    assert {"graph", "problem", "plan", "compare", "Environment", "report"} <= set(dir(tiercut))


def test_step_named_like_its_package_is_both():
    """``tiercut.graph`` stays the package (its classes) and is the graph step when called."""
    import tiercut.graph as package
    from tiercut.graph import LayerGraph

    assert tiercut.graph is package and tiercut.graph.LayerGraph is LayerGraph
    assert callable(tiercut.plan) and tiercut.plan.PLANNERS is tiercut.PLANNERS
    import torch

    from fixtures_models import TinyNet

    graph = tiercut.graph(TinyNet(), torch.randn(*SHAPE))
    assert isinstance(graph, LayerGraph) and [n.name for n in graph if not n.is_input] == list(NODES)
    assert tiercut.graph(graph) is graph  # a graph passes through


@pytest.mark.slow
def test_a_captured_model_is_reused_by_every_step():
    """Capture once, then graph, problem and profile it: no second trace, no file name made of the object."""
    import torch

    from fixtures_models import TinyNet

    captured = tiercut.capture(TinyNet(), example_inputs=(torch.randn(*SHAPE),))
    assert tiercut.capture(captured) is captured
    assert tiercut.graph(captured) is captured.graph
    problem = tiercut.problem(captured, "three-tier")
    assert [n.name for n in problem.graph if not n.is_input] == list(NODES)
    from tiercut.pipeline import profile as profile_step

    assert list(profile_step(captured, repeats=1).nodes) == list(NODES)


def test_load_model_needs_inputs_for_a_module():
    from fixtures_models import TinyNet

    with pytest.raises(TiercutError, match="example_inputs or input_shape"):
        tiercut.load_model(TinyNet())
    source = tiercut.load_model(MODEL, SHAPE)
    assert source.label == MODEL and tuple(source.example_inputs[0].shape) == SHAPE


# ---------------------------------------------------------------- environments
def test_link_bandwidth_is_set_in_either_order_and_per_direction(lab):
    env = tiercut.environment(lab["env"])
    both = env.with_link_bandwidth("edge", "phone", 1e5)
    assert both.link("phone", "edge").direction("phone", "edge").bandwidth_bytes_per_s == 1e5
    assert both.link("phone", "edge").direction("edge", "phone").bandwidth_bytes_per_s == 1e5
    split = env.with_link_bandwidth("edge", "phone", 1e5, reverse=3e5)  # edge -> phone 1e5, phone -> edge 3e5
    assert split.link("phone", "edge").direction("edge", "phone").bandwidth_bytes_per_s == 1e5
    assert split.link("phone", "edge").direction("phone", "edge").bandwidth_bytes_per_s == 3e5
    assert env.link("phone", "edge").bandwidth_bytes_per_s == 2e6  # the original is unchanged
    assert split.link("phone", "cloud") == env.link("phone", "cloud")
    problem = tiercut.problem(MODEL, split, input_shape=SHAPE, compute_s=lab["table"])
    assert problem.link("phone", "edge").direction("phone", "edge").bandwidth_bytes_per_s == 3e5


def test_scaled_and_latency_variations(lab):
    env = tiercut.environment(lab["env"])
    fast = env.scaled(4.0)
    assert [x.bandwidth_bytes_per_s for x in fast.links] == [4 * x.bandwidth_bytes_per_s for x in env.links]
    first_hop = env.scaled(4.0, tiers=("end",))
    assert first_hop.link("edge", "cloud") == env.link("edge", "cloud")
    assert first_hop.link("phone", "cloud").bandwidth_bytes_per_s == 2e6
    assert env.with_link_latency("cloud", "phone", 0.2).link("phone", "cloud").latency_s == 0.2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.with_link_bandwidth("phone", "mars", 1e6), "no link between 'phone' and 'mars'"),
        (lambda e: e.with_link_bandwidth("phone", "edge", -5), "bandwidth"),
        (lambda e: e.with_link_bandwidth("phone", "edge", "fast"), "bandwidth"),
        (lambda e: e.with_link_latency("phone", "edge", float("nan")), "latency"),
        (lambda e: e.scaled(0.0), "bandwidth factor"),
    ],
)
def test_bad_variations_are_one_line_errors(lab, change, message):
    with pytest.raises(TiercutError, match=message):
        change(tiercut.environment(lab["env"]))


# ---------------------------------------------------------------- comparisons
def test_compare_returns_typed_records_and_a_dataframe(lab):
    problem = tiercut.problem(MODEL, lab["env"], input_shape=SHAPE, compute_s=lab["table"])
    comparison = tiercut.compare(problem, "local,mincut,ilp,brute-force")
    assert list(comparison.plans) == ["local", "mincut", "ilp", "brute-force"]
    assert [r.planner for r in comparison.records] == list(comparison.plans)
    for record in comparison.records:
        plan = comparison.plans[record.planner]
        assert (record.latency_s, record.objective_value, record.optimal) == (
            plan.latency_s, plan.objective_value, plan.optimal)
        assert record.devices == tuple(sorted(set(plan.placement.values())))
    assert comparison.best in ("ilp", "brute-force") and comparison.plans[comparison.best].optimal
    frame = comparison.to_dataframe()
    assert list(frame["planner"]) == list(comparison.plans)
    assert frame.loc[frame.planner == "ilp", "latency_s"].item() == comparison.plans["ilp"].latency_s
    with pytest.raises(TiercutError, match="planner 'magic' is not known"):
        tiercut.compare(problem, "ilp,magic")


def test_to_dataframe_without_pandas_says_how_to_get_it(lab, monkeypatch):
    problem = tiercut.problem(MODEL, lab["env"], input_shape=SHAPE, compute_s=lab["table"])
    comparison = tiercut.compare(problem, "local")
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(TiercutError, match="needs pandas"):
        comparison.to_dataframe()


def test_reported_solve_time_excludes_imports(monkeypatch, lab):
    """The first solve warms the solver imports before its clock starts."""
    from tiercut.pipeline import planning

    seen = []
    monkeypatch.setattr(planning, "_WARM", False)
    real = planning.warm_imports

    def spy() -> None:
        seen.append("warm")
        real()

    monkeypatch.setattr(planning, "warm_imports", spy)
    problem = tiercut.problem(MODEL, lab["env"], input_shape=SHAPE, compute_s=lab["table"])
    planning.plan(problem, "ilp")
    assert seen == ["warm"] and planning._WARM


# ---------------------------------------------------------------- CLI and API agree
def test_the_cli_and_the_api_give_identical_plans(lab, capsys):
    from tiercut.cli import main

    common = ["--input-shape", "1,3,8,8", "--env", str(lab["env"]), "--compute-table", str(lab["table"]),
              "--objective", "energy_source", "--latency-budget", "1.0"]
    assert main(["plan", MODEL, "--allow-code", "--algorithm", "ilp", *common, "--json"]) == 0
    cli_plan = json.loads(capsys.readouterr().out)
    assert main(["compare", MODEL, "--allow-code", "--algorithm", "mincut,dp,greedy", *common, "--json"]) == 0
    cli_compare = json.loads(capsys.readouterr().out)

    problem = tiercut.problem(MODEL, lab["env"], input_shape=SHAPE, compute_s=lab["table"], objective="energy_source",
                              latency_budget_s=1.0)
    assert cli_plan["problem"] == problem.to_dict()
    api_plan = tiercut.plan(problem, algorithm="ilp").to_dict()
    for key in ("placement", "objective_value", "latency_s", "energy_source_j", "feasible", "optimal"):
        assert cli_plan["plan"][key] == api_plan[key], key
    api_compare = tiercut.compare(problem, ["mincut", "dp", "greedy"]).to_dict()
    assert list(cli_compare["plans"]) == list(api_compare["plans"])
    for name, plan in api_compare["plans"].items():
        assert cli_compare["plans"][name]["placement"] == plan["placement"]
        assert cli_compare["plans"][name]["objective_value"] == plan["objective_value"]


def test_report_accepts_the_pipeline_results(lab, tmp_path):
    problem = tiercut.problem(MODEL, lab["env"], input_shape=SHAPE, compute_s=lab["table"])
    plan = tiercut.plan(problem, algorithm="mincut")
    comparison = tiercut.compare(problem, "local,ilp")
    uploads = tiercut.plan_uploads(problem, "ionn", compare=True)
    page = tiercut.report([(problem, plan), comparison, uploads], tmp_path / "api.html")
    text = page.read_text()
    assert text.count('<g class="node') >= 3 * len(NODES) and "upload-metrics" in text
    with pytest.raises(TiercutError, match="give a result file or a pipeline result"):
        tiercut.report([42], tmp_path / "bad.html")


def test_simulate_one_user_matches_the_upload_model(lab):
    problem = tiercut.problem(MODEL, lab["env"], input_shape=SHAPE, compute_s=lab["table"])
    fixed = tiercut.plan(problem, algorithm="ilp")
    sim = tiercut.simulate(problem, plan=fixed, queries=3)
    assert len(sim.queries) == 3
    for query in sim.queries:  # one user alone, everything in place: each query takes the plan's latency
        assert query.end_s - query.start_s == pytest.approx(fixed.latency_s, rel=1e-6)
    with pytest.raises(TiercutError, match="queries 0"):
        tiercut.simulate(problem, queries=0)


# ---------------------------------------------------------------- the document
def _document_code() -> str:
    text = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 5
    return "\n\n".join(blocks)


@pytest.mark.slow
def test_the_python_api_document_runs(tmp_path, monkeypatch):
    """Every code block of docs/python-api.md, in order: the 3 models x 3 bandwidths x planners sweep and its plot.

    A block fenced ```` ```python no-run ```` (a minute-long run on worker processes) is left to its own tests.
    """
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # the document runs where a clone's examples/ are
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "python_api_doc"}
    exec(compile(_document_code(), "docs/python-api.md", "exec"), namespace)
    results = namespace["results"]
    assert len(results) == 3 * 3 * 6  # models x bandwidths x planners
    assert set(results["model"]) == {"cnn-8", "cnn-32", "mlp"}
    cnn = results[(results.model == "cnn-32") & (results.planner == "ilp")].sort_values("bandwidth_bytes_per_s")
    assert list(cnn["latency_s"]) == sorted(cnn["latency_s"], reverse=True)  # more bandwidth never hurts the optimum
    png = tmp_path / "sweep.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (tmp_path / "report.html").stat().st_size > 10_000
