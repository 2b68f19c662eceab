"""The JSON contracts (docs/DESIGN.md): one set of rules for every type, checked for every type.

Every type below reads its JSON through :func:`tiercut.serialization.json_contract`:
it round-trips through ``json.dumps``; a missing required key, a missing or
wrong ``schema_version`` (top-level documents) and a non-object are one-line
:class:`TiercutError` messages naming the type (and the key, or the versions).
A new JSON type joins :data:`CASES`; :func:`test_every_from_dict_in_src_follows_the_contract`
fails until it does.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import pkgutil
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import tiercut
from tiercut.errors import TiercutError
from tiercut.serialization import contract_of


@dataclass(frozen=True)
class Case:
    """A JSON type, an instance of it, and a key its JSON cannot lack."""

    cls: type
    make: Callable[[], Any]
    required: str
    compare: Callable[[Any], Any] = lambda x: x.to_dict()


# ------------------------------------------------------------------ instances
@functools.cache
def _problem():
    from tiercut.plan.synthetic import random_problem

    return random_problem(random.Random(5), n_nodes=5, n_devices=3, shape="dag")


@functools.cache
def _plan():
    from tiercut.plan import plan

    return plan(_problem(), "brute-force")


@functools.cache
def _multi_problem():
    from dataclasses import replace

    from tiercut.problem import MultiUserProblem, UserProblem

    a = _problem()
    return MultiUserProblem((UserProblem("a", a, 2.0), UserProblem("b", replace(a, name="other"))), name="two")


@functools.cache
def _multi_upload():
    from dataclasses import replace

    from tiercut.problem import MultiUserProblem, UserProblem
    from tiercut.upload.multi import plan_multi_upload
    from tiercut.upload.synthetic import random_upload_problem

    a = random_upload_problem(random.Random(3), n_nodes=4, shape="chain")
    multi = MultiUserProblem((UserProblem("a", a), UserProblem("b", replace(a, name="other"))))
    placements = {u.name: {n.name: ("server" if not n.is_input else a.source) for n in a.graph} for u in multi.users}
    servers = [d for d in a.device_names if d != a.source]
    placements = {u: {n: (servers[0] if d == "server" else d) for n, d in p.items()} for u, p in placements.items()}
    return plan_multi_upload(multi, "ionn", offloading=placements)


@functools.cache
def _upload_plan():
    return next(iter(next(iter(_multi_upload().users.values())).servers.values()))


@functools.cache
def _profile():
    from tiercut.graph import capture_model
    from tiercut.profile import measure_profile

    captured = capture_model("fixtures_models:tiny_net", (1, 3, 8, 8))
    return measure_profile(captured, repeats=3, threads=1, measure_host_roofline=False)


def _compute_table():
    from tiercut.profile import ComputeTable

    return ComputeTable(
        seconds={"a": {"d1": 0.5, "d2": 0.25}},
        provenance={"a": {"d1": "measured", "d2": "predicted"}},
        basis={"d1": "this host"},
        model="m",
    )


def _environment():
    from tiercut.env import load_environment

    return load_environment("three-tier")


def _graph():
    return _problem().graph


def _cases() -> dict[str, Case]:
    from tiercut.env import Environment
    from tiercut.graph.types import LayerGraph, Node
    from tiercut.problem import (
        Constraints,
        MultiPlan,
        MultiUserProblem,
        Objective,
        Plan,
        Problem,
        ProblemDevice,
        UserFigures,
        UserProblem,
    )
    from tiercut.profile import ComputeTable, Profile
    from tiercut.profile.predict import Predictor, load_default_predictor
    from tiercut.upload import MultiUploadPlan, UploadPlan
    from tiercut.upload.types import Stage, UploadMetrics, UploadPartition, UserUploadPlan

    def multi_plan() -> MultiPlan:
        return _multi_upload().offloading

    def user_upload() -> UserUploadPlan:
        return next(iter(_multi_upload().users.values()))

    return {
        "LayerGraph": Case(LayerGraph, _graph, "nodes"),
        "Node": Case(Node, lambda: _graph().nodes[-1], "op"),
        "Profile": Case(Profile, _profile, "host"),
        "Predictor": Case(Predictor, load_default_predictor, "models"),
        "ComputeTable": Case(ComputeTable, _compute_table, "seconds"),
        "Environment": Case(Environment, _environment, "devices"),
        "Problem": Case(Problem, _problem, "compute_s"),
        "Objective": Case(Objective, lambda: Objective.parse("weighted:latency=1,cost=2"), ""),
        "Constraints": Case(Constraints, lambda: Constraints(latency_budget_s=2.0, pinned={"a": "b"}), ""),
        "ProblemDevice": Case(ProblemDevice, lambda: _problem().devices[1], "name"),
        "Plan": Case(Plan, _plan, "placement"),
        "UserProblem": Case(UserProblem, lambda: _multi_problem().users[0], "problem"),
        "MultiUserProblem": Case(MultiUserProblem, _multi_problem, "users"),
        "UserFigures": Case(UserFigures, lambda: next(iter(multi_plan().users.values())), "cost"),
        "MultiPlan": Case(MultiPlan, multi_plan, "placements"),
        "UploadPartition": Case(UploadPartition, lambda: _upload_plan().partitions[0], "param_bytes"),
        "Stage": Case(Stage, lambda: _upload_plan().stages[-1], "placement"),
        "UploadMetrics": Case(UploadMetrics, lambda: _upload_plan().metrics, "n"),
        "UploadPlan": Case(UploadPlan, _upload_plan, "partitions"),
        "UserUploadPlan": Case(UserUploadPlan, user_upload, "servers"),
        "MultiUploadPlan": Case(MultiUploadPlan, _multi_upload, "offloading"),
        **_spatial_cases(),
        **_joint_cases(),
    }


def _joint_cases() -> dict[str, Case]:
    """Issue 18's several DNNs on shared devices: the joint problem and plan."""
    from tiercut.plan import plan_joint
    from tiercut.problem import JointPlan, JointProblem, ModelFigures, Objective, UserProblem

    def joint() -> JointProblem:
        return JointProblem(tuple(UserProblem(u.name, u.problem, 2.0) for u in _multi_problem().users),
                            Objective("throughput"))

    return {
        "JointProblem": Case(JointProblem, joint, "models"),
        "JointPlan": Case(JointPlan, lambda: plan_joint(joint(), "independent"), "utilisation"),
        "ModelFigures": Case(ModelFigures, lambda: next(iter(plan_joint(joint(), "independent").models.values())),
                             "latency_s"),
    }


def _spatial_cases() -> dict[str, Case]:
    """Issue 16's types: fused-stack geometry, a problem carrying it, a plan with tiled stages."""
    from dataclasses import fields

    from tiercut.spatial.geometry import Region, Window
    from tiercut.spatial.problem import SpatialProblem, Tile, TiledPlan, TiledStage
    from tiercut.spatial.stack import StackGeometry, StackStep

    names = [n.name for n in _problem().graph]
    window = Window.square(3, 1, 1)
    step = StackStep(names[1], "window", (names[0],), (8, 8), window)
    geometry = StackGeometry(names[0], (8, 8), (step,))
    tile = Tile(_problem().device_names[1], Region.of(0, 4, 0, 8))
    stage = TiledStage(0, names[0], names[1], _problem().device_names[0], (tile, Tile(tile.device, Region.of(4, 8, 0, 8))))
    plan = TiledPlan(**{f.name: getattr(_plan(), f.name) for f in fields(_plan())}, stages=(stage,))
    return {
        "Window": Case(Window, lambda: window, "kernel"),
        "StackStep": Case(StackStep, lambda: step, "kind"),
        "StackGeometry": Case(StackGeometry, lambda: geometry, "steps"),
        "SpatialProblem": Case(SpatialProblem, lambda: SpatialProblem.of(_problem(), (geometry,)), "compute_s"),
        "Tile": Case(Tile, lambda: tile, "device"),
        "TiledStage": Case(TiledStage, lambda: stage, "home"),
        "TiledPlan": Case(TiledPlan, lambda: plan, "placement"),
    }


CASES = _cases()
NAMES = list(CASES)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text.strip(), text
    return text


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name):
    case = CASES[name]
    value = case.make()
    assert isinstance(value, case.cls)
    data = json.loads(json.dumps(value.to_dict(), allow_nan=False))
    again = case.cls.from_dict(data)
    assert case.compare(again) == case.compare(value)


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n].required])
def test_a_missing_key_is_one_line_naming_it(name):
    case = CASES[name]
    data = json.loads(json.dumps(case.make().to_dict()))
    assert case.required in data
    del data[case.required]
    with pytest.raises(TiercutError) as exc:
        case.cls.from_dict(data)
    assert case.required in _one_line(exc)


@pytest.mark.parametrize("name", NAMES)
def test_a_non_object_is_one_line(name):
    with pytest.raises(TiercutError) as exc:
        CASES[name].cls.from_dict([1, 2])
    _one_line(exc)


#: the top-level documents (each carries a schema_version); written out so that collecting this module builds
#: no case (some measure a profile): the test below checks the list against the cases
VERSIONED = [
    "LayerGraph",
    "Profile",
    "Predictor",
    "ComputeTable",
    "Environment",
    "Problem",
    "Plan",
    "MultiUserProblem",
    "MultiPlan",
    "UploadPlan",
    "MultiUploadPlan",
    "SpatialProblem",
    "TiledPlan",
    "JointProblem",
    "JointPlan",
]


def test_the_top_level_documents_are_versioned():
    assert {n for n in NAMES if "schema_version" in CASES[n].make().to_dict()} == set(VERSIONED)


@pytest.mark.parametrize("name", VERSIONED)
@pytest.mark.parametrize("version", [99, "1", None])
def test_a_wrong_version_is_one_line_naming_found_and_expected(name, version):
    case = CASES[name]
    data = json.loads(json.dumps(case.make().to_dict()))
    expected = data["schema_version"]
    data["schema_version"] = version
    with pytest.raises(TiercutError) as exc:
        case.cls.from_dict(data)
    line = _one_line(exc)
    assert repr(version) in line and str(expected) in line and "schema_version" in line


@pytest.mark.parametrize("name", [n for n in VERSIONED if n != "Environment"])
def test_a_missing_version_is_one_line(name):
    """Environment files may omit the version (docs/DESIGN.md: the YAML authoring form); every JSON document may not."""
    case = CASES[name]
    data = json.loads(json.dumps(case.make().to_dict()))
    expected = data.pop("schema_version")
    with pytest.raises(TiercutError) as exc:
        case.cls.from_dict(data)
    line = _one_line(exc)
    assert "schema_version" in line and str(expected) in line


def test_a_wrong_type_is_one_line():
    from tiercut.problem import Plan

    data = _plan().to_dict()
    with pytest.raises(TiercutError, match="plan holds a value of the wrong type") as exc:
        Plan.from_dict({**data, "placement": 3})
    _one_line(exc)


def test_infinite_figures_are_null_and_read_back_as_inf():
    import math
    from dataclasses import replace

    from tiercut.problem import Plan

    infeasible = replace(_plan(), latency_s=math.inf, feasible=False)
    data = json.loads(json.dumps(infeasible.to_dict(), allow_nan=False))
    assert data["latency_s"] is None
    assert Plan.from_dict(data).latency_s == math.inf


def _from_dict_types() -> list[type]:
    found = []
    for info in pkgutil.walk_packages(tiercut.__path__, "tiercut."):
        if info.name.startswith(("tiercut.runtime", "tiercut.cli", "tiercut.__main__")):
            continue  # the runtime's wire messages have their own protocol errors; the CLI has no JSON types
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and "from_dict" in vars(cls):
                found.append(cls)
    return found


def test_every_from_dict_in_src_follows_the_contract():
    """Every JSON type of the pipeline (runtime wire messages aside) reads through json_contract."""
    exempt = {"Environment", "Link", "Objective"}  # validated by env/schema (pydantic) / read via _from_object
    missing = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _from_dict_types()
        if contract_of(cls) is None and cls.__name__ not in exempt
    )
    assert missing == []


# ------------------------------------------------------------------ file schemas (editor completion)
@pytest.mark.parametrize(
    "kind, file",
    [("env", "environment.schema.json"), ("scenario", "scenario.schema.json"), ("grid", "grid.schema.json")],
)
def test_the_schemas_in_docs_are_the_ones_tiercut_exports(kind, file):
    """docs/schemas/ holds `tiercut schema KIND --out` output; regenerate it when a model changes."""
    from pathlib import Path

    from tiercut.serialization import file_schema

    shipped = json.loads((Path(__file__).parents[1] / "docs" / "schemas" / file).read_text())
    assert shipped == file_schema(kind), f"run: tiercut schema {kind} --out docs/schemas/{file}"


def test_every_environment_preset_and_example_validates_against_the_env_schema():
    from pathlib import Path

    import jsonschema
    import yaml

    from tiercut.env import list_presets, load_environment
    from tiercut.serialization import file_schema

    validator = jsonschema.Draft202012Validator(file_schema("env"))
    jsonschema.Draft202012Validator.check_schema(file_schema("env"))
    root = Path(__file__).parents[1]
    files = [*sorted((root / "src" / "tiercut" / "env" / "presets").glob("*.yaml")), *sorted((root / "examples").glob("*.yaml"))]
    presets = {p.name for p in list_presets()}
    assert {f.stem for f in files} >= presets
    for path in files:
        data = yaml.safe_load(path.read_text())
        if "devices" not in data:
            continue  # a scenario, checked below
        assert list(validator.iter_errors(data)) == [], path
        load_environment(path)  # and tiercut accepts it
    wrong = {"devices": [{"name": "d", "tier": "moon"}]}
    assert list(validator.iter_errors(wrong)), "the schema must reject what tiercut rejects"


def test_scenarios_validate_against_the_scenario_schema():
    import jsonschema

    from tiercut.serialization import file_schema

    schema = file_schema("scenario")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = {"schema_version": 1, "name": "t", "duration_s": 20, "users": [{"name": "u", "problem": "p.json"}]}
    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors({**good, "schema_version": 2}))
    assert list(validator.iter_errors({**good, "execution": "parallel"}))
    assert list(validator.iter_errors({**good, "bogus": 1}))


def test_schema_command_prints_writes_and_refuses_unknown_kinds(tmp_path, capsys):
    from tiercut.cli import app, run_app

    assert run_app(app, ["schema", "scenario"], "tiercut") == 0
    assert json.loads(capsys.readouterr().out)["title"] == "tiercut scenario"
    out = tmp_path / "env.schema.json"
    assert run_app(app, ["schema", "env", "--out", str(out)], "tiercut") == 0
    assert json.loads(out.read_text())["title"] == "tiercut environment"
    capsys.readouterr()
    assert run_app(app, ["schema", "plan"], "tiercut") == 2
    err = capsys.readouterr().err
    assert "no schema for 'plan'" in err and len(err.strip().splitlines()) == 1


def test_the_runtime_reads_upload_plans_through_the_contract():
    """prepare_migration's plan reader is the contract's: typed plans pass, JSON goes through from_dict."""
    from tiercut.runtime.migration import placement_plan, read_upload_plan
    from tiercut.upload import UploadPlan
    from tiercut.upload.types import UserUploadPlan

    direct = placement_plan({"x": "end", "a": "edge", "b": "cloud"}, "end", latency_s=0.5)
    assert isinstance(direct, UserUploadPlan) and set(direct.servers) == {"edge", "cloud"}
    assert read_upload_plan(json.loads(json.dumps(direct.to_dict()))) == direct
    single = _upload_plan()
    assert read_upload_plan({"problem": {}, "upload_plan": single.to_dict()}) == single
    assert read_upload_plan(single) is single
    broken = {k: v for k, v in single.to_dict().items() if k != "stages"}
    with pytest.raises(TiercutError, match="upload plan lacks the field 'stages'") as exc:
        read_upload_plan(broken)
    _one_line(exc)
    with pytest.raises(TiercutError, match="schema_version 7, this tiercut reads 1") as exc:
        read_upload_plan({**single.to_dict(), "schema_version": 7})
    with pytest.raises(TiercutError, match="not a JSON object"):
        read_upload_plan([single.to_dict()])
    assert isinstance(UploadPlan.from_dict(single.to_dict()), UploadPlan)
