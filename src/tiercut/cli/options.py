"""The options several commands share: one flag per concept, and the old spellings as deprecated aliases.

=====================  ==============================================================
flag                   meaning (every command that has it)
=====================  ==============================================================
``--algorithm``        the partition planner (``compare``: a comma list)
``--upload-algorithm`` the upload planner
``--out`` / ``-o``     the file (or, for ``demo``, the folder) written
``--json``             print the result as JSON (the docs/contracts.md contract)
``--torch-threads``    torch intra-op threads
``--quiet`` / ``-q``   no progress display on stderr
=====================  ==============================================================

An old spelling (``--algorithms``, ``--upload``, ``--offloading``,
``--output``, ``serve --threads``, ``profile --threads``) is a hidden option
that still works and prints a one-line deprecation warning on stderr
(:func:`alias`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tiercut.errors import TiercutError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def option_group(parameter: str, group: type) -> Callable[[F], F]:
    """Give a command the options of ``group`` (a dataclass of typer options) where it declares ``parameter``.

    Typer sees one option per field of ``group`` (its ``Annotated`` type and
    default), in the place of ``parameter``; the command receives them as one
    ``group`` instance. Options several commands share are declared once, in
    the class; calling the decorated command from Python takes the fields as
    keywords too (missing ones take their defaults).
    """
    fields = dataclasses.fields(group)
    group_hints = typing.get_type_hints(group, include_extras=True)
    names = {f.name for f in fields}

    def decorate(command: F) -> F:
        hints = typing.get_type_hints(command, include_extras=True)
        signature = inspect.signature(command)
        if parameter not in signature.parameters:
            raise TypeError(f"{command.__name__} declares no parameter {parameter!r} for {group.__name__}")
        parameters: list[inspect.Parameter] = []
        for param in signature.parameters.values():
            if param.name != parameter:
                parameters.append(param.replace(annotation=hints.get(param.name, param.annotation)))
                continue
            parameters += [
                inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default,
                                  annotation=group_hints[f.name])
                for f in fields
            ]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in list(kwargs) if name in names}
            return command(*args, **kwargs, **{parameter: group(**values)})

        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": hints.get("return")}
        return wrapper  # type: ignore[return-value]

    return decorate


def warn(message: str) -> None:
    """A one-line warning on stderr."""
    typer.echo(f"tiercut: warning: {message}", err=True)


def alias(value: T, old_value: T | None, *, new: str, old: str, default: T) -> T:
    """``value`` of ``new``, or ``old_value`` of the deprecated ``old`` (with a warning); both given is an error."""
    if old_value is None:
        return value
    warn(f"{old} is deprecated; use {new}")
    if value != default and value != old_value:
        raise TiercutError(f"give {new} only, not also the deprecated {old}")
    return old_value


def progress_for(quiet: bool) -> Any:
    """The pipeline's progress display: on stderr when it is a terminal, unless ``--quiet``."""
    from tiercut.pipeline.progress import terminal_progress

    return terminal_progress(quiet)


def emit_json(payload: Any, out: Path | None) -> None:
    """Print ``payload`` as JSON, or write it to ``out`` (atomically) and say where."""
    text = json.dumps(payload, indent=1)
    if out is None:
        typer.echo(text)
        return
    from tiercut.cli.checks import write_text_output

    write_text_output(out, "--out", text + "\n")
    typer.echo(f"wrote {out}", err=True)


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress display on stderr")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON (docs/contracts.md)")]
OutJsonOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="write the JSON result to this file (for 'tiercut report')")
]
AlgorithmOpt = Annotated[str, typer.Option("--algorithm", help="partition planner (tiercut plan --list)")]
UploadAlgorithmOpt = Annotated[
    str, typer.Option("--upload-algorithm", help="upload planner (tiercut upload --list)")
]
OldOffloadingOpt = Annotated[
    str | None, typer.Option("--offloading", hidden=True, help="deprecated: --algorithm")
]
OldUploadOpt = Annotated[str | None, typer.Option("--upload", hidden=True, help="deprecated: --upload-algorithm")]
EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env", help="environment preset (tiercut env list) or YAML/JSON file (default three-tier; a problem JSON has its own)"
    ),
]
SourceOpt = Annotated[str | None, typer.Option(help="source device (default: the environment's first user's device)")]
ProfileOpt = Annotated[Path | None, typer.Option("--profile", help="a per-node profile file of this host (tiercut profile)")]
ComputeOpt = Annotated[
    Path | None, typer.Option("--compute-table", help="JSON node -> device -> seconds to use instead of the profiler")
]

__all__ = [
    "AlgorithmOpt",
    "ComputeOpt",
    "EnvOpt",
    "JsonOpt",
    "OldOffloadingOpt",
    "OldUploadOpt",
    "OutJsonOpt",
    "ProfileOpt",
    "QuietOpt",
    "SourceOpt",
    "UploadAlgorithmOpt",
    "alias",
    "emit_json",
    "option_group",
    "progress_for",
    "warn",
]
