"""What the exits CLI tests share: the digits CNN, an exits file trained on it, and a CLI call's outcome."""

from __future__ import annotations

from pathlib import Path

from tiercut.cli import main

CNN = "tiercut.exits.models:digits_cnn"


def add_exits(directory: Path, epochs: int) -> Path:
    """``tiercut exits add`` on the digits CNN (exits after ``_1`` and ``_4``), trained ``epochs`` epochs."""
    out = directory / "cnn.exits.json"
    assert main(["exits", "add", CNN, "--after", "_1,_4", "--out", str(out), "--epochs", str(epochs)]) == 0
    return out


def run(capsys, *args: str) -> tuple[int, str, str]:
    """The exit code, stdout and stderr of ``tiercut ARGS``."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
