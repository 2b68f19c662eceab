"""Cut compression (JALAD): the codec, its cost-model term, the planners' decision, the measurements, the CLI."""

from __future__ import annotations

import json
import math
import random
import struct

import numpy as np
import pytest
import torch
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cli import main
from tiercut.cost import evaluate
from tiercut.cost.cut_compression import choose_compression, transfer_figures
from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.graph import capture_model
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan import plan
from tiercut.plan.synthetic import random_cut_compression, random_problem
from tiercut.problem import CutCodec, CutCompression, Plan, Problem, ProblemDevice, TensorCompression
from tiercut.profile.cut_compression import measure_cut_compression, single_tensor_cuts
from tiercut.runtime.cut_codec import CutCodecError, decode_tensor, encode_tensor, roundtrip

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


# ----------------------------------------------------------------- the codec
@pytest.mark.parametrize("bits", [8, 4, 3, 2, 1])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_decoded_tensor_is_the_dequantized_reference(bits, granularity):
    x = torch.relu(torch.randn(2, 5, 7, 3, generator=torch.Generator().manual_seed(bits)))
    blob = encode_tensor(x, bits, granularity)
    got = decode_tensor(blob, max_elements=x.numel())
    assert got.dtype == x.dtype and got.shape == x.shape
    assert torch.equal(got, roundtrip(x, bits, granularity))
    # the quantization error is at most half a step of each group's range
    step = (x.amax() - x.amin()) / ((1 << bits) - 1)
    assert float((got - x).abs().max()) <= float(step) / 2 + 1e-6


def test_int8_of_a_relu_map_is_more_than_4x_smaller():
    x = torch.relu(torch.randn(1, 64, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert x.numel() * 4 / len(encode_tensor(x, 8)) > 4.0  # 4x from the bits, more from zstd on the zeros


def test_a_constant_and_an_empty_tensor_round_trip():
    for x in (torch.full((1, 3, 4), 2.5), torch.zeros((1, 0))):
        assert torch.equal(decode_tensor(encode_tensor(x), max_elements=100), x)


def test_a_non_finite_tensor_is_refused():
    with pytest.raises(CutCodecError, match="inf or nan"):
        encode_tensor(torch.tensor([[1.0, math.inf]]))


def _blob_with(header_changes: dict, payload: bytes | None = None) -> bytes:
    x = torch.relu(torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1)))
    blob = encode_tensor(x)
    (header_len,) = struct.unpack_from("<I", blob, 4)
    header = json.loads(blob[8 : 8 + header_len])
    groups = header["groups"]
    scales = blob[8 + header_len : 8 + header_len + 8 * groups]
    frame = blob[8 + header_len + 8 * groups :] if payload is None else payload
    header = {**header, "zstd_bytes": len(frame), **header_changes}
    text = json.dumps(header).encode()
    return struct.pack("<4sI", b"TCQ1", len(text)) + text + scales + frame


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"XXXX\x00\x00\x00\x00", "wrong magic"),
        (b"TC", "shorter than its prefix"),
        (struct.pack("<4sI", b"TCQ1", 10**6), "out of bounds"),
        (_blob_with({"dtype": "object"}), "dtype 'object' is not allowed"),
        (_blob_with({"shape": [1, 4, 4, 10**9]}), "over the"),
        (_blob_with({"shape": [1, -4, 4, 4]}), "integers >= 0"),
        (_blob_with({"bits": 9}), "bits 9"),
        (_blob_with({"groups": 7}), "groups"),
        (_blob_with({"zstd_bytes": 3}), "length does not match"),
        # a decompression bomb: a valid frame of 50 MB where the shape admits 64 bytes
        (_blob_with({}, zstandard.ZstdCompressor().compress(b"\0" * 50_000_000)), "the shape needs 64"),
        (_blob_with({}, b"not zstd at all"), "zstd refused it"),
    ],
)
def test_bad_blobs_are_refused_before_allocating(blob, message):
    with pytest.raises(CutCodecError, match=message):
        decode_tensor(blob, max_elements=1000)


# ----------------------------------------------------------------- the cost model
def _two_device_problem(bandwidth: float, *, loss: float = 0.0, budget: float | None = None) -> Problem:
    graph = LayerGraph(
        (
            Node("in", "input", out_bytes=4000),
            Node("a", "conv2d", ("in",), flops=1, out_bytes=100_000),
            Node("b", "linear", ("a",), flops=1, out_bytes=40, is_output=True),
        ),
        model="toy",
    )
    devices = (
        ProblemDevice("phone", "end", power_compute_w=2.0, power_tx_w=1.0, power_rx_w=0.5, power_idle_w=0.1),
        ProblemDevice("cloud", "cloud", power_compute_w=50.0, price_per_s=0.01),
    )
    codec = CutCodec("int8", 8, "tensor", {"phone": 1e-8, "cloud": 1e-9}, {"phone": 2e-8, "cloud": 2e-9})
    options = CutCompression((codec,), {"a": {"int8": TensorCompression(0.2, loss)}}, budget)
    return Problem(
        graph=graph,
        devices=devices,
        links=(Link("phone", "cloud", bandwidth, 0.01, 1e-9),),
        source="phone",
        compute_s={"a": {"phone": 0.001}, "b": {"phone": 0.5, "cloud": 0.001}},
        cut_compression=options,
    )


def test_compressed_transfer_is_encode_plus_wire_plus_decode():
    problem = _two_device_problem(1e6)
    placement = {"in": "phone", "a": "phone", "b": "cloud"}
    raw = evaluate(problem, placement)
    packed = evaluate(problem, placement, compression={"a": "int8"})
    wire = 0.2 * 100_000
    expected = 1e-8 * 100_000 + (0.01 + wire / 1e6) + 2e-9 * 100_000
    (sent,) = [t for t in packed.transfers if t.node == "a"]
    assert sent.codec == "int8" and sent.wire_bytes == pytest.approx(wire)
    assert sent.seconds == pytest.approx(expected)
    assert packed.latency_s == pytest.approx(raw.latency_s - (0.01 + 100_000 / 1e6) + expected)
    # encoding runs on the source: busy compute there, at its compute power
    assert packed.busy_compute_s == pytest.approx(raw.busy_compute_s + 1e-8 * 100_000)
    assert packed.cost == pytest.approx(raw.cost - 100_000 * 1e-9 + wire * 1e-9 + 0.01 * 2e-9 * 100_000)
    assert packed.compression == {"a": "int8"}
    # the figures the pieces of transfer_figures add up to
    fig = transfer_figures(problem, "a", "phone", "cloud", "int8")
    assert fig is not None and fig.seconds == pytest.approx(sent.seconds)


def test_compression_of_a_tensor_that_stays_put_is_dropped():
    problem = _two_device_problem(1e6)
    ev = evaluate(problem, {"a": "phone", "b": "phone"}, compression={"a": "int8"})
    assert ev.compression == {} and ev.accuracy_loss == 0.0


def test_accuracy_budget_is_a_constraint():
    problem = _two_device_problem(1e6, loss=0.02, budget=0.01)
    ev = evaluate(problem, {"a": "phone", "b": "cloud"}, compression={"a": "int8"})
    assert ev.accuracy_loss == pytest.approx(0.02)
    assert not ev.feasible and "accuracy loss" in ev.violations[0]


@pytest.mark.parametrize("compression, message", [({"a": "int3"}, "no compression option"), ({"b": "int8"}, "no compression")])
def test_an_option_the_problem_lacks_is_an_error(compression, message):
    problem = _two_device_problem(1e6)
    with pytest.raises(TiercutError, match=message):
        evaluate(problem, {"a": "phone", "b": "cloud"}, compression=compression)


def test_problem_and_plan_carry_the_decision_through_json():
    problem = _two_device_problem(1e5)
    result = plan(problem, "ilp")
    assert result.cut_compression == {"a": "int8"}
    again = Problem.from_dict(json.loads(json.dumps(problem.to_dict())))
    assert again.cut_compression == problem.cut_compression
    plan_again = Plan.from_dict(json.loads(json.dumps(result.to_dict())))
    assert plan_again == result
    # the plan's figures recompute from the problem JSON alone
    ev = evaluate(again, plan_again.placement, compression=plan_again.cut_compression)
    assert ev.latency_s == pytest.approx(result.latency_s) and ev.accuracy_loss == result.accuracy_loss


@pytest.mark.parametrize(
    "options, message",
    [
        ({"codecs": [{"name": "int8", "bits": 8, "encode_s_per_byte": {}, "decode_s_per_byte": {}}],
          "tensors": {"a": {"int8": {"ratio": 0.0}}}}, "ratio"),
        ({"codecs": [{"name": "int8", "bits": 12, "encode_s_per_byte": {}, "decode_s_per_byte": {}}], "tensors": {}},
         "bits=12"),
        ({"codecs": [], "tensors": {"a": {"int8": {"ratio": 0.5}}}}, "unknown codec"),
        ({"codecs": [{"name": "int8", "encode_s_per_byte": {"mars": 1e-9}, "decode_s_per_byte": {}}], "tensors": {}},
         "unknown device 'mars'"),
        ({"codecs": [], "tensors": {}, "accuracy_loss_max": 2}, "accuracy_loss_max"),
        ({"codecs": [{"name": "int8"}], "tensors": {}}, "lacks the field 'encode_s_per_byte'"),
    ],
)
def test_bad_options_in_a_problem_json_are_one_line_errors(options, message):
    data = _two_device_problem(1e6).to_dict()
    data["cut_compression"] = options
    with pytest.raises(TiercutError, match=message) as info:
        Problem.from_dict(data)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------- the planners' decision
@pytest.mark.slow
@settings(max_examples=40, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(1, 4), n_devices=st.integers(2, 3),
       objective=st.sampled_from(["latency", "energy_source", "energy_total", "cost"]), constrained=st.booleans())
def test_ilp_with_the_compression_decision_equals_brute_force(rng, n_nodes, n_devices, objective, constrained):
    problem = random_cut_compression(
        rng, random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, objective=objective, constraints=constrained)
    )
    truth = plan(problem, "brute-force")
    ilp = plan(problem, "ilp")
    assert ilp.feasible == truth.feasible
    if truth.feasible:
        assert ilp.objective_value == pytest.approx(truth.objective_value, rel=1e-6, abs=1e-12)
        assert ilp.optimal
        budget = problem.cut_compression.accuracy_loss_max
        assert budget is None or ilp.accuracy_loss <= budget + 1e-12
    for name in ("greedy", "sa", "mincut" if n_devices == 2 else "dp"):
        other = plan(problem, name)
        again = evaluate(problem, other.placement, compression=other.cut_compression)
        assert again.objective_value == other.objective_value  # figures from the cost model, decision included
        if truth.feasible and other.feasible:
            assert other.objective_value >= truth.objective_value * (1 - 1e-9) - 1e-12


def test_brute_force_finds_optima_that_compress_and_the_ilp_too():
    """The hypothesis test above is not vacuous: on random problems the optimum often compresses."""
    compressed = 0
    for seed in range(40):
        rng = random.Random(seed)
        problem = random_cut_compression(rng, random_problem(rng, n_nodes=3, n_devices=2))
        truth = plan(problem, "brute-force")
        if truth.cut_compression:
            compressed += 1
            assert plan(problem, "ilp").objective_value == pytest.approx(truth.objective_value, rel=1e-6)
    assert compressed >= 5


def test_post_pass_respects_the_accuracy_budget():
    problem = _two_device_problem(1e4, loss=0.02, budget=0.01)
    chosen, exact = choose_compression(problem, {"in": "phone", "a": "phone", "b": "cloud"})
    assert chosen == {} and exact
    problem = _two_device_problem(1e4, loss=0.005, budget=0.01)
    chosen, _ = choose_compression(problem, {"in": "phone", "a": "phone", "b": "cloud"})
    assert chosen == {"a": "int8"}


@pytest.fixture(scope="module")
def digits_problem():
    """digits_cnn with its cut compression measured here, over a phone and a cloud server."""
    from tiercut.exits.models import digits_cnn

    torch.manual_seed(0)
    captured = capture_model(digits_cnn().eval(), example_inputs=(torch.randn(1, 1, 8, 8),))
    measured = measure_cut_compression(captured, samples=8)
    compute = {
        n.name: {"phone": 2e-3 + n.flops / 2e8, "cloud": 1e-5 + n.flops / 1e11} for n in captured.graph if not n.is_input
    }

    def problem(bandwidth: float) -> Problem:
        p = Problem(
            graph=captured.graph,
            devices=(ProblemDevice("phone", "end"), ProblemDevice("cloud", "cloud")),
            links=(Link("phone", "cloud", bandwidth, 0.002),),
            source="phone",
            compute_s=compute,
            name=f"digits_cnn@{bandwidth:g}B/s",
        )
        options = measured.for_problem(p, accuracy_loss_max=0.05)
        # the codec times measured here swing with the machine's load: fixed figures keep the decision about links
        fixed = tuple(
            CutCodec(c.name, c.bits, c.granularity, {"phone": 2e-8, "cloud": 1e-9}, {"phone": 2e-8, "cloud": 1e-9})
            for c in options.codecs
        )
        return p.with_cut_compression(CutCompression(fixed, options.tensors, 0.05, options.basis))

    return problem, measured


@pytest.mark.parametrize("algorithm", ["ilp", "greedy", "mincut"])
def test_jalad_decision_slow_link_compresses_fast_link_does_not(digits_problem, algorithm):
    make, _ = digits_problem
    slow = make(20e3)  # 160 kbit/s
    off = plan(slow.with_cut_compression(None), algorithm)
    on = plan(slow, algorithm)
    assert on.cut_compression, on.note
    assert on.latency_s < off.latency_s
    assert on.accuracy_loss <= 0.05
    fast = make(10e9)
    assert plan(fast, algorithm).cut_compression == {}
    assert plan(fast, algorithm).latency_s == pytest.approx(plan(fast.with_cut_compression(None), algorithm).latency_s)


def test_measurement_reports_ratio_and_agreement(digits_problem):
    _, measured = digits_problem
    assert {t.codec for t in measured.tensors} == {"int8", "int4"}
    for t in measured.tensors:
        assert 0 <= t.top1_agreement <= 1 and t.relative_error >= 0
        if t.codec == "int8" and t.raw_bytes >= 4096:  # below, the ~100-byte header shows
            assert t.ratio < 1 / 3
    # int8 changes the output less than int4 on every tensor
    by = {(t.node, t.codec): t for t in measured.tensors}
    for node in {t.node for t in measured.tensors}:
        assert by[(node, "int8")].relative_error < by[(node, "int4")].relative_error


def test_single_tensor_cuts_of_a_residual_block():
    graph = LayerGraph(
        (
            Node("x", "input", out_bytes=4),
            Node("a", "conv2d", ("x",), out_bytes=4),
            Node("b", "conv2d", ("a",), out_bytes=4),
            Node("c", "add", ("a", "b"), out_bytes=4),
            Node("d", "linear", ("c",), out_bytes=4, is_output=True),
        )
    )
    assert single_tensor_cuts(graph) == ["x", "a", "c"]  # after b both a and b cross


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "resnet18"])
def test_zoo_cut_tensors_int8_zstd_at_least_3x_smaller(name):
    captured = capture_model(name)
    measured = measure_cut_compression(captured, samples=4, max_nodes=6, codecs=[("int8", 8, "tensor")])
    assert len(measured.tensors) == 6
    for t in measured.tensors:
        assert t.raw_bytes / t.wire_bytes >= 3.0, t
        assert 0 <= t.top1_agreement <= 1  # reported (random weights: agreement, not accuracy)


@pytest.mark.slow
def test_digits_cnn_int8_cut_accuracy_within_one_point():
    """A digits CNN trained here: int8 at any single-tensor cut keeps accuracy within 1 point; int4 is measured too."""
    from tiercut.exits.models import INPUT_SHAPES, digits_cnn
    from tiercut.exits.train import TrainingSettings, load_digits_split, train_jointly

    data = load_digits_split(INPUT_SHAPES["digits_cnn"], seed=0)
    torch.manual_seed(0)
    net = digits_cnn()
    train_jointly(net, data, TrainingSettings(epochs=8))
    captured = capture_model(net.eval(), example_inputs=(data.x_test[:1],))
    measured = measure_cut_compression(captured, (data.x_test,), labels=data.y_test)
    assert measured.reference_accuracy > 0.9
    for t in measured.tensors:
        if t.codec == "int8":
            assert measured.reference_accuracy - t.accuracy <= 0.01, t


# ----------------------------------------------------------------- the command line
def _fails(argv: list[str], capsys, message: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--cut-compression", "int7"], "--cut-compression 'int7' is not known"),
        (["--accuracy-loss-max", "0.01"], "add --cut-compression auto"),
        (["--cut-compression", "auto", "--accuracy-loss-max", "2"], "must be a fraction"),
        (["--cut-compression", "auto", "--spatial", "auto"], "drop --spatial auto"),
    ],
)
def test_cli_bad_cut_compression_options(extra, message, capsys):
    _fails(["plan", "no_such_package.module:factory", *extra], capsys, message)


def test_cli_problem_json_without_measurements(tmp_path, capsys):
    problem = _two_device_problem(1e6)
    data = problem.to_dict()
    del data["cut_compression"]
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"problem": data}))
    _fails(["plan", str(path), "--cut-compression", "auto"], capsys, "has no cut_compression measurements")


def test_cli_plans_a_problem_json_with_its_options(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"problem": _two_device_problem(1e5, loss=0.004).to_dict()}))
    assert main(["plan", str(path), "--json", "-q"]) == 0
    with_options = json.loads(capsys.readouterr().out)
    assert with_options["plan"]["cut_compression"] == {"a": "int8"}
    assert main(["plan", str(path), "--json", "-q", "--cut-compression", "auto", "--accuracy-loss-max", "0.001"]) == 0
    budgeted = json.loads(capsys.readouterr().out)
    assert budgeted["plan"]["cut_compression"] == {} and budgeted["problem"]["cut_compression"]["accuracy_loss_max"] == 0.001
    assert main(["plan", str(path), "--json", "-q", "--cut-compression", "off"]) == 0
    off = json.loads(capsys.readouterr().out)
    assert "cut_compression" not in off["problem"] and off["plan"]["latency_s"] > with_options["plan"]["latency_s"]
    assert np.isfinite(off["plan"]["latency_s"])


# ----------------------------------------------------------------- the simulator agrees
@pytest.mark.parametrize("execution", ["sequential", "overlapped"])
def test_simulator_charges_a_compressed_cut_as_the_cost_model(execution):
    from tiercut.sim import SimConfig, SimUser, simulate

    problem = _two_device_problem(1e5)
    placement = {"in": "phone", "a": "phone", "b": "cloud"}
    user = SimUser("u", problem, placement=placement, cut_compression={"a": "int8"}, max_queries=1)
    query = simulate([user], SimConfig(execution=execution)).queries[0]
    ev = evaluate(problem, placement, compression={"a": "int8"})
    raw = evaluate(problem, placement)
    assert query.latency_s == pytest.approx(ev.latency_s, rel=1e-9) and ev.latency_s < raw.latency_s
    assert query.energy_source_j == pytest.approx(ev.energy_source_j, rel=1e-9)
    assert query.energy_total_j == pytest.approx(ev.energy_total_j, rel=1e-9)
    # the bytes on the wire are the compressed ones the cost model charges, not the raw tensors
    wire = sum(t.out_bytes if t.wire_bytes is None else t.wire_bytes for t in ev.transfers)
    assert wire < sum(t.out_bytes for t in ev.transfers)
    assert query.bytes_moved == round(wire) and query.bytes_moved < raw_query_bytes(problem, placement)


def raw_query_bytes(problem, placement):
    from tiercut.sim import SimUser, simulate

    return simulate([SimUser("u", problem, placement=placement, max_queries=1)]).queries[0].bytes_moved


@pytest.mark.slow
def test_cli_measures_a_model_and_plans_with_cut_compression(capsys):
    argv = ["plan", "fixtures_models:tiny_net", "--allow-code", "--input-shape", "1,3,8,8", "--env", "neurosurgeon-3g", "--json",
            "-q"]
    assert main([*argv, "--cut-compression", "int8", "--accuracy-loss-max", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    options = out["problem"]["cut_compression"]
    assert [c["name"] for c in options["codecs"]] == ["int8"] and options["accuracy_loss_max"] == 0.5
    assert set(options["codecs"][0]["encode_s_per_byte"]) == {"mobile", "cloud"}
    assert options["tensors"] and "measured on 8 random samples" in options["basis"]
    again = Problem.from_dict(out["problem"])
    plan_ = Plan.from_dict(out["plan"])
    ev = evaluate(again, plan_.placement, compression=plan_.cut_compression)
    assert ev.latency_s == pytest.approx(plan_.latency_s)


def test_the_spatial_planner_refuses_cut_compression():
    with pytest.raises(TiercutError, match="do not model cut compression"):
        plan(_two_device_problem(1e5), "spatial")


def test_every_planner_keeps_the_contract_with_cut_compression():
    """Every registered single-user planner: its decision is an option the problem offers, within the budget, and
    its figures recompute from the problem alone; the ones that decide jointly are never beaten by the others."""
    from tiercut.plan.registry import PLANNERS, get_planner

    problem = _two_device_problem(2e5, loss=0.004, budget=0.01)
    best = plan(problem, "brute-force")
    assert best.cut_compression == {"a": "int8"}
    for name in PLANNERS:
        planner = get_planner(name)
        if not planner.applicable(problem):
            continue
        result = planner.solve(problem)
        ev = evaluate(problem, result.placement, compression=result.cut_compression)
        assert result.latency_s == ev.latency_s and result.accuracy_loss == ev.accuracy_loss, name
        assert result.accuracy_loss <= 0.01 + 1e-12, name
        assert result.objective_value >= best.objective_value * (1 - 1e-9), name
