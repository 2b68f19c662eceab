"""``tiercut schema env|scenario``: the JSON Schema of environment and scenario files, for editors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiercut.cli.checks import write_text_output
from tiercut.errors import TiercutError
from tiercut.serialization import SCHEMA_KINDS, file_schema


def schema(
    kind: Annotated[str, typer.Argument(help="env (environment files), scenario (simulation scenarios) or grid (sweeps)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the schema to this file instead of printing it")] = None,
) -> None:
    """Print (or write) the JSON Schema of environment or scenario files, for editor completion and checking.

    Point a YAML file at it with a first line ``# yaml-language-server: $schema=PATH``
    (the YAML language server of VS Code, Neovim, Helix...).
    """
    if kind not in SCHEMA_KINDS:
        raise TiercutError(f"no schema for {kind!r}; use one of {', '.join(SCHEMA_KINDS)}")
    text = json.dumps(file_schema(kind), indent=1) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    write_text_output(out, "--out", text)
    typer.echo(f"wrote the {kind} schema to {out}", err=True)
