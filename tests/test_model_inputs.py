"""Several model inputs of any dtype: input specs, factories returning inputs, graph, plan, split and runtime."""

from __future__ import annotations

import json
import re

import pytest
import torch

from tiercut.errors import TiercutError
from tiercut.graph import capture_model, extract_graph, split_by_placement
from tiercut.graph.model_spec import InputSpec, load_model, parse_inputs

TRANSFORMER_INPUTS = ["ids:int64:1x12", "mask:bool:1x12"]
INPUT_ARGS = ["--input", TRANSFORMER_INPUTS[0], "--input", TRANSFORMER_INPUTS[1]]


# ----------------------------------------------------------------- input specs
@pytest.mark.parametrize(
    "text, expected",
    [
        ("ids:int64:1x128", InputSpec("ids", "int64", (1, 128))),
        ("mask:bool:1x128", InputSpec("mask", "bool", (1, 128))),
        ("1,3,224,224", InputSpec(None, "float32", (1, 3, 224, 224))),
        ("long:2x4", InputSpec(None, "int64", (2, 4))),
        ("x:1x3", InputSpec("x", "float32", (1, 3))),
        ("ids:int32:1x8:0..1000", InputSpec("ids", "int32", (1, 8), "0..1000")),
        ("mask:bool:1x8:ones", InputSpec("mask", "bool", (1, 8), "ones")),
        ("half:1x8:zeros", InputSpec(None, "float16", (1, 8), "zeros")),
    ],
)
def test_input_specs_parse(text, expected):
    assert InputSpec.parse(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("ids:complex64:1x4", "dtype 'complex64' is not supported"),
        ("ids:int64", "is not [NAME:][DTYPE:]SHAPE"),
        ("a:b:c:1x4", "is not [NAME:][DTYPE:]SHAPE"),
        ("ids:int64:1x0", "non-positive"),
        ("ids:int64:1x4:5..5", "is empty"),
        ("ids:int64:1x4:randn", "LOW..HIGH"),
        ("x:float32:1x4:0..3", "is not one of randn"),
        ("mask:bool:1x4:0..3", "is not one of zeros"),
        ("my-name:int64:1x4", "not a Python identifier"),
        ("x:float32:100000x100000", "elements"),
    ],
)
def test_bad_input_specs_are_one_line_errors(text, message):
    with pytest.raises(TiercutError, match=re.escape(message)) as err:
        InputSpec.parse(text)
    assert "\n" not in str(err.value)


def test_input_and_input_shape_together_are_refused():
    with pytest.raises(TiercutError, match="--input only"):
        parse_inputs(["x:1x3"], "1,3")
    assert parse_inputs(None, "1,3") == (InputSpec(None, "float32", (1, 3)),)


def test_examples_follow_the_dtype_and_fill():
    ids, mask, x = (InputSpec.parse(t).make(torch.Generator().manual_seed(0), 50)
                    for t in ("ids:int64:2x64", "mask:bool:2x64", "x:float16:2x3"))
    assert ids.dtype == torch.int64 and int(ids.min()) >= 0 and int(ids.max()) < 50 and int(ids.max()) > 2
    assert mask.dtype == torch.bool and not mask.any()  # default: nothing masked
    assert x.dtype == torch.float16 and x.shape == (2, 3)
    ranged = InputSpec.parse("i:int32:1x100:7..9").make(torch.Generator().manual_seed(0))
    assert set(ranged.unique().tolist()) <= {7, 8}


def test_integer_inputs_default_to_the_smallest_embedding_vocabulary():
    loaded = load_model("fixtures_models:tiny_transformer", TRANSFORMER_INPUTS)
    ids = loaded.example_inputs[0]
    assert ids.dtype == torch.int64 and int(ids.max()) < 50 and int(ids.max()) >= 2
    assert [s.name for s in loaded.input_specs] == ["ids", "mask"]


# ----------------------------------------------------------------- binding to forward arguments
def test_named_inputs_bind_by_argument_name_whatever_their_order():
    loaded = load_model("fixtures_models:tiny_transformer", ["mask:bool:1x12", "ids:int64:1x12"])
    assert [x.dtype for x in loaded.example_inputs] == [torch.int64, torch.bool]


def test_factory_inputs_as_a_dict_bind_by_name():
    loaded = load_model("fixtures_models:tiny_transformer_with_inputs")
    ids, mask = loaded.example_inputs
    assert ids.dtype == torch.int64 and mask.dtype == torch.bool and bool(mask[0, -1])
    assert [(s.name, s.dtype, s.shape) for s in loaded.input_specs] == [("ids", "int64", (1, 12)), ("mask", "bool", (1, 12))]


def test_given_inputs_win_over_the_factory_examples():
    loaded = load_model("fixtures_models:two_inputs", ["image:float32:1x3x16x16", "features:float32:1x5"])
    assert loaded.example_inputs[0].shape == (1, 3, 16, 16)


@pytest.mark.parametrize(
    "inputs, message",
    [
        (["idz:int64:1x12", "mask:bool:1x12"], "no forward argument 'idz'; its arguments are ids, mask"),
        (["mask:bool:1x12"], "needs forward argument 'ids'"),
        (["ids:int64:1x12", "bool:1x12"], "name every --input"),
        (["ids:int64:1x12", "ids:int64:1x12"], "given twice"),
        (["ids:float32:1x12", "mask:bool:1x12"], "fails on the example input"),
    ],
)
def test_inputs_that_do_not_fit_the_model_are_one_line_errors(inputs, message):
    with pytest.raises(TiercutError, match=message) as err:
        capture_model("fixtures_models:tiny_transformer", inputs=inputs)
    assert "\n" not in str(err.value)


def test_a_factory_returning_bad_examples_is_a_one_line_error(tmp_path, monkeypatch):
    (tmp_path / "bad_examples.py").write_text(
        "import torch\ndef f():\n    return torch.nn.Linear(2, 2), 'not tensors'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TiercutError, match="example inputs of type str"):
        load_model("bad_examples:f")


# ----------------------------------------------------------------- graph, plan, split
def test_token_ids_and_mask_become_typed_graph_inputs():
    graph = extract_graph("fixtures_models:tiny_transformer", inputs=TRANSFORMER_INPUTS)
    inputs = {n.name: n for n in graph if n.is_input}
    assert (inputs["ids"].out_dtype, inputs["ids"].out_bytes) == ("int64", 12 * 8)
    assert (inputs["mask"].out_dtype, inputs["mask"].out_bytes) == ("bool", 12)
    layers = [n for n in graph if n.op == "transformerencoderlayer"]
    assert len(layers) == 2 and all("mask" in n.inputs for n in layers) and graph["embed"].inputs == ("ids",)


def _split_placement(graph, server_ops):
    return {n.name: ("edge" if n.op in server_ops else "end") for n in graph}


@pytest.mark.parametrize("spec", ["fixtures_models:tiny_transformer_with_inputs", "fixtures_models:two_inputs"])
def test_multi_input_models_split_run_equals_the_whole_model(spec):
    captured = capture_model(spec)
    ops = ("transformerencoderlayer",) if "transformer" in spec else ("conv2d", "relu")
    placement = _split_placement(captured.graph, ops)
    assert set(placement.values()) == {"end", "edge"}
    split = split_by_placement(captured, placement)
    assert len(split.partitions) >= 2
    model = load_model(spec).model
    with torch.no_grad():
        expected = model(*captured.example_inputs)
        got = split.run(*captured.example_inputs)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # a fresh input of the same specs too: the split is not tied to the example values
    fresh = load_model(spec, [s.describe() for s in load_model(spec).input_specs], seed=5).example_inputs
    with torch.no_grad():
        torch.testing.assert_close(split.run(*fresh), model(*fresh), rtol=1e-5, atol=1e-6)


def test_plan_of_a_multi_input_model_places_every_input_on_the_source(capsys):
    from tiercut.cli import main

    code = main(["plan", "fixtures_models:tiny_transformer", "--allow-code", *INPUT_ARGS,
                 "--env", "three-tier", "--algorithm", "mincut", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out)
    source = data["problem"]["source"]
    assert data["plan"]["placement"]["ids"] == source and data["plan"]["placement"]["mask"] == source
    nodes = {n["name"]: n for n in data["problem"]["nodes"]}
    assert nodes["ids"]["op"] == "input" and nodes["mask"]["out_bytes"] == 12


def test_cli_input_errors_are_one_line(capsys):
    from tiercut.cli import main

    argv = ["graph", "fixtures_models:tiny_transformer", "--allow-code", "--input", "ids:int64:1x12", "--input-shape", "1,12"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "--input only" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------- runtime on local workers
def _transformer_upload_plan(tmp_path):
    captured = capture_model("fixtures_models:tiny_transformer_with_inputs")
    nodes = [n.name for n in captured.graph.nodes]
    server_side = [n.name for n in captured.graph if n.op == "transformerencoderlayer"]
    assert len(server_side) == 2
    plan = {
        "schema_version": 1,
        "algorithm": "by-hand",
        "server": "edge",
        "source": "end",
        "partitions": [{"nodes": server_side, "param_bytes": 0, "upload_s": 1.0, "arrives_s": 1.0}],
        "stages": [
            {"from_s": 0.0, "placement": dict.fromkeys(nodes, "end"), "latency_s": 1.0},
            {"from_s": 1.0, "placement": {n: ("edge" if n in server_side else "end") for n in nodes}, "latency_s": 0.5},
        ],
        "metrics": {"queries_done_by_upload_end": 0, "time_for_n_queries_s": None, "n": 0, "mean_latency_during_upload_s": None},
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"problem": {}, "upload_plan": plan}))
    return path


@pytest.mark.slow
def test_token_ids_and_mask_run_split_on_local_workers(tmp_path, capsys):
    from tiercut.cli import main

    plan = _transformer_upload_plan(tmp_path)
    torch.set_num_threads(1)
    code = main([
        "run", "fixtures_models:tiny_transformer_with_inputs", "--allow-code", "--env", "three-tier", "--upload-plan", str(plan),
        "--queries", "10", "--rate", "1", "--verify", "--json", "--keep-uploading-s", "60", "--no-emulate-links",
    ])
    out, err = capsys.readouterr()
    assert code == 0, err
    trace = json.loads(out)["run"]
    assert len(trace["queries"]) == 10 and all(q["output_matches"] for q in trace["queries"])
    assert trace["attempts"] and trace["attempts"][0]["ok"]
    # the queries after the upload ran the encoder on the edge worker: the ids/mask crossed the network
    on_edge = [q for q in trace["queries"] if "edge" in q["devices"]]
    assert on_edge and all(q["bytes_sent"] > 0 and not q["fallback"] for q in on_edge)
