"""Profiling on this host: the stopping rule, node isolation, profile files, the CLI."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom
from typer.testing import CliRunner

from tiercut.errors import TiercutError
from tiercut.graph import capture_model
from tiercut.profile import (
    Profile,
    StoppingRule,
    TimingStats,
    load_profile,
    measure_profile,
    median_confidence_interval,
    merge_profiles,
    repeat_until_stable,
)
from tiercut.profile.host import HostInfo, describe_host, measure_host
from tiercut.profile.measure import node_programs, record_fx_values, thread_count, timer_for

SMALL = (1, 3, 64, 64)


@functools.cache
def _captured(granularity: str = "module"):
    return capture_model("resnet18", SMALL, granularity=granularity)


@functools.cache
def _profile(granularity: str = "module") -> Profile:
    return measure_profile(_captured(granularity), repeats=4, threads=1, measure_host_roofline=False)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# ------------------------------------------------------------------ stopping rule
@pytest.mark.parametrize("n", range(1, 60))
def test_median_interval_is_the_widest_binomial_order_statistic_pair(n):
    interval = median_confidence_interval(list(range(1, n + 1)), 0.95)
    # brute force: the largest j with P(B <= j - 1) <= 2.5 %, B ~ Binomial(n, 1/2)
    js = [j for j in range(1, n // 2 + 1) if binom.cdf(j - 1, n, 0.5) <= 0.025]
    if not js:
        assert interval is None
    else:
        j = max(js)
        assert interval == (j, n + 1 - j)
        assert 1 - 2 * binom.cdf(j - 1, n, 0.5) >= 0.95


def test_constant_timings_stop_as_soon_as_an_interval_exists():
    rule = StoppingRule(min_repeats=3, max_repeats=50)
    assert rule.stop_reason([1e-3] * 5, 0.005) is None  # no 95 % interval from 5 samples
    assert rule.stop_reason([1e-3] * 6, 0.006) == "stable"


def test_wild_timings_stop_at_the_cap_or_the_budget():
    rng = np.random.default_rng(0)
    wild = list(np.exp(rng.normal(0, 2.0, 40)) * 1e-3)
    assert StoppingRule(max_repeats=40, max_seconds=1e9).stop_reason(wild, 0.0) == "max_repeats"
    assert StoppingRule(max_repeats=100, max_seconds=0.5).stop_reason(wild[:20], 0.6) == "time_budget"
    # the minimum is always taken, budget or not
    assert StoppingRule(min_repeats=10, max_repeats=100, max_seconds=0.1).stop_reason(wild[:9], 5.0) is None


def _sequence_timer(values):
    it = iter(values)
    calls = []

    def timer(fn, number):
        calls.append(number)
        return next(it)

    return timer, calls


@settings(max_examples=25, deadline=None)
@given(sigma=st.floats(0.005, 0.4), seed=st.integers(0, 10_000))
def test_repeat_logic_converges_on_any_stationary_noise(sigma, seed):
    rng = np.random.default_rng(seed)
    true_median = 2e-3
    samples = true_median * np.exp(rng.normal(0.0, sigma, 5000))
    rule = StoppingRule(warmup=2, min_repeats=5, max_repeats=5000, rel_tolerance=0.05, max_seconds=1e9)
    timer, _ = _sequence_timer(samples)
    stats = repeat_until_stable(lambda: None, rule, timer)
    assert stats.stop_reason == "stable"
    assert stats.repeats < 5000
    half_width = (stats.ci_high_s - stats.ci_low_s) / 2
    assert half_width <= 0.05 * stats.median_s


def test_stable_medians_are_close_to_the_true_median_in_most_runs():
    # optional stopping makes a single run's interval miss now and then; over many runs it must not drift
    rule = StoppingRule(warmup=2, min_repeats=5, max_repeats=5000, rel_tolerance=0.05, max_seconds=1e9)
    errors = []
    for seed in range(200):
        samples = 2e-3 * np.exp(np.random.default_rng(seed).normal(0.0, 0.2, 5000))
        timer, _ = _sequence_timer(samples)
        errors.append(abs(repeat_until_stable(lambda: None, rule, timer).median_s / 2e-3 - 1))
    assert np.mean(np.array(errors) < 0.05) > 0.85
    assert np.median(errors) < 0.03


def test_short_calls_are_looped_until_a_sample_lasts_min_sample_s():
    rule = StoppingRule(warmup=1, min_sample_s=1e-3, max_number=10_000)
    timer, calls = _sequence_timer([2e-6] * 100)
    stats = repeat_until_stable(lambda: None, rule, timer)
    assert calls[0] == 1  # the warm-up call
    assert stats.number == 500 and set(calls[1:]) == {500}
    assert stats.median_s == 2e-6 and stats.stop_reason == "stable"


@pytest.mark.parametrize(
    "kwargs",
    [{"warmup": 0}, {"min_repeats": 0}, {"min_repeats": 5, "max_repeats": 4}, {"rel_tolerance": 0.0},
     {"confidence": 1.0}, {"max_seconds": 0.0}, {"max_number": 0}],
)
def test_invalid_stopping_rules_are_one_line_errors(kwargs):
    with pytest.raises(TiercutError) as exc:
        StoppingRule(**kwargs)
    _one_line(exc)


def test_timing_stats_quartiles_and_interval():
    stats = TimingStats.from_samples([5.0, 1.0, 4.0, 2.0, 3.0, 6.0], number=2, stop_reason="stable")
    assert stats.median_s == 3.5 and stats.q25_s == 2.25 and stats.q75_s == 4.75 and stats.spread_s == 2.5
    assert (stats.ci_low_s, stats.ci_high_s) == (1.0, 6.0)
    assert TimingStats.from_dict(stats.to_dict()) == stats


# ------------------------------------------------------------------ threads and clocks
def test_thread_count_is_set_and_restored():
    before = torch.get_num_threads()
    with thread_count(1) as used:
        assert used == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(TiercutError) as exc, thread_count(0):
        pass
    _one_line(exc)


def test_cpu_clock_needs_one_thread():
    assert timer_for("cpu", 1) is not None
    for clock, threads in (("cpu", 2), ("sundial", 1)):
        with pytest.raises(TiercutError) as exc:
            timer_for(clock, threads)
        _one_line(exc)


# ------------------------------------------------------------------ isolation
@pytest.mark.parametrize("granularity", ["module", pytest.param("block", marks=pytest.mark.slow)])
def test_each_node_program_reproduces_the_node_output_from_its_recorded_inputs(granularity):
    captured = _captured(granularity)
    values = record_fx_values(captured)
    programs = node_programs(captured)
    assert set(programs) == {n.name for n in captured.graph.nodes if not n.is_input}
    with torch.no_grad():
        for node in captured.graph.nodes:
            if node.is_input:
                continue
            program = programs[node.name]
            out = program.module(*(values[i].clone() for i in program.input_fx_nodes))
            expected = [values[m] for m in node.members if m in values and isinstance(values[m], torch.Tensor)]
            outs = out if isinstance(out, tuple) else (out,)
            assert any(torch.equal(o, e) for o in outs for e in expected), node.name


def test_export_captured_models_profile_too():
    captured = capture_model("fixtures_models:LoopsOverBatch", (2, 6))
    assert captured.method == "export"
    profile = measure_profile(captured, repeats=3, threads=1, measure_host_roofline=False)
    assert set(profile.nodes) == {n.name for n in captured.graph.nodes if not n.is_input}
    assert all(n.median_s > 0 for n in profile.nodes.values())


class _InPlace(torch.nn.Module):
    """An in-place ReLU whose input is read again afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.act = torch.nn.ReLU(inplace=True)

    def forward(self, x):
        a = self.conv(x) - 0.5
        b = self.act(a)
        return a + b


def test_timing_an_in_place_node_does_not_disturb_the_model():
    captured = capture_model(_InPlace().eval(), (1, 3, 8, 8))
    before = captured.graph_module(*captured.example_inputs).clone()
    profile = measure_profile(captured, repeats=3, threads=1, measure_host_roofline=False)
    assert torch.equal(captured.graph_module(*captured.example_inputs), before)
    assert set(profile.nodes) == {"conv", "sub", "act", "add"}


# ------------------------------------------------------------------ profiles
@pytest.mark.slow
def test_profile_structure_is_deterministic_and_times_are_positive():
    graph = _captured().graph
    first = _profile()
    second = measure_profile(_captured(), repeats=3, threads=1, measure_host_roofline=False)
    expected = [n.name for n in graph.nodes if not n.is_input]
    assert list(first.nodes) == expected == list(second.nodes)
    assert {k: n.features for k, n in first.nodes.items()} == {k: n.features for k, n in second.nodes.items()}
    for profile in (first, second):
        for node in profile.nodes.values():
            t = node.timing
            assert t.median_s > 0 and t.q25_s <= t.median_s <= t.q75_s and t.repeats >= 1
            assert t.ci_low_s <= t.median_s <= t.ci_high_s
        assert profile.whole_model.median_s > 0
        assert profile.host.threads == 1
        assert math.isclose(profile.difference_s, profile.sum_of_nodes_s - profile.whole_model.median_s)
    assert all(n.timing.repeats <= 4 for n in first.nodes.values())
    assert first.input_shapes == (SMALL,)


@pytest.mark.slow
def test_block_granularity_profiles_one_entry_per_block():
    profile = _profile("block")
    graph = _captured("block").graph
    assert list(profile.nodes) == [n.name for n in graph.nodes if not n.is_input]
    assert {n.op for n in profile.nodes.values()} >= {"basicblock"}


@pytest.mark.slow
def test_host_description_and_measured_roofline():
    host = describe_host(1)
    assert host.threads == 1 and host.torch_version == torch.__version__ and host.logical_cpus >= 1
    assert host.cpu_model
    measured = measure_host(1, rule=StoppingRule(min_repeats=3, max_repeats=3))
    assert all(math.isfinite(x) and x > 0 for x in (measured.gemm_flops, measured.conv_flops, measured.memory_bandwidth_bps))
    assert measured.peak_flops == measured.gemm_flops >= measured.gemm_median_flops > 0  # the reference peak: best GEMM
    assert measured.timer == "wall" and measured.threads == 1 and measured.torch_device == "cpu"
    assert measured.load_avg_1m >= 0 or measured.load_avg_1m == -1.0
    assert measured.dispatch_overhead_s > 0 and math.isfinite(measured.dispatch_overhead_s)
    assert HostInfo.from_dict(measured.to_dict()) == measured


def test_profile_json_round_trips(tmp_path):
    profile = _profile()
    assert Profile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile
    path = profile.save(tmp_path / "p.json")
    loaded = load_profile(path)
    assert loaded == profile
    data = json.loads(path.read_text())
    assert set(data["nodes"]) == set(profile.nodes)
    assert data["difference_s"] == pytest.approx(profile.difference_s)
    for key in ("host", "rule", "whole_model", "sum_of_nodes_s", "clock"):
        assert key in data


@pytest.mark.slow
def test_profile_is_reused_only_for_the_same_nodes():
    profile = _profile()
    graph = _captured().graph
    assert profile.coverage(graph) == 1.0
    other_size = capture_model("resnet18", (1, 3, 32, 32)).graph
    assert profile.timing_for(other_size, "conv1") is None  # same name, other FLOPs
    assert profile.timing_for(other_size, "fc") is not None  # after global pooling: the very same node
    assert profile.coverage(other_size) < 0.1
    assert profile.timing_for(graph, "no_such_node") is None


def test_merging_pools_samples_of_the_same_model_and_machine():
    profile = _profile()
    merged = merge_profiles([profile, profile])
    for name, node in merged.nodes.items():
        assert node.timing.repeats == 2 * profile.nodes[name].timing.repeats
        assert node.timing.median_s == pytest.approx(profile.nodes[name].timing.median_s)
        assert node.timing.stop_reason == "merged"
    other_model = measure_profile(
        capture_model("fixtures_models:tiny_net", (1, 3, 8, 8)), repeats=3, threads=1, measure_host_roofline=False
    )
    with pytest.raises(TiercutError) as exc:
        profile.merge(other_model)
    assert "same model" in _one_line(exc)
    foreign = Profile.from_dict({**profile.to_dict(), "host": {**profile.host.to_dict(), "cpu_model": "Other CPU"}})
    with pytest.raises(TiercutError) as exc:
        profile.merge(foreign)
    assert "different machines" in _one_line(exc)
    with pytest.raises(TiercutError):
        merge_profiles([])


def _corrupt(profile: Profile, how: str) -> object:
    data = profile.to_dict()
    first = next(iter(data["nodes"]))
    if how == "kind":
        data["kind"] = "something-else"
    elif how == "version":
        data["schema_version"] = 99
    elif how == "no_nodes":
        data["nodes"] = {}
    elif how == "negative":
        data["nodes"][first]["timing"]["median_s"] = -1.0
    elif how == "text_time":
        data["nodes"][first]["timing"]["median_s"] = "fast"
    elif how == "no_features":
        del data["nodes"][first]["features"]
    elif how == "no_host":
        del data["host"]
    elif how == "clock":
        data["clock"] = "sundial"
    elif how == "list":
        return [data]
    return data


@pytest.mark.parametrize(
    "how", ["kind", "version", "no_nodes", "negative", "text_time", "no_features", "no_host", "clock", "list"]
)
def test_bad_profile_files_give_one_line_errors(tmp_path, how):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_corrupt(_profile(), how)))
    with pytest.raises(TiercutError) as exc:
        load_profile(path)
    assert str(path) in _one_line(exc)


def test_unreadable_profile_files_give_one_line_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for path in (broken, tmp_path / "missing.json"):
        with pytest.raises(TiercutError) as exc:
            load_profile(path)
        _one_line(exc)


# ------------------------------------------------------------------ CLI
def _app():
    import typer

    from tiercut.cli import profile_cmd

    app = typer.Typer()
    app.command("profile")(profile_cmd.profile)
    app.command("devices")(profile_cmd.devices)
    return app


@pytest.mark.slow
def test_profile_command_writes_a_loadable_profile(tmp_path):
    out = tmp_path / "tiny.json"
    result = CliRunner().invoke(
        _app(),
        ["profile", "fixtures_models:tiny_net", "--allow-code", "--input-shape", "1,3,8,8", "--repeats", "3",
         "--torch-threads", "1", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "whole model" in result.output and "sum of nodes" in result.output
    profile = load_profile(out)
    assert profile.host.threads == 1 and all(n.timing.repeats <= 3 for n in profile.nodes.values())


@pytest.mark.parametrize(
    "args",
    [["--repeats", "0"], ["--torch-threads", "0"], ["--granularity", "layer"], ["--clock", "cpu", "--torch-threads", "2"],
     ["--out", "/dev/null"]],
)
def test_profile_command_rejects_bad_options_in_one_line(args):
    result = CliRunner().invoke(
        _app(), ["profile", "fixtures_models:tiny_net", "--allow-code", "--input-shape", "1,3,8,8", *args]
    )
    assert isinstance(result.exception, TiercutError)
    assert "\n" not in str(result.exception) and "--allow-code" not in str(result.exception)


def test_devices_command_lists_the_catalog():
    result = CliRunner().invoke(_app(), ["devices", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert "raspberry_pi_4" in data and data["nvidia_a100"]["sources"]["peak_flops"]
    table = CliRunner().invoke(_app(), ["devices"])
    assert "jetson_nano" in table.output
