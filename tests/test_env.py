"""Environments: presets, YAML/JSON loading, validation errors, round trips, the env CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from tiercut.cli import env_cmd
from tiercut.env import DeviceSpeed, Environment, list_presets, load_environment
from tiercut.errors import TiercutError

PRESETS = ("d2d-phones", "edge-cluster", "migration-12", "neurosurgeon-3g", "neurosurgeon-lte", "neurosurgeon-wifi", "three-tier")


def minimal(**changes) -> dict:
    data = {
        "name": "t",
        "devices": [{"name": "phone", "tier": "end"}, {"name": "edge", "tier": "edge"}, {"name": "cloud", "tier": "cloud"}],
        "links": [{"a": "phone", "b": "edge", "bandwidth_bytes_per_s": 1.0e6}],
        "users": [{"name": "alice", "device": "phone", "model": "vgg16"}],
    }
    data.update(changes)
    return data


def test_presets_are_listed_and_load():
    names = [p.name for p in list_presets()]
    assert tuple(names) == PRESETS
    for name in PRESETS:
        env = load_environment(name)
        assert env.name == name
        assert env.sources, f"{name} cites no source"
        assert env.description


def test_neurosurgeon_uplink_rates():
    # Neurosurgeon's 3G / LTE / Wi-Fi uplinks: 1.1, 5.85, 18.88 Mbit/s, as bytes per second
    for name, mbit in (("neurosurgeon-3g", 1.1), ("neurosurgeon-lte", 5.85), ("neurosurgeon-wifi", 18.88)):
        env = load_environment(name)
        assert [d.tier for d in env.devices] == ["end", "cloud"]
        link = env.link("mobile", "cloud")
        assert link is not None and link.bandwidth_bytes_per_s == pytest.approx(mbit * 1e6 / 8)


def test_migration_12_matches_the_seed():
    env = load_environment("migration-12")
    tiers = [d.tier for d in env.devices]
    assert tiers.count("end") == 2 and tiers.count("edge") == 5 and tiers.count("cloud") == 5
    expected = {("end", "edge"): 10e6, ("end", "cloud"): 0.5e6, ("edge", "cloud"): 0.5e6, ("cloud", "cloud"): 5e6,
                ("edge", "edge"): 10e6}
    tier = {d.name: d.tier for d in env.devices}
    seen = set()
    for link in env.links:
        pair = tuple(sorted((tier[link.a], tier[link.b]), key=("end", "edge", "cloud").index))
        assert link.bandwidth_bytes_per_s == expected[pair]
        seen.add(pair)
    assert seen == set(expected)
    assert env.link("client1", "client2") is None
    ghz = {d.name: d.spec.cpu_ghz for d in env.devices if isinstance(d.spec, DeviceSpeed)}
    assert ghz["client1"] == 1.1 and ghz["client2"] == 2.3
    assert min(v for k, v in ghz.items() if k.startswith("edge")) == 4.2
    assert max(v for k, v in ghz.items() if k.startswith("edge")) == 18.3
    cloud = [v for k, v in ghz.items() if k.startswith("cloud")]
    assert (min(cloud), max(cloud)) == (40, 120)
    assert [u.device for u in env.users] == ["client1", "client2"]


def test_three_tier():
    env = load_environment("three-tier")
    assert [d.tier for d in env.devices] == ["end", "edge", "cloud"]
    assert len(env.links) == 3


def test_tier_links_expand_and_explicit_links_win():
    data = minimal(
        devices=[{"name": f"e{i}", "tier": "edge"} for i in range(3)] + [{"name": "p", "tier": "end"}],
        links=[{"tiers": ["edge", "edge"], "bandwidth_bytes_per_s": 5.0}, {"a": "e1", "b": "e0", "bandwidth_bytes_per_s": 7.0},
               {"tiers": ["end", "edge"], "bandwidth_bytes_per_s": 1.0}],
        users=[],
    )
    env = Environment.from_dict(data)
    assert len(env.links) == 3 + 3
    assert env.link("e0", "e1").bandwidth_bytes_per_s == 7.0
    assert env.link("e2", "e1").bandwidth_bytes_per_s == 5.0
    assert env.link("p", "e2").bandwidth_bytes_per_s == 1.0


def test_round_trip_dict_and_files(tmp_path: Path):
    env = load_environment("migration-12")
    again = Environment.from_dict(env.to_dict())
    assert again.to_dict() == env.to_dict()
    yaml_file = tmp_path / "mine.yaml"
    yaml_file.write_text(yaml.safe_dump(minimal(name="")))
    loaded = load_environment(yaml_file)
    assert loaded.name == "mine" and loaded.default_source() == "phone"
    json_file = tmp_path / "mine.json"
    json_file.write_text(json.dumps(env.to_dict()))
    assert load_environment(json_file).to_dict() == env.to_dict()


def test_numbers_written_without_exponent_sign_are_accepted(tmp_path: Path):
    # YAML 1.1 reads 1.0e6 (no sign) as a string; the schema still takes it as a number
    path = tmp_path / "e.yaml"
    path.write_text("devices:\n  - {name: a, tier: end, memory_bytes: 4.0e9}\n  - {name: b, tier: cloud}\n"
                    "links:\n  - {a: a, b: b, bandwidth_bytes_per_s: 1.0e6}\n")
    env = load_environment(path)
    assert env.devices[0].memory_bytes == 4_000_000_000 and env.links[0].bandwidth_bytes_per_s == 1e6


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"links": [{"a": "phone", "b": "gpu", "bandwidth_bytes_per_s": 1.0}]}, "unknown device 'gpu'"),
        ({"links": [{"a": "phone", "b": "edge", "bandwidth_bytes_per_s": -1.0}]}, "it must be finite and > 0"),
        ({"links": [{"a": "phone", "b": "edge", "bandwidth_bytes_per_s": 1.0, "latency_s": -0.1}]}, "latency_s"),
        ({"links": [{"a": "phone", "b": "phone", "bandwidth_bytes_per_s": 1.0}]}, "to itself"),
        ({"links": [{"a": "phone", "bandwidth_bytes_per_s": 1.0}]}, "both a and b"),
        ({"links": [{"bandwidth_bytes_per_s": 1.0}]}, "needs a and b"),
        ({"links": [{"a": "phone", "b": "edge", "tiers": ["end", "edge"], "bandwidth_bytes_per_s": 1.0}]}, "not both"),
        ({"links": [{"tiers": ["end", "moon"], "bandwidth_bytes_per_s": 1.0}]}, "links.0.tiers.1"),
        ({"links": [{"a": "phone", "b": "edge", "bandwidth_bytes_per_s": 1.0},
                    {"a": "edge", "b": "phone", "bandwidth_bytes_per_s": 2.0}]},
         "two links between"),
        ({"users": [{"name": "bob", "device": "watch", "model": "vgg16"}]}, "user 'bob' is on unknown device 'watch'"),
        ({"users": [{"name": "bob", "device": "phone", "model": "vgg16"}] * 2}, "two users named 'bob'"),
        ({"users": [{"name": "bob", "device": "phone", "model": "vgg16", "query_rate_hz": 0}]}, "query_rate_hz"),
        ({"devices": [{"name": "a", "tier": "end"}, {"name": "a", "tier": "edge"}], "links": [], "users": []},
         "two devices named 'a'"),
        ({"devices": [{"name": "a", "tier": "fog"}], "links": [], "users": []}, "devices.0.tier"),
        ({"devices": [{"name": "a", "tier": "end", "colour": "red"}], "links": [], "users": []}, "colour"),
        ({"devices": [{"name": "a", "tier": "end", "power_tx_w": -2}], "links": [], "users": []}, "power_tx_w"),
        ({"devices": [{"name": "a", "tier": "end", "spec": {"peak_flops": 1e9}}], "links": [], "users": []},
         "memory_bandwidth_bps"),
        ({"devices": [{"name": "a", "tier": "end", "spec": {"cpu_ghz": 2, "peak_flops": 1e9}}], "links": [], "users": []},
         "not both"),
        ({"devices": [], "links": [], "users": []}, "devices"),
        ({"devices": [{"name": "a", "tier": "end"}], "links": [{"tiers": ["end", "cloud"], "bandwidth_bytes_per_s": 1.0}],
          "users": []}, "tier 'cloud', which has no device"),
        ({"schema_version": 7}, "schema_version 7"),
    ],
)
def test_validation_errors_are_one_line(changes, message):
    with pytest.raises(TiercutError) as info:
        Environment.from_dict(minimal(**changes))
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_file_errors(tmp_path: Path):
    with pytest.raises(TiercutError, match="neither a preset nor a file"):
        load_environment("no-such-env")
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: [unclosed\n")
    with pytest.raises(TiercutError, match="not valid YAML"):
        load_environment(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{")
    with pytest.raises(TiercutError, match="not valid JSON"):
        load_environment(bad_json)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(TiercutError, match="must be a mapping"):
        load_environment(listy)
    with pytest.raises(TiercutError, match="is a folder"):
        load_environment(tmp_path)


def test_environment_accessors():
    env = Environment.from_dict(minimal())
    assert env.device("edge").tier == "edge"
    with pytest.raises(TiercutError, match="no device 'gpu'"):
        env.device("gpu")
    assert env.link("edge", "phone") is env.link("phone", "edge")
    assert env.link("phone", "cloud") is None
    with pytest.raises(TiercutError, match="no user 'zed'"):
        env.user("zed")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("list")(env_cmd.env_list)
    app.command("show")(env_cmd.env_show)
    return app


def test_env_cli_list_and_show(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(_app(), ["list"])
    assert result.exit_code == 0
    for name in PRESETS:
        assert name in result.output
    result = runner.invoke(_app(), ["list", "--json"])
    assert [p["name"] for p in json.loads(result.output)] == list(PRESETS)
    result = runner.invoke(_app(), ["show", "migration-12"])
    assert result.exit_code == 0 and "client1" in result.output and "cloud5" in result.output
    result = runner.invoke(_app(), ["show", "three-tier", "--json"])
    assert json.loads(result.output)["name"] == "three-tier"
    result = runner.invoke(_app(), ["show", "nowhere"])
    assert isinstance(result.exception, TiercutError)
