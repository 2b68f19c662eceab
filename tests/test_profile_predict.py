"""Latency prediction: families recover known cost functions, fallbacks, JSON, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiercut.errors import TiercutError
from tiercut.graph import capture_model
from tiercut.profile import NodeFeatures, Predictor, Profile, fit_predictor, load_default_predictor, load_predictor
from tiercut.profile.host import HostInfo
from tiercut.profile.measure import StoppingRule, TimingStats
from tiercut.profile.predict import FAMILIES, design_matrix, fit_context, fit_op_model
from tiercut.profile.profile_file import NodeProfile

HOST = HostInfo(
    cpu_model="Synthetic CPU", logical_cpus=2, physical_cores=2, cpu_mhz=2000.0, threads=1, torch_version="2",
    python_version="3", platform="test", gemm_flops=1e11, conv_flops=2e11, memory_bandwidth_bps=2e10,
    dispatch_overhead_s=2e-6, llc_bytes=32 * 2**20,
)


def _features(rng: np.random.Generator, op: str, n: int) -> list[NodeFeatures]:
    """Random convolution-like nodes spanning three decades of size."""
    out = []
    for _ in range(n):
        scale = 10 ** rng.uniform(0, 3)
        out.append(
            NodeFeatures(
                op=op,
                matmul_flops=float(2e6 * scale * rng.uniform(0.5, 2)),
                other_flops=0.0,
                in_bytes=float(4e4 * scale * rng.uniform(0.5, 2)),
                out_bytes=float(4e4 * scale * rng.uniform(0.5, 2)),
                param_bytes=float(1e4 * rng.uniform(1, 100)),
                reduction=float(rng.choice([9, 64, 576])),
            )
        )
    return out


def _profile(model: str, features: list[NodeFeatures], seconds, host: HostInfo = HOST) -> Profile:
    nodes = {
        f"n{i}": NodeProfile(f"n{i}", f, TimingStats.from_samples([float(t)], 1, "stable"))
        for i, (f, t) in enumerate(zip(features, seconds, strict=True))
    }
    total = float(np.sum(seconds))
    return Profile(
        model=model, granularity="module", input_shapes=((1,),), host=host, rule=StoppingRule(), nodes=nodes,
        whole_model=TimingStats.from_samples([total * 1.1], 1, "stable"),
    )


def linear_truth(f: NodeFeatures) -> float:
    return 3e-6 + f.flops / 1e11 + (f.in_bytes + f.out_bytes) / 2e10 + f.param_bytes / 5e9


def roofline_truth(f: NodeFeatures) -> float:
    return 5e-6 + max(f.flops / 1e11, f.bytes_total / 2e10)


@pytest.mark.parametrize("truth", [linear_truth, roofline_truth])
def test_prediction_on_a_synthetic_op_recovers_its_known_cost(truth):
    rng = np.random.default_rng(1)
    profiles = []
    for m in range(4):
        feats = _features(rng, "synthop", 30)
        profiles.append(_profile(f"model{m}", feats, [truth(f) for f in feats]))
    predictor = fit_predictor(profiles)
    assert predictor.models["op:synthop"].n_samples == 120 and predictor.models["op:synthop"].n_models == 4
    fresh = _features(np.random.default_rng(99), "synthop", 50)
    predicted = predictor.predict_many(fresh)
    expected = np.array([truth(f) for f in fresh])
    assert np.max(np.abs(predicted / expected - 1)) < 0.03


def test_linear_family_recovers_exact_coefficients():
    rng = np.random.default_rng(2)
    feats = _features(rng, "synthop", 60)
    X = design_matrix(feats)
    y = np.array([linear_truth(f) for f in feats])
    coef = FAMILIES["linear"].fit(X, y)["coef"]
    # intercept, matmul, other flops, in, out, param, dram
    assert coef[0] == pytest.approx(3e-6, rel=1e-3)
    assert coef[1] == pytest.approx(1e-11, rel=1e-3)
    assert coef[3] == pytest.approx(5e-11, rel=1e-3) and coef[4] == pytest.approx(5e-11, rel=1e-3)
    assert coef[5] == pytest.approx(2e-10, rel=1e-3)


def test_roofline_is_chosen_and_recovered_for_roofline_shaped_costs():
    rng = np.random.default_rng(3)
    feats = _features(rng, "synthop", 90)
    X = design_matrix(feats)
    y = np.array([roofline_truth(f) for f in feats])
    model = fit_op_model("op:synthop", X, y, np.repeat(np.arange(3), 30), families=("linear", "roofline", "powerlaw"))
    assert model.family == "roofline"
    assert model.params["s_per_flop"] == pytest.approx(1e-11, rel=0.01)
    assert model.params["s_per_byte"] == pytest.approx(5e-11, rel=0.01)
    assert model.params["c0_s"] == pytest.approx(5e-6, rel=0.05)
    assert set(model.cv_scores) == {"linear", "roofline", "powerlaw"}


def test_constant_costs_get_the_constant_family():
    rng = np.random.default_rng(4)
    feats = _features(rng, "getattr", 20)
    X = design_matrix(feats)
    model = fit_op_model("op:getattr", X, np.full(20, 1e-6), np.zeros(20), families=("constant", "powerlaw"))
    assert model.predict(X) == pytest.approx(np.full(20, 1e-6))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), c0=st.floats(1e-7, 1e-4), rate=st.floats(1e9, 1e12))
def test_linear_knn_is_exact_where_the_linear_part_is(seed, c0, rate):
    rng = np.random.default_rng(seed)
    feats = _features(rng, "synthop", 25)
    X = design_matrix(feats)
    y = c0 + X[:, 0] / rate
    params = FAMILIES["linear_knn"].fit(X, y)
    assert FAMILIES["linear_knn"].predict(params, X) == pytest.approx(y, rel=1e-4)


def test_ops_with_few_samples_use_their_group_then_the_global_model():
    rng = np.random.default_rng(5)
    conv = _features(rng, "conv2d", 40)
    rare = _features(rng, "conv3d", 3)  # fewer than min_samples: conv group
    odd = _features(rng, "frobnicate", 2)  # unknown op: global model
    feats = conv + rare + odd
    profiles = [_profile(f"m{i}", feats[i::2], [linear_truth(f) for f in feats[i::2]]) for i in range(2)]
    predictor = fit_predictor(profiles, min_samples=8)
    assert "op:conv3d" not in predictor.models
    assert predictor.model_for(rare[0]).key in ("group:conv", "host:conv")
    assert predictor.model_for(odd[0]).key == "global"


def test_a_matrix_product_far_outside_every_fitted_range_uses_the_host_roofline():
    rng = np.random.default_rng(6)
    heads = [
        NodeFeatures("linear", 2e6 * s, 0.0, 4e3 * s, 4e3, 4e6 * s, 1000.0 * s) for s in rng.uniform(0.5, 2, 20)
    ]
    profiles = [_profile(f"m{i}", heads[i::2], [linear_truth(f) for f in heads[i::2]]) for i in range(2)]
    predictor = fit_predictor(profiles)
    big_gemm = NodeFeatures("linear", 1e9, 0.0, 6e5, 2.4e6, 9.4e6, 768.0)
    model = predictor.model_for(big_gemm)
    assert model.key == "host:gemm"
    expected = HOST.dispatch_overhead_s + max(1e9 / HOST.gemm_flops, big_gemm.bytes_total / HOST.memory_bandwidth_bps)
    assert predictor.predict_s(big_gemm) == pytest.approx(expected)


def test_context_model_accounts_for_whole_model_minus_sum_of_nodes():
    rng = np.random.default_rng(7)
    profiles = []
    for m in range(3):
        feats = _features(rng, "conv2d", 10 + 10 * m)
        seconds = np.array([linear_truth(f) for f in feats])
        profile = _profile(f"m{m}", feats, seconds)
        extra = 1e-5 * len(feats)  # 10 us per node inside the model
        whole = TimingStats.from_samples([float(seconds.sum()) + extra], 1, "stable")
        profiles.append(Profile(**{**profile.__dict__, "whole_model": whole}))
    context = fit_context(profiles)
    assert context.per_node_s == pytest.approx(1e-5, rel=1e-6) and context.per_io_byte_s == pytest.approx(0, abs=1e-18)


def test_predictor_json_round_trips(tmp_path):
    rng = np.random.default_rng(8)
    feats = _features(rng, "conv2d", 40)
    profiles = [_profile(f"m{i}", feats[i::2], [roofline_truth(f) for f in feats[i::2]]) for i in range(2)]
    predictor = fit_predictor(profiles)
    again = load_predictor(predictor.save(tmp_path / "p.json"))
    assert again.models.keys() == predictor.models.keys()
    assert np.array_equal(again.predict_many(feats), predictor.predict_many(feats))
    assert again.host == predictor.host and again.contexts == predictor.contexts


def test_fit_errors_are_one_line():
    rng = np.random.default_rng(9)
    feats = _features(rng, "conv2d", 10)
    a = _profile("a", feats, [linear_truth(f) for f in feats])
    foreign = _profile("b", feats, [linear_truth(f) for f in feats],
                       host=HostInfo.from_dict({**HOST.to_dict(), "cpu_model": "Other CPU"}))
    for call in (lambda: fit_predictor([]), lambda: fit_predictor([a, foreign]),
                 lambda: fit_predictor([a], families=("magic",))):
        with pytest.raises(TiercutError) as exc:
            call()
        assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "content",
    ["{broken", json.dumps({"kind": "nope"}), json.dumps({"kind": "tiercut-predictor", "schema_version": 7}),
     json.dumps({"kind": "tiercut-predictor", "schema_version": 1, "models": {}, "host": {}})],
)
def test_bad_predictor_files_are_one_line_errors(tmp_path, content):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(TiercutError) as exc:
        load_predictor(path)
    assert "\n" not in str(exc.value)


@pytest.mark.slow
def test_the_shipped_predictor_predicts_every_node_of_a_new_graph():
    predictor = load_default_predictor()
    assert isinstance(predictor, Predictor) and predictor.trained_on
    assert predictor.host.has_roofline and predictor.host.threads >= 1
    graph = capture_model("mobilenet_v2", (1, 3, 96, 96)).graph
    seconds = predictor.predict_graph(graph)
    assert list(seconds) == [n.name for n in graph.nodes if not n.is_input]
    assert all(np.isfinite(s) and s > 0 for s in seconds.values())
    assert predictor.predict_whole_s(graph) > sum(seconds.values())
