"""Unit strings in environment files: ``20 Mbit/s``, ``5 ms``, ``4 GiB``, ``1.5 GHz``, ``0.09/GB``."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tiercut.env import Environment, LegacyFieldWarning, list_presets, load_environment
from tiercut.env.units import (
    FAMILIES,
    FREQUENCY,
    RATE,
    SIZE,
    TIME,
    FieldUnit,
    format_quantity,
    human,
    parse_quantity,
)
from tiercut.errors import TiercutError

DATA = Path(__file__).resolve().parent / "data"

ISSUE_EXAMPLE = """
devices:
  - {name: phone, tier: end, memory: 4 GiB, power_tx_w: 250 mW, spec: {cpu_ghz: 1.5 GHz}}
  - {name: server, tier: edge, price_per_s: $3.6/h, spec: {peak_flops: 2.5 TFLOP/s, memory_bandwidth_bps: 25.6 GB/s}}
links:
  - {a: phone, b: server, bandwidth: 20 Mbit/s, latency: 5 ms, price: $0.02/GB}
users:
  - {name: u, device: phone, model: vgg16, query_rate_hz: 30/min}
"""


def _env(links: list[dict], devices: list[dict] | None = None) -> Environment:
    devices = devices or [{"name": "phone", "tier": "end"}, {"name": "server", "tier": "edge"}]
    return Environment.from_dict({"name": "t", "devices": devices, "links": links})


def test_the_issue_example_reads_every_family_exactly(tmp_path: Path):
    path = tmp_path / "env.yaml"
    path.write_text(ISSUE_EXAMPLE)
    env = load_environment(path)
    link = env.links[0]
    assert link.bandwidth_bytes_per_s == 2_500_000.0  # 20e6 bits / 8
    assert link.latency_s == 0.005 and link.price_per_byte == 2e-11  # exact, unlike 0.02 / 1e9
    phone, server = env.devices
    assert phone.memory_bytes == 4 * 2**30 and phone.power_tx_w == 0.25
    assert phone.spec.cpu_ghz == 1.5  # cpu_ghz's base unit is GHz
    assert server.price_per_s == 0.001
    assert server.spec.peak_flops == 2.5e12 and server.spec.memory_bandwidth_bps == 25.6e9
    assert env.users[0].query_rate_hz == 0.5


@pytest.mark.parametrize(
    "text, bytes_per_s",
    [
        ("20 Mbit/s", 2.5e6),
        ("20Mbit/s", 2.5e6),
        ("20 Mb/s", 2.5e6),
        ("20 Mbps", 2.5e6),
        ("2.5 MB/s", 2.5e6),
        ("10 MB/s", 1e7),
        ("2.5 Gbit/s", 3.125e8),
        ("1 KiB/s", 1024.0),
        ("1 kB/s", 1000.0),
        ("8 Kibit/s", 1024.0),
        ("1.0e6", 1e6),  # YAML 1.1 reads this as text: a plain number in the base unit
        ("731250", 731250.0),
        ("5.85 Mbit/s", 731250.0),  # exact: 5.85e6 / 8 as rationals, rounded once
    ],
)
def test_rates_in_bits_and_bytes_decimal_and_binary(text, bytes_per_s):
    assert _env([{"a": "phone", "b": "server", "bandwidth": text}]).links[0].bandwidth_bytes_per_s == bytes_per_s


def test_directional_links_take_units_up_and_down_and_both_spellings():
    link = _env([{"a": "phone", "b": "server", "up": "5.85 Mbit/s", "down": "13 Mbit/s", "latency": "10 ms",
                  "latency_ba": "20 ms"}]).links[0]
    ab, ba = link.directions()
    assert (ab.bandwidth_bytes_per_s, ba.bandwidth_bytes_per_s) == (731250.0, 1625000.0)
    assert (ab.latency_s, ba.latency_s) == (0.01, 0.02)
    long = _env([{"a": "phone", "b": "server", "bandwidth_bytes_per_s": "1 MB/s", "bandwidth_bytes_per_s_ba": "2 MB/s",
                  "latency_s": "1 ms", "price_per_byte": "0.09/GB", "price_per_byte_ba": "$0.18/GB"}]).links[0]
    short = _env([{"a": "phone", "b": "server", "bandwidth": "1 MB/s", "bandwidth_ba": "2 MB/s",
                   "latency": "1 ms", "price": "0.09/GB", "price_ba": "$0.18/GB"}]).links[0]
    assert long == short and long.price_per_byte_ba == 1.8e-10


def test_legacy_bandwidth_bps_takes_units_and_still_warns():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        link = _env([{"a": "phone", "b": "server", "bandwidth_bps": "8 Mbit/s"}]).links[0]
    assert link.bandwidth_bytes_per_s == 1e6
    assert any(issubclass(w.category, LegacyFieldWarning) for w in caught)


@pytest.mark.parametrize(
    "link, message",
    [
        ({"bandwidth": "20 ms"}, "links.0.bandwidth: '20 ms' is a time, expected a rate like '20 Mbit/s'"),
        ({"up": "20 ms"}, "links.0.up: '20 ms' is a time, expected a rate"),
        ({"bandwidth": "1 MB/s", "down": "4 GiB"}, "links.0.down: '4 GiB' is a size, expected a rate"),
        ({"bandwidth": "1 MB/s", "latency": "1.5 GHz"}, "links.0.latency: '1.5 GHz' is a frequency, expected a time like '5 ms'"),
        ({"bandwidth": "20 KB/s"}, "write k for 1000 or Ki for 1024"),
        ({"bandwidth": "20 Mbps/s"}, "unknown unit 'Mbps/s'"),
        ({"bandwidth": "20 furlongs"}, "k/M/G/T = 1000^n, Ki/Mi/Gi/Ti = 1024^n; b or bit = bit, B = byte"),
        ({"bandwidth": "fast"}, "'fast' is not a number with a unit"),
        ({"bandwidth": "$3 MB/s"}, "has a currency sign"),
        ({"bandwidth": "0 Mbit/s"}, "must be finite and > 0"),
        ({"bandwidth": "-2 MB/s"}, "must be finite and > 0"),
        ({"bandwidth": "1e999999999 MB/s"}, "out of range"),
        ({"bandwidth": [20]}, "expected a number (B/s) or a rate like '20 Mbit/s', got list"),
        ({"bandwidth": "1 MB/s", "latency": "-5 ms"}, "links.0.latency"),
        ({"bandwidth": "1 MB/s", "bandwidth_bytes_per_s": 1e6}, "give bandwidth or bandwidth_bytes_per_s"),
        ({"bandwidth": "1 MB/s", "price": "3.6/h"}, "links.0.price: '3.6/h' is a frequency, expected a price per byte"),
    ],
)
def test_bad_units_are_one_line_errors_naming_the_field(link, message):
    with pytest.raises(TiercutError) as info:
        _env([{"a": "phone", "b": "server", **link}])
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "device, message",
    [
        ({"memory": "4 GB/s"}, "devices.0.memory: '4 GB/s' is a rate, expected a size like '4 GiB'"),
        ({"power_tx_w": "5 ms"}, "devices.0.power_tx_w: '5 ms' is a time, expected a power like '250 mW'"),
        ({"spec": {"cpu_ghz": "2 GB"}}, "cpu_ghz: '2 GB' is a size, expected a frequency like '1.5 GHz' (a plain number is GHz)"),
        ({"memory": "4 GiB", "memory_bytes": 4e9}, "give memory or memory_bytes"),
        ({"price_per_s": "0.09/GB"}, "price_per_s: '0.09/GB' is a price per byte, expected a price per time like '3.6/h' "
                                     "(a plain number is money/s)"),
        ({"price_per_s": "3.6 EUR/h"}, "price_per_s: unknown unit 'EUR/h'"),
    ],
)
def test_bad_device_units_are_one_line_errors(device, message):
    with pytest.raises(TiercutError) as info:
        _env([], [{"name": "phone", "tier": "end", **device}])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_cli_refuses_a_wrong_unit_with_exit_2(tmp_path: Path, capsys):
    from tiercut.cli import main

    path = tmp_path / "env.yaml"
    path.write_text(ISSUE_EXAMPLE.replace("bandwidth: 20 Mbit/s", "bandwidth: 20 ms"))
    assert main(["env", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'20 ms' is a time, expected a rate like '20 Mbit/s'" in err and err.count("\n") == 1


def _unit_and_value(family):
    units = st.sampled_from(sorted(family.units))
    values = st.one_of(
        st.just(0.0),
        st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False),
        st.integers(min_value=1, max_value=10**12).map(float),
    )
    return st.tuples(units, values)


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_value_to_text_to_value_round_trips_exactly_in_every_unit(family, data):
    unit, value = data.draw(_unit_and_value(family))
    text = format_quantity(value, family, unit)
    assert text.endswith(unit)
    assert parse_quantity(text, FieldUnit(family, family.base)) == value
    # and with the family read in another base unit (cpu_ghz reads GHz; a plain number stays as it is)
    other = FieldUnit(family, unit)
    assert parse_quantity(format_quantity(value, family, family.base, base_unit=unit), other) == value
    assert parse_quantity(value, other) == value


def test_the_shortest_text_is_written():
    assert format_quantity(731250.0, RATE, "Mbit/s") == "5.85 Mbit/s"
    assert format_quantity(0.005, TIME, "ms") == "5 ms"
    assert format_quantity(4 * 2**30, SIZE, "GiB") == "4 GiB"
    assert format_quantity(1.5, FREQUENCY, "MHz", base_unit="GHz") == "1500 MHz"
    assert format_quantity(1e-300, TIME, "h").endswith(" h") and "e-" in format_quantity(1e-300, TIME, "h")
    with pytest.raises(ValueError, match="finite"):
        format_quantity(math.inf, RATE, "B/s")


def test_human_units_for_tables():
    assert human(731250.0, RATE, unit="bit/s") == "5.85 Mbit/s"
    assert human(731250.0, RATE, unit="B/s") == "731.2 kB/s" and human(731250.0, RATE, digits=2) == "730 kB/s"
    assert human(0.005, TIME) == "5 ms" and human(4e9, SIZE) == "4 GB" and human(2e-4, FIELD_PRICE) == "0.72/h"


FIELD_PRICE = next(f for f in FAMILIES if f.name == "price per time")


def test_presets_parse_to_the_same_values_as_before_they_were_written_with_units():
    """tests/data/env_presets_parsed.json: every preset's parsed form before the presets took unit strings."""
    want = json.loads((DATA / "env_presets_parsed.json").read_text())
    got = json.loads(json.dumps({p.name: load_environment(p.name).to_dict() for p in list_presets()}))
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == want[name], name


def test_presets_use_unit_strings_where_it_reads_better():
    text = (Path(__file__).resolve().parent.parent / "src/tiercut/env/presets/three-tier.yaml").read_text()
    links = yaml.safe_load(text)["links"]
    assert links[0]["bandwidth"] == "18.88 Mbit/s" and links[0]["latency"] == "5 ms"


def test_env_show_gives_rates_in_bits_and_bytes_per_second():
    from tiercut.cli import app

    result = CliRunner().invoke(app, ["env", "show", "neurosurgeon-lte"])
    assert result.exit_code == 0
    assert "5.85 Mbit/s (731.2 kB/s)" in result.output and "13 Mbit/s (1.625 MB/s)" in result.output
    assert "2 GB" in result.output and "3.853 W" in result.output


def test_the_exported_json_schema_takes_unit_strings_and_either_name_but_not_both():
    jsonschema = pytest.importorskip("jsonschema")
    from tiercut.serialization import file_schema

    validator = jsonschema.Draft202012Validator(file_schema("env"))
    ok = yaml.safe_load(ISSUE_EXAMPLE)
    assert list(validator.iter_errors(ok)) == []
    long = {**ok, "links": [{"a": "phone", "b": "server", "bandwidth_bytes_per_s": 2.5e6, "latency_s": "5 ms"}]}
    assert list(validator.iter_errors(long)) == []
    both = {**ok, "links": [{"a": "phone", "b": "server", "bandwidth": "20 Mbit/s", "bandwidth_bytes_per_s": 2.5e6}]}
    not_a_number = {**ok, "links": [{"a": "phone", "b": "server", "bandwidth": "fast"}]}
    assert list(validator.iter_errors(both)) and list(validator.iter_errors(not_a_number))
