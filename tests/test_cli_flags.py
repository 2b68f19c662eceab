"""One flag per concept across the commands, the deprecated spellings, --version, completion, progress, --out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml

from tiercut import __version__
from tiercut.cli import app, main

ROOT = Path(__file__).resolve().parents[1]
MODEL = "fixtures_models:tiny_net"
NODES = ("conv", "relu", "left", "right", "add", "flatten", "fc")
#: old spelling -> the one that replaced it (still accepted, hidden, with a warning)
DEPRECATED = {"--algorithms": "--algorithm", "--upload": "--upload-algorithm", "--offloading": "--algorithm",
              "--output": "--out", "--threads": "--torch-threads / --concurrent-partitions"}


def _commands(group=None, path=()):
    """(path, click command) of every leaf command."""
    group = group or typer.main.get_command(app)
    for name, command in getattr(group, "commands", {}).items():
        if getattr(command, "commands", None):
            yield from _commands(command, (*path, name))
        yield (*path, name), command


@pytest.fixture
def lab(tmp_path: Path) -> dict[str, Path]:
    env = {
        "name": "lab",
        "devices": [{"name": "phone", "tier": "end"}, {"name": "edge", "tier": "edge"}],
        "links": [{"a": "phone", "b": "edge", "bandwidth_bytes_per_s": 2.0e6, "latency_s": 0.002}],
    }
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(env))
    table = {n: {"phone": 0.02, "edge": 0.004} for n in NODES}
    (tmp_path / "times.json").write_text(json.dumps(table))
    return {"env": tmp_path / "lab.yaml", "table": tmp_path / "times.json"}


def _common(lab):
    return [MODEL, "--allow-code", "--input-shape", "1,3,8,8", "--env", str(lab["env"]), "--compute-table", str(lab["table"])]


# ---------------------------------------------------------------- one flag per concept
def test_no_command_shows_an_old_spelling_and_shared_flags_mean_one_thing():
    meanings: dict[str, set[str]] = {}
    for path, command in _commands():
        for param in command.params:
            names = [o for o in getattr(param, "opts", []) if o.startswith("--")]
            if not names or getattr(param, "hidden", False):
                continue
            for name in names:
                assert name not in DEPRECATED, f"{' '.join(path)} shows the old spelling {name}"
                meanings.setdefault(name, set()).add(param.name)
            if "--out" in names:
                assert "-o" in param.opts, f"{' '.join(path)}: --out without -o"
    # the same flag is the same parameter everywhere (one concept, one name)
    for flag in ("--algorithm", "--upload-algorithm", "--json", "--torch-threads", "--quiet"):
        assert len(meanings[flag]) == 1, (flag, meanings[flag])
    assert {"--algorithm", "--upload-algorithm", "--json", "--out", "--quiet"} <= set(meanings)


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tiercut {__version__}"


# ---------------------------------------------------------------- deprecated aliases
def test_compare_algorithms_still_works_with_a_warning(lab, capsys):
    assert main(["compare", *_common(lab), "--algorithm", "local,mincut", "--json"]) == 0
    new = json.loads(capsys.readouterr().out)
    assert main(["compare", *_common(lab), "--algorithms", "local,mincut", "--json"]) == 0
    captured = capsys.readouterr()
    assert "--algorithms is deprecated; use --algorithm" in captured.err
    old = json.loads(captured.out)
    assert list(old["plans"]) == list(new["plans"]) == ["local", "mincut"]
    assert main(["compare", *_common(lab), "--algorithm", "ilp", "--algorithms", "local"]) == 2
    assert "give --algorithm only" in capsys.readouterr().err


def test_upload_old_spellings(lab, capsys):
    assert main(["upload", *_common(lab), "--algorithm", "ionn", "--json"]) == 0  # the old meaning of --algorithm
    captured = capsys.readouterr()
    assert "use --upload-algorithm ionn" in captured.err
    assert json.loads(captured.out)["upload_plan"]["algorithm"] == "ionn"
    assert main(["upload", *_common(lab), "--offloading", "dp", "--upload-algorithm", "direct", "--json"]) == 0
    captured = capsys.readouterr()
    assert "--offloading is deprecated; use --algorithm" in captured.err
    assert json.loads(captured.out)["upload_plan"]["algorithm"] == "direct"
    assert main(["upload", *_common(lab), "--upload-algorithm", "mincut"]) == 2
    assert "that is a partition planner" in capsys.readouterr().err


def test_run_old_spellings_are_checked_before_any_work(capsys):
    assert main(["run", MODEL, "--allow-code", "--upload", "teleport"]) == 2
    err = capsys.readouterr().err
    assert "--upload is deprecated; use --upload-algorithm" in err and "upload planner 'teleport' is not known" in err
    assert main(["run", MODEL, "--allow-code", "--offloading", "magic"]) == 2
    assert "planner 'magic' is not known" in capsys.readouterr().err
    assert main(["run", MODEL, "--allow-code", "--upload-algorithm", "ionn", "--upload", "direct"]) == 2
    assert "give --upload-algorithm only" in capsys.readouterr().err


def test_profile_and_deploy_old_spellings(tmp_path, capsys):
    assert main(["profile", MODEL, "--allow-code", "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert "--threads is deprecated; use --torch-threads" in err and "--torch-threads 0 is not positive" in err
    out = tmp_path / "k8s.yaml"
    assert main(["deploy", "k8s", "--env", "three-tier", "--output", str(out)]) == 0
    assert "--output is deprecated; use --out" in capsys.readouterr().err
    assert "kind: Deployment" in out.read_text()


def test_serve_threads_became_concurrent_partitions():
    serve = dict(_commands())[("serve",)]
    by_flag = {o: p for p in serve.params for o in getattr(p, "opts", [])}
    assert by_flag["--concurrent-partitions"].help == "partitions executed concurrently"
    assert by_flag["--threads"].hidden and not by_flag["--torch-threads"].hidden


# ---------------------------------------------------------------- --out
def test_plan_out_writes_the_json_report_reads(lab, tmp_path, capsys):
    out = tmp_path / "results" / "plan.json"
    assert main(["plan", *_common(lab), "--algorithm", "dp", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "dp placement" in captured.out and f"wrote {out}" in captured.err  # the table still prints
    data = json.loads(out.read_text())
    assert data["plan"]["algorithm"] == "dp" and data["problem"]["source"] == "phone"
    assert main(["report", str(out), "-o", str(tmp_path / "plan.html")]) == 0
    assert main(["plan", *_common(lab), "--out", str(tmp_path)]) == 2  # a folder is never replaced
    assert "is a folder" in capsys.readouterr().err


# ---------------------------------------------------------------- completion
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell, capsys):
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "_TIERCUT_COMPLETE" in script and "tiercut" in script


def test_completion_of_an_unknown_shell_is_a_user_error(capsys):
    assert main(["completion", "tcsh"]) == 2
    assert "shell 'tcsh' is not supported" in capsys.readouterr().err


@pytest.mark.slow
def test_the_shell_gets_completions():
    """What the bash script asks tiercut: the commands starting with 'pl', then compare's flags (no hidden ones)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "_TIERCUT_COMPLETE": "complete_bash"}

    def complete(words: str, cword: int) -> list[str]:
        result = subprocess.run([sys.executable, "-m", "tiercut"], capture_output=True, text=True,
                                env={**env, "COMP_WORDS": words, "COMP_CWORD": str(cword)}, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("tiercut pl", 1) == ["plan"]
    assert complete("tiercut compare --alg", 2) == ["--algorithm"]  # not the deprecated --algorithms


# ---------------------------------------------------------------- progress
def test_progress_is_silent_when_quiet_or_piped(monkeypatch):
    from tiercut.pipeline.progress import SILENT, RichProgress, terminal_progress

    assert terminal_progress(quiet=True) is SILENT
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert terminal_progress() is SILENT
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert isinstance(terminal_progress(), RichProgress)
    assert terminal_progress(quiet=True) is SILENT


def test_rich_progress_shows_nested_steps_counts_and_log_lines():
    from rich.console import Console

    from tiercut.pipeline.progress import RichProgress

    console = Console(record=True, force_terminal=True, width=100)
    progress = RichProgress(console)
    with progress.step("comparing planners"):
        with progress.step("tracing tiny"):
            pass
        progress.advance(2, 5, "ilp")
        assert progress._bar.tasks[0].completed == 2 and progress._bar.tasks[0].total == 5
        assert progress._bar.tasks[0].description == "comparing planners: ilp"
        progress.log("uploaded edge#1")
    assert progress._bar is None  # the display stops with the last step
    assert "uploaded edge#1" in console.export_text()


def test_a_command_reports_progress_on_every_slow_step(lab, monkeypatch, capsys):
    """plan: tracing, predicting the compute table, planning -- each a step of the display."""
    from tiercut.pipeline.progress import Progress

    steps: list[str] = []

    class Recorder(Progress):
        def step(self, label):
            steps.append(label)
            return super().step(label)

    from tiercut.cli import plan_cmd

    monkeypatch.setattr(plan_cmd, "progress_for", lambda quiet: Recorder())
    assert main(["plan", MODEL, "--allow-code", "--input-shape", "1,3,8,8", "--env", str(lab["env"]), "--algorithm", "ilp"]) == 0
    capsys.readouterr()
    assert [s.split()[0] for s in steps] == ["tracing", "predicting", "planning"], steps
