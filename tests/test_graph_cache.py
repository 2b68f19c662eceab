"""The graph cache: a second command on the same model does not trace it; any change of key re-traces."""

from __future__ import annotations

import dataclasses
import importlib
import json

import pytest

from tiercut.cli import main
from tiercut.graph import ModelRequest, graph_of
from tiercut.graph.cache import cache_dir, cache_key
from tiercut.graph.model_spec import InputSpec

SPEC = "fixtures_models:tiny_transformer_with_inputs"
capture_module = importlib.import_module("tiercut.graph.capture")  # the package re-exports a function of that name


@pytest.fixture
def traces(monkeypatch, tmp_path):
    """A fresh cache folder and a counter of model traces."""
    monkeypatch.setenv("TIERCUT_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[str] = []
    real = capture_module.trace_module

    def counting(module, example_inputs, module_types=None):
        calls.append(type(module).__name__)
        return real(module, example_inputs, module_types)

    monkeypatch.setattr(capture_module, "trace_module", counting)
    return calls


def test_the_second_request_reads_the_cache_and_gives_the_same_graph(traces):
    first = graph_of(ModelRequest(SPEC))
    second = graph_of(ModelRequest(SPEC))
    assert traces == ["TinyTransformer"]
    assert second.to_dict() == first.to_dict()
    entries = list(cache_dir().glob("*.json"))
    assert len(entries) == 1 and json.loads(entries[0].read_text())["key"]["model"]["module"] == "fixtures_models"


@pytest.mark.parametrize(
    "change",
    [
        {"inputs": (InputSpec("ids", "int64", (1, 10)), InputSpec("mask", "bool", (1, 10)))},
        {"leaf_modules": ("nn.TransformerEncoder",)},
        {"granularity": "block"},
        {"seed": 3},
        {"use_cache": False},
    ],
)
def test_a_changed_key_or_no_cache_traces_again(traces, change):
    graph_of(ModelRequest(SPEC))
    graph_of(dataclasses.replace(ModelRequest(SPEC), **change))
    assert len(traces) == 2


def test_the_torch_version_is_part_of_the_key(traces, monkeypatch):
    import tiercut.graph.cache as cache

    graph_of(ModelRequest(SPEC))
    real = cache.package_version
    monkeypatch.setattr(cache, "package_version", lambda name: "99.0.0" if name == "torch" else real(name))
    graph_of(ModelRequest(SPEC))
    assert len(traces) == 2


def test_editing_a_model_file_invalidates_its_entry(traces, tmp_path):
    path = tmp_path / "net.py"
    path.write_text("import torch\ndef make():\n    return torch.nn.Linear(4, 2)\n")
    request = ModelRequest(f"{path}:make", inputs=(InputSpec(None, "float32", (1, 4)),), allow_code=True)
    graph_of(request)
    graph_of(request)
    assert len(traces) == 1
    path.write_text("import torch\ndef make():\n    return torch.nn.Linear(4, 3)\n")
    (output,) = [n for n in graph_of(request) if n.is_output]
    assert output.out_shape == (1, 3) and len(traces) == 2


def test_a_cached_file_factory_still_needs_allow_code(traces, tmp_path):
    from tiercut.errors import TiercutError

    path = tmp_path / "net.py"
    path.write_text("import torch\ndef make():\n    return torch.nn.Linear(4, 2)\n")
    request = ModelRequest(f"{path}:make", inputs=(InputSpec(None, "float32", (1, 4)),), allow_code=True)
    graph_of(request)
    with pytest.raises(TiercutError, match="--allow-code"):
        graph_of(dataclasses.replace(request, allow_code=False))


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: "not json at all",
        lambda text: json.dumps({"key": "another", "graph": {}}),
        lambda text: json.dumps({**json.loads(text), "graph": {"schema_version": 1, "nodes": [{"op": "x"}]}}),
        lambda text: "\udcff",  # not UTF-8 once written with surrogateescape
    ],
)
def test_a_corrupt_entry_is_ignored_and_rebuilt(traces, damage):
    first = graph_of(ModelRequest(SPEC))
    (entry,) = cache_dir().glob("*.json")
    entry.write_bytes(damage(entry.read_text()).encode("utf-8", "surrogateescape"))
    again = graph_of(ModelRequest(SPEC))
    assert len(traces) == 2 and again.to_dict() == first.to_dict()
    assert json.loads(entry.read_text())["graph"] == first.to_dict()  # rebuilt in place
    assert not list(cache_dir().glob(".*.tmp"))  # no temporary file left behind


def test_an_unwritable_cache_only_costs_the_trace(traces, tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    monkeypatch.setenv("TIERCUT_CACHE_DIR", str(blocker))
    graph_of(ModelRequest(SPEC))
    graph_of(ModelRequest(SPEC))
    assert len(traces) == 2


def test_models_without_a_file_are_not_cached(traces):
    assert cache_key(ModelRequest("no_such_package.mod:make")) is None


def test_cli_commands_share_the_cache_and_no_cache_bypasses_it(traces, capsys):
    args = ["--input", "ids:int64:1x8", "--input", "mask:bool:1x8"]
    assert main(["graph", SPEC, "--allow-code", *args, "--json"]) == 0
    assert main(["plan", SPEC, "--allow-code", *args, "--algorithm", "local", "--json"]) == 0
    assert len(traces) == 1
    assert main(["graph", SPEC, "--allow-code", *args, "--no-cache", "--json"]) == 0
    assert len(traces) == 2
    capsys.readouterr()


def test_cache_dir_follows_xdg_when_not_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv("TIERCUT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "tiercut" / "graphs"
