"""``path/to/file.py:factory`` models and the module types kept whole or opened (--leaf-module, --open-module)."""

from __future__ import annotations

import pytest
import torch

from tiercut.cli import main
from tiercut.errors import TiercutError
from tiercut.graph import ModuleTypes, capture_model, split_by_placement
from tiercut.graph.model_spec import load_model

MODEL_FILE = """
import torch
from torch import nn

CALLS = []


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def make():
    CALLS.append(1)
    return Small()


def make_with_inputs():
    return Small(), (torch.randn(3, 6),)


def not_a_model():
    return 42


def explode():
    raise ValueError("bad config")

NOT_CALLABLE = 3
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "mymodels.py"
    path.write_text(MODEL_FILE)
    return path


def _fails(argv, capsys, message):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


# ----------------------------------------------------------------- file.py:factory
def test_a_file_factory_loads_with_allow_code(model_file, capsys):
    code = main(["graph", f"{model_file}:make", "--input-shape", "1,6", "--allow-code", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert '"fc2"' in out and '"relu"' in out


def test_a_file_factory_may_return_its_example_inputs(model_file):
    loaded = load_model(f"{model_file}:make_with_inputs", allow_code=True)
    assert loaded.example_inputs[0].shape == (3, 6) and loaded.input_specs[0].name == "x"


def test_a_file_factory_is_not_run_without_allow_code(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = tmp_path / "side_effect.py"
    path.write_text(f"open({str(marker)!r}, 'w').close()\n" + MODEL_FILE)
    _fails(["graph", f"{path}:make", "--input-shape", "1,6"], capsys, "pass --allow-code")
    assert not marker.exists()
    assert main(["graph", f"{path}:make", "--input-shape", "1,6", "--allow-code"]) == 0 and marker.exists()


@pytest.mark.parametrize("command", ["graph", "plan", "profile", "run", "upload"])
def test_a_module_factory_is_not_imported_without_allow_code(tmp_path, monkeypatch, capsys, command):
    """package.module:factory imports user code like file.py:factory does: the same --allow-code rule."""
    marker = tmp_path / "ran"
    (tmp_path / "user_models_on_path.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + MODEL_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    err = _fails([command, "user_models_on_path:make", "--input-shape", "1,6"], capsys, "pass --allow-code")
    assert "imports and runs the Python module user_models_on_path" in err
    assert not marker.exists()


def test_with_allow_code_a_module_factory_runs(tmp_path, monkeypatch):
    (tmp_path / "user_models_allowed.py").write_text(MODEL_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["graph", "user_models_allowed:make", "--input-shape", "1,6", "--allow-code", "--json"]) == 0


@pytest.mark.parametrize(
    "spec, user_code",
    [
        ("resnet18", False),
        ("torchvision.models:vgg19", False),
        ("tiercut.exits.models:digits_cnn", False),
        ("model.onnx", False),
        ("graph.json", False),
        ("mypkg.models:make", True),
        ("models.py:make", True),
        ("tiercut_fork.models:make", True),  # only tiercut's own package, not a look-alike
        ("torchvision.io:decode", True),  # torchvision's model factories only
    ],
)
def test_which_model_specs_import_user_code(spec, user_code):
    from tiercut.graph.model_spec import check_code_allowed, imports_user_code

    assert imports_user_code(spec) is user_code
    check_code_allowed(spec, allow_code=True)
    if user_code:
        with pytest.raises(TiercutError, match="--allow-code"):
            check_code_allowed(spec, allow_code=False)
    else:
        check_code_allowed(spec, allow_code=False)


def test_a_data_file_may_name_torchvision_and_tiercut_factories_without_allow_code():
    from tiercut.graph import data_model_spec

    assert data_model_spec("torchvision.models:vgg19", where="users.yaml") == "torchvision.models:vgg19"
    with pytest.raises(TiercutError, match="--allow-code"):
        data_model_spec("mypkg.models:make", where="users.yaml")


def test_a_users_file_naming_user_code_needs_allow_code(tmp_path, monkeypatch, capsys):
    import yaml

    marker = tmp_path / "ran"
    (tmp_path / "user_models_in_users.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + MODEL_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    users = tmp_path / "users.yaml"
    users.write_text(yaml.safe_dump({"users": [
        {"name": "ann", "device": "phone", "model": "user_models_in_users:make", "input_shape": [1, 6]},
    ]}))
    err = _fails(["plan", "--users", str(users), "--algorithm", "greedy"], capsys, "pass --allow-code")
    assert "user_models_in_users" in err and not marker.exists()


@pytest.mark.parametrize(
    "suffix, message",
    [
        ("missing_file.py:make", "does not exist"),
        ("FILE:nothing_here", "has no 'nothing_here'; callables there: Small, explode, make"),
        ("FILE:not_a_model", "returned int, not a torch.nn.Module"),
        ("FILE:explode", "raised ValueError: bad config"),
        ("FILE:NOT_CALLABLE", "is not callable"),
    ],
)
def test_file_factory_errors_are_one_line(model_file, suffix, message, capsys):
    spec = suffix.replace("FILE", str(model_file)) if suffix.startswith("FILE") else str(model_file.parent / suffix)
    _fails(["graph", spec, "--input-shape", "1,6", "--allow-code"], capsys, message)


def test_a_file_that_fails_to_load_is_a_one_line_error(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nraise RuntimeError('cannot build')\n")
    _fails(["graph", f"{broken}:make", "--input-shape", "1,6", "--allow-code"], capsys, "raised RuntimeError: cannot build")


def test_a_python_file_without_a_factory_says_how_to_name_it(model_file, capsys):
    _fails(["graph", str(model_file), "--input-shape", "1,6"], capsys, ":FUNCTION")


def test_a_data_file_names_a_file_factory_only_with_allow_code(tmp_path):
    from tiercut.graph import data_model_spec

    with pytest.raises(TiercutError, match="--allow-code"):
        data_model_spec("models.py:make", where="scenario s.yaml")
    assert data_model_spec("models.py:make", where="s", allow_code=True, base_dir=tmp_path) == f"{tmp_path}/models.py:make"


# ----------------------------------------------------------------- leaf and open module types
def _ops(spec, **kwargs):
    return [n.op for n in capture_model(spec, **kwargs).graph if not n.is_input]


def test_transformer_encoder_is_opened_into_its_layers_by_default():
    ops = _ops("fixtures_models:tiny_transformer_with_inputs")
    assert ops.count("transformerencoderlayer") == 2 and "transformerencoder" not in ops


def test_leaf_module_keeps_the_encoder_whole():
    ops = _ops("fixtures_models:tiny_transformer_with_inputs", module_types=ModuleTypes(leaf=("nn.TransformerEncoder",)))
    assert ops == ["embedding", "transformerencoder", "mean", "linear"]


def test_open_module_opens_encoder_layers_and_the_split_still_equals_the_model():
    captured = capture_model(
        "fixtures_models:tiny_transformer_with_inputs", module_types=ModuleTypes(open=("TransformerEncoderLayer",))
    )
    ops = [n.op for n in captured.graph]
    assert captured.method == "fx" and ops.count("multiheadattention") == 2 and ops.count("layernorm") == 4
    # attention on one device, feed-forward on the other: the cut goes through an encoder layer
    placement = {n.name: ("edge" if n.op in ("multiheadattention", "layernorm") else "end") for n in captured.graph}
    split = split_by_placement(captured, placement)
    model = load_model("fixtures_models:tiny_transformer_with_inputs").model
    with torch.no_grad():
        torch.testing.assert_close(split.run(*captured.example_inputs), model(*captured.example_inputs))


def test_a_leaf_module_makes_a_data_dependent_model_capturable():
    with pytest.raises(TiercutError, match="--leaf-module DataDependent"):
        capture_model("fixtures_models:Untraceable", (2, 6))
    captured = capture_model("fixtures_models:Untraceable", (2, 6), module_types=ModuleTypes(leaf=("DataDependent",)))
    assert [n.op for n in captured.graph if not n.is_input] == ["linear", "datadependent"] and captured.method == "fx"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--leaf-module", "nn.Transformer"], "no module of type 'nn.Transformer'"),
        (["--leaf-module", "Linear", "--open-module", "Linear"], "both a leaf and open"),
    ],
)
def test_module_type_mistakes_are_one_line_errors(args, message, capsys):
    _fails(["graph", "fixtures_models:tiny_transformer_with_inputs", "--allow-code", *args], capsys, message)


def test_leaf_module_on_the_command_line(capsys):
    spec = "fixtures_models:tiny_transformer_with_inputs"
    code = main(["graph", spec, "--allow-code", "--leaf-module", "nn.TransformerEncoder", "--json"])
    out = capsys.readouterr().out
    assert code == 0 and '"op": "transformerencoder"' in out


def test_leaf_module_holds_when_capture_falls_back_to_torch_export():
    """fx cannot trace LoopThenBlock; torch.export opens every module, and --leaf-module MLPBlock merges it back."""
    opened = capture_model("fixtures_models:LoopThenBlock", (2, 6))
    kept = capture_model("fixtures_models:LoopThenBlock", (2, 6), module_types=ModuleTypes(leaf=("MLPBlock",)))
    assert opened.method == kept.method == "export"
    assert "mlpblock" not in [n.op for n in opened.graph.nodes]
    (block,) = [n for n in kept.graph.nodes if n.op == "mlpblock"]
    assert block.name == "block" and block.param_count == 6 * 8 + 8 + 8 * 6 + 6  # fc1 and fc2, all of it
    assert len(kept.graph) < len(opened.graph) and kept.graph.granularity == "module"
    assert kept.graph.total_flops == opened.graph.total_flops
    assert sum(n.param_count for n in kept.graph.nodes) == sum(n.param_count for n in opened.graph.nodes)
    # the kept block is one node a plan can place, and the split still equals the model
    placement = {n.name: ("edge" if n.name == "block" else "end") for n in kept.graph.nodes}
    split = split_by_placement(kept, placement)
    assert [p.device for p in split.partitions] == ["end", "edge", "end"]
    x = torch.randn(2, 6)
    with torch.no_grad():
        assert torch.equal(split.run(x), kept.graph_module(x))


def test_leaf_module_on_the_command_line_holds_with_the_export_fallback(capsys):
    import json

    argv = ["graph", "fixtures_models:LoopThenBlock", "--allow-code", "--input-shape", "2,6", "--no-cache", "--json"]
    assert main([*argv, "--leaf-module", "MLPBlock"]) == 0
    ops = [n["op"] for n in json.loads(capsys.readouterr().out)["nodes"]]
    assert ops.count("mlpblock") == 1 and ops.count("relu") == 1  # the block's relu is inside it, the head's is not
