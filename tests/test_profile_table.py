"""The compute_s table: measured where profiled, predicted elsewhere, and says which."""

from __future__ import annotations

import functools
import json

import pytest

from tiercut.errors import TiercutError
from tiercut.graph import capture_model
from tiercut.profile import ComputeTable, Profile, compute_table, get_device_spec, load_default_predictor, measure_profile

SMALL = (1, 3, 64, 64)


@functools.cache
def _captured():
    return capture_model("resnet18", SMALL)


@functools.cache
def _profile() -> Profile:
    return measure_profile(_captured(), repeats=3, threads=1)


def _partial(profile: Profile, keep: int) -> Profile:
    names = list(profile.nodes)[:keep]
    return Profile(**{**profile.__dict__, "nodes": {n: profile.nodes[n] for n in names}})


@pytest.mark.slow
def test_a_full_profile_makes_the_host_column_measured_and_devices_predicted():
    graph = _captured().graph
    table = compute_table(graph, {"client": None, "edge": get_device_spec("jetson_nano"), "cloud": "nvidia_a100"},
                          profile=_profile())
    names = [n.name for n in graph.nodes if not n.is_input]
    assert list(table.seconds) == names
    for name in names:
        assert table.provenance[name] == {"client": "measured", "edge": "predicted", "cloud": "predicted"}
        assert all(s > 0 for s in table.seconds[name].values())
    assert table.count("measured") == len(names) and table.count("predicted", "edge") == len(names)
    # in context, the host column adds up to the measured whole-model time
    assert table.total_s("client") == pytest.approx(_profile().whole_model.median_s, rel=1e-9)
    # an A100 is faster than the Jetson Nano on every node that does work (views cost nothing on either)
    working = [n for n in names if graph[n].flops > 0]
    assert working and all(table.seconds[n]["cloud"] < table.seconds[n]["edge"] for n in working)
    assert all(table.seconds[n]["cloud"] <= table.seconds[n]["edge"] for n in names)


@pytest.mark.slow
def test_without_context_the_host_column_is_the_raw_medians():
    graph = _captured().graph
    table = compute_table(graph, {"client": None}, profile=_profile(), in_context=False)
    assert {n: row["client"] for n, row in table.seconds.items()} == _profile().median_s()
    assert all(v == 0 for v in table.context_s["client"].values())


def test_nodes_the_profile_lacks_are_predicted():
    graph = _captured().graph
    partial = _partial(_profile(), 10)
    table = compute_table(graph, {"client": None}, profile=partial)
    names = [n.name for n in graph.nodes if not n.is_input]
    assert [table.provenance[n]["client"] for n in names] == ["measured"] * 10 + ["predicted"] * (len(names) - 10)
    assert table.count("measured") == 10


def test_without_a_profile_everything_is_predicted_on_the_predictor_host():
    graph = _captured().graph
    table = compute_table(graph, {"client": None, "pi": "raspberry_pi_4"})
    assert table.count("measured") == 0
    assert load_default_predictor().host.cpu_model in table.basis["client"]
    assert table.total_s("pi") > table.total_s("client")  # a Pi 4 is slower than a server core


def test_another_input_size_does_not_reuse_the_profile():
    graph = capture_model("resnet18", (1, 3, 32, 32)).graph
    table = compute_table(graph, {"client": None}, profile=_profile())
    assert table.count("measured") < 0.1 * len(table.seconds)


def test_compute_table_json_round_trips():
    graph = _captured().graph
    table = compute_table(graph, {"client": None, "t4": "nvidia_t4"}, profile=_partial(_profile(), 20))
    again = ComputeTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again == table


def _bad_table(how: str) -> dict:
    data = {"schema_version": 1, "seconds": {"a": {"d": 1e-3}}, "provenance": {"a": {"d": "measured"}}}
    if how == "version":
        data["schema_version"] = 5
    elif how == "provenance":
        data["provenance"]["a"]["d"] = "guessed"
    elif how == "negative":
        data["seconds"]["a"]["d"] = -1.0
    elif how == "mismatch":
        data["provenance"]["a"] = {"e": "measured"}
    elif how == "missing":
        del data["seconds"]
    return data


@pytest.mark.parametrize("how", ["version", "provenance", "negative", "mismatch", "missing"])
def test_bad_tables_are_one_line_errors(how):
    with pytest.raises(TiercutError) as exc:
        ComputeTable.from_dict(_bad_table(how))
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("devices", [{}, {"x": "warp_drive"}, {"x": 42}])
def test_bad_device_mappings_are_one_line_errors(devices):
    with pytest.raises(TiercutError) as exc:
        compute_table(_captured().graph, devices)
    assert "\n" not in str(exc.value)
    with pytest.raises(TiercutError):
        compute_table(_captured().graph, {"client": None}, profile=_profile()).total_s("nowhere")


def test_blocks_can_be_predicted_as_the_sum_of_their_layers():
    predictor = load_default_predictor()
    blocks = capture_model("resnet18", SMALL, granularity="block").graph
    layers = _captured().graph
    layer_s = predictor.predict_graph(layers)
    block_s = predictor.predict_graph(blocks, members_graph=layers)
    for node in blocks.nodes:
        if node.is_input:
            continue
        parts = [layer_s[m] for m in node.members if m in layer_s]
        assert parts and block_s[node.name] == pytest.approx(sum(parts))
    table = compute_table(blocks, {"client": None}, members_graph=layers, in_context=False)
    assert {n: row["client"] for n, row in table.seconds.items()} == pytest.approx(block_s)
