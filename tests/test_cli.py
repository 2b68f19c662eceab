"""The ``tiercut`` command: help, output, and one-line errors with non-zero exit."""

from __future__ import annotations

import json

import pytest

from tiercut.cli import app, main
from tiercut.graph import LayerGraph


def _command_names() -> list[str]:
    return sorted(c.name for c in app.registered_commands)


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in _command_names():
        assert name in out


@pytest.mark.parametrize("name", _command_names())
def test_every_subcommand_has_complete_help(name, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and len(out.splitlines()) > 3
    command = next(c for c in app.registered_commands if c.name == name)
    assert command.callback.__doc__, f"{name} has no description"


def test_graph_table_prints_totals(capsys):
    assert main(["graph", "fixtures_models:tiny_net", "--allow-code", "--input-shape", "1,3,8,8"]) == 0
    out = capsys.readouterr().out
    assert "total:" in out and "parameters" in out and "conv2d" in out


def test_graph_json_round_trips(capsys):
    argv = ["graph", "fixtures_models:tiny_net", "--allow-code", "--input-shape", "1,3,8,8", "--granularity", "block"]
    assert main([*argv, "--json"]) == 0
    graph = LayerGraph.from_dict(json.loads(capsys.readouterr().out))
    assert graph.granularity == "block" and graph.total_param_count > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["graph", "not_a_model"], "unknown model"),
        (["graph", "resnet18", "--input-shape", "1,x,3"], "input shape"),
        (["graph", "resnet18", "--granularity", "layer"], "granularity"),
        (["graph", "/nonexistent/model.onnx"], "model.onnx"),
        (["no-such-command"], "No such command"),
    ],
)
def test_errors_are_one_line_and_non_zero(argv, message, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
