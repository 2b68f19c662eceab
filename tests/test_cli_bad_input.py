"""Bad input to the ``tiercut`` command: one line on stderr, exit status 2, no traceback, no hang, nothing written.

And data files (environments, scenarios, plans) that try to run code or to
exhaust memory: refused at once with one line.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from tiercut.cli import main
from tiercut.cli.checks import write_output
from tiercut.errors import TiercutError

TINY = ["fixtures_models:tiny_net", "--allow-code", "--input-shape", "1,3,8,8"]
#: a model spec that fails if anything tries to build it: an error naming it means the options were checked too late
UNTOUCHABLE = "no_such_package.module:factory"


def _fails(argv: list[str], capsys, message: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert message in err, err
    assert len(err.splitlines()) == 1 and err.startswith("tiercut: error:") and "Traceback" not in err
    return err


# ----------------------------------------------------------------- model specs and shapes
@pytest.mark.parametrize(
    "spec, message",
    [
        (":", "is not package.module:factory"),
        ("a:", "is not package.module:factory"),
        ("os.path:", "is not package.module:factory"),
        ("1bad:name", "is not package.module:factory"),
        ("fixtures_models:exits", "raised SystemExit"),
        ("fixtures_models:raises", "raised RuntimeError"),
    ],
)
def test_model_specs_that_are_not_models_are_one_line_errors(spec, message, capsys):
    _fails(["graph", spec, "--allow-code", "--input-shape", "1,3,8,8"], capsys, message)


def test_a_module_that_exits_while_imported_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "exits_on_import.py").write_text("raise SystemExit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _fails(["graph", "exits_on_import:factory", "--allow-code", "--input-shape", "1,3"], capsys, "raised SystemExit")


@pytest.mark.parametrize(
    "shape, message",
    [
        ("1,3,100000,100000", "more than the 268,435,456"),
        ("1,1,1,1,1,1,1,1,1", "at most 8"),
        ("99999999999999999999", "below 10**12"),
        ("9223372036854775808,2", "below 10**12"),
        ("", "is empty"),
        (",", "not a comma-separated"),
        ("0,3", "non-positive"),
    ],
)
def test_input_shapes_that_cannot_be_allocated_are_refused_before_any_model_work(shape, message, capsys):
    for command in ("graph", "profile", "plan"):
        _fails([command, UNTOUCHABLE, "--allow-code", "--input-shape", shape], capsys, message)


# ----------------------------------------------------------------- options checked before any model work
@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--rate", "0", "--rate 0.0 must be > 0"),
        ("--rate", "nan", "--rate nan is not a finite number"),
        ("--rate", "inf", "--rate inf is not a finite number"),
        ("--bandwidth-scale", "nan", "--bandwidth-scale nan"),
        ("--source-slowdown", "nan", "--source-slowdown nan"),
        ("--source-slowdown", "0.5", "must be >= 1"),
        ("--max-run-s", "nan", "--max-run-s nan"),
        ("--keep-uploading-s", "-1", "must be >= 0"),
    ],
)
def test_run_options_are_checked_before_any_model_work(option, value, message, capsys):
    _fails(["run", UNTOUCHABLE, "--allow-code", option, value], capsys, message)


@pytest.mark.parametrize("budget", ["--latency-budget", "--energy-budget", "--cost-budget"])
def test_nan_budgets_are_refused_before_any_model_work(budget, capsys):
    _fails(["plan", UNTOUCHABLE, "--allow-code", budget, "nan"], capsys, f"{budget} nan is not a finite number")


def test_a_token_to_a_remote_worker_without_tls_is_refused(capsys):
    argv = ["run", UNTOUCHABLE, "--allow-code", "--workers", "edge=10.1.2.3:50051", "--token", "t"]
    _fails(argv, capsys, "would travel in clear")
    _fails(["serve", "--device", "edge", "--listen", "0.0.0.0:0", "--token", "t"], capsys, "receive its token in clear")


def test_client_token_files_are_checked_before_the_worker_starts(tmp_path, capsys):
    tokens = tmp_path / "clients.txt"
    tokens.write_text("alice secret-a\nbob secret-b\n")
    tokens.chmod(0o644)
    serve = ["serve", "--device", "edge", "--listen", "127.0.0.1:0", "--client-tokens", str(tokens)]
    _fails(serve, capsys, "is readable by others; run chmod 600")
    tokens.chmod(0o600)
    remote = ["serve", "--device", "edge", "--listen", "0.0.0.0:0", "--client-tokens", str(tokens)]
    _fails(remote, capsys, "receive its token in clear")
    tokens.write_text("alice\n")
    _fails(serve, capsys, "is not 'NAME TOKEN'")
    _fails([*serve[:-1], str(tmp_path / "missing.txt")], capsys, "cannot read the client token file")


@pytest.fixture()
def pem_files(tmp_path: Path) -> dict[str, Path]:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a certificate\n")
    fake = tmp_path / "fake.pem"
    fake.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    return {"missing": tmp_path / "missing.pem", "garbage": garbage, "fake": fake, "folder": tmp_path}


@pytest.mark.parametrize(
    "which, message",
    [("missing", "cannot read the TLS cert"), ("garbage", "is not a PEM file"), ("fake", "are not a PEM certificate chain"),
     ("folder", "cannot read the TLS cert")],
)  # fmt: skip
def test_unreadable_tls_files_are_one_line_errors(pem_files, which, message, capsys):
    path = str(pem_files[which])
    tls = ["--tls-cert", path, "--tls-key", path, "--tls-ca", path]
    _fails(["serve", "--device", "edge", "--listen", "127.0.0.1:0", *tls], capsys, message)
    _fails(["run", UNTOUCHABLE, "--allow-code", "--workers", "edge=127.0.0.1:1", *tls], capsys, message)


# ----------------------------------------------------------------- binary and hostile data files
def test_binary_files_given_as_an_upload_plan_or_a_scenario_are_named_as_such(tmp_path, capsys):
    binary = tmp_path / "plan.json"
    binary.write_bytes(bytes(range(256)) * 16)
    _fails(["run", *TINY, "--upload-plan", str(binary)], capsys, "is a binary file")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    _fails(["simulate", str(scenario)], capsys, "binary file")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    _fails(["env", "show", str(latin)], capsys, "is not UTF-8 text")


def _bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("command", [["env", "show"], ["simulate"]])
def test_yaml_alias_bombs_and_oversized_files_are_refused_at_once(tmp_path, capsys, command):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb())  # about 700 bytes, 387 million nodes expanded
    _fails([*command, str(bomb)], capsys, "expands (through its aliases) to more than 1,000,000 nodes")
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("devices: &d [*d]\n")
    _fails([*command, str(recursive)], capsys, "recursive alias")
    big = tmp_path / "big.yaml"
    with open(big, "w") as handle:
        handle.write("description: '" + "x" * (5 << 20) + "'\n")
    _fails([*command, str(big)], capsys, "larger than 4 MiB")


def test_yaml_tags_that_would_build_python_objects_are_refused(tmp_path, capsys):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned > /tmp/pwned']\ndevices: []\n")
    _fails(["env", "show", str(evil)], capsys, "not valid YAML")


ENVIRONMENT = {
    "name": "pair",
    "devices": [{"name": "phone", "tier": "end"}, {"name": "box", "tier": "edge"}],
    "links": [{"a": "phone", "b": "box", "bandwidth_bytes_per_s": 2.0e6, "latency_s": 0.01}],
}


def _scenario(tmp_path: Path, model: str) -> Path:
    (tmp_path / "env.yaml").write_text(yaml.safe_dump(ENVIRONMENT))
    scenario = {
        "schema_version": 1,
        "name": "code",
        "environment": "env.yaml",
        "duration_s": 2,
        "users": [
            {"name": "u", "device": "phone", "model": model, "input_shape": [1, 3, 8, 8], "arrivals": {"kind": "back-to-back"}}
        ],
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def test_a_scenario_naming_code_needs_allow_code_on_the_command_line(tmp_path, capsys):
    path = _scenario(tmp_path, "fixtures_models:tiny_net")
    _fails(["simulate", str(path), "--no-progress"], capsys, "only with --allow-code")
    assert main(["simulate", str(path), "--no-progress", "--allow-code"]) == 0
    assert "mean delay" in capsys.readouterr().out


def test_a_scenario_may_name_a_layer_graph_json(tmp_path, capsys):
    assert main(["graph", *TINY, "--json"]) == 0
    (tmp_path / "tiny.json").write_text(capsys.readouterr().out)
    scenario = yaml.safe_load(_scenario(tmp_path, "tiny.json").read_text())
    del scenario["users"][0]["input_shape"]  # a graph JSON has its own shapes
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    assert main(["simulate", str(tmp_path / "s.yaml"), "--no-progress"]) == 0
    assert "mean delay" in capsys.readouterr().out


@pytest.mark.parametrize(
    "model, message",
    [("os:system", "only with --allow-code"), ("rm -rf /", "is not a zoo model"), ("builtins:eval", "only with --allow-code")],
)
def test_model_fields_of_data_files_run_no_code(tmp_path, capsys, model, message):
    _fails(["simulate", str(_scenario(tmp_path, model)), "--no-progress"], capsys, message)


def test_an_environment_user_model_that_is_no_model_is_refused(tmp_path, capsys):
    env = {**ENVIRONMENT, "users": [{"name": "u", "device": "phone", "model": "$(reboot)"}]}
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(env))
    _fails(["env", "show", str(path)], capsys, "is not a zoo model")


# ----------------------------------------------------------------- output files
@pytest.fixture()
def outputs(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "a-folder.png"
    folder.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    return {"device": Path("/dev/null"), "folder": folder, "parent-is-a-file": a_file / "out.png"}


def _output_commands(path: Path) -> list[list[str]]:
    return [
        ["profile", UNTOUCHABLE, "--allow-code", "--out", str(path)],
        ["deploy", "k8s", "--env", "three-tier", "--out", str(path)],
        ["run", UNTOUCHABLE, "--allow-code", "--plot", str(path)],
        ["upload", UNTOUCHABLE, "--allow-code", "--plot", str(path)],
        ["report", "no-such-result.json", "--out", str(path)],
    ]


@pytest.mark.parametrize(
    "kind, message",
    [("device", "is not a regular file"), ("folder", "is a folder"), ("parent-is-a-file", "is not a folder")],
)
def test_outputs_never_replace_a_non_regular_file_and_every_command_checks_them_first(outputs, kind, message, capsys):
    path = outputs[kind]
    for command in _output_commands(path):
        if kind == "device" and command[0] in ("run", "upload"):
            _fails(command, capsys, "must end in")  # a plot's suffix says its format: checked first
            continue
        _fails(command, capsys, message)
    if kind == "parent-is-a-file":
        _fails(["demo", "--out", str(path.parent / "report")], capsys, message)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_missing_output_folders_are_created_by_every_command_but_only_when_it_writes(tmp_path, capsys):
    for command in _output_commands(tmp_path / "new" / "deeper" / "out.png"):
        if command[0] == "deploy":
            continue
        main(command)  # fails on its model or result, before writing anything
        capsys.readouterr()
        assert not (tmp_path / "new").exists()
    out = tmp_path / "new" / "deeper" / "workers.yaml"
    assert main(["deploy", "k8s", "--env", "three-tier", "-o", str(out)]) == 0
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == ["workers.yaml"]


def test_a_failed_write_leaves_neither_a_file_nor_a_temporary(tmp_path):
    target = tmp_path / "out.json"

    def explode(temporary: Path) -> None:
        temporary.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(TiercutError, match="No space left"):
        write_output(target, "--out", explode)
    assert list(tmp_path.iterdir()) == []
    target.write_text("old")
    with pytest.raises(TiercutError):
        write_output(target, "--out", explode)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


# ----------------------------------------------------------------- deploy keeps its token private
def test_deploy_writes_its_token_only_into_private_files_and_a_secret(tmp_path, capsys):
    out, token_file = tmp_path / "workers.yaml", tmp_path / "token"
    assert main(["deploy", "k8s", "--env", "three-tier", "-o", str(out), "--token-file", str(token_file)]) == 0
    captured = capsys.readouterr()
    assert "in clear" in captured.err  # plaintext inside the cluster is said out loud
    for path in (out, token_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = token_file.read_text().strip()
    docs = list(yaml.safe_load_all(out.read_text()))
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["stringData"]["token"] == token
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    for deployment in deployments:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert token not in json.dumps(container)  # only a reference to the Secret
        assert "--insecure" in container["args"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token", "workers.yaml"]  # no temporary left
    # the token file is reused; with a TLS secret the workers serve mutual TLS
    assert main(["deploy", "k8s", "--env", "three-tier", "--token-file", str(token_file), "--tls-secret", "worker-tls"]) == 0
    text = capsys.readouterr().out
    assert token in text and "--insecure" not in text and "/etc/tiercut-tls/tls.crt" in text
    os.chmod(token_file, 0o644)
    _fails(["deploy", "k8s", "--env", "three-tier", "--token-file", str(token_file)], capsys, "readable by others")


def test_outputs_get_the_usual_mode_and_keep_a_replaced_file_s(tmp_path):
    from tiercut.cli.checks import write_text_output

    fresh = tmp_path / "fresh.json"
    write_text_output(fresh, "--out", "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o666 & ~umask
    kept = tmp_path / "kept.json"
    kept.write_text("old")
    os.chmod(kept, 0o640)
    write_text_output(kept, "--out", "new")
    assert kept.read_text() == "new" and stat.S_IMODE(os.stat(kept).st_mode) == 0o640
