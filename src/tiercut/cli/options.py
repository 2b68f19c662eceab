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
``--preprocess``       structural preprocessing steps (``merge,blocks,dominators``)
``--cut-compression``  compress the tensor at a cut (JALAD): auto, off, int8, int4
``--accuracy-loss-max`` the accuracy budget of cut compression (a fraction)
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


def preprocess_note(result: Any) -> None:
    """One stderr line on what ``--preprocess`` did (a :class:`tiercut.preprocess.Preprocessed`)."""
    if result.exact:
        typer.echo(f"tiercut: --preprocess: {result.summary()}", err=True)
    else:
        warn(f"--preprocess: {result.summary()}")


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress display on stderr")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON (docs/contracts.md)")]
OutJsonOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="write the JSON result to this file (for 'tiercut report')")
]
AlgorithmOpt = Annotated[str, typer.Option("--algorithm", help="partition planner (tiercut plan --list)")]
UploadAlgorithmOpt = Annotated[
    str, typer.Option("--upload-algorithm", help="upload planner (tiercut upload --list)")
]
PreprocessOpt = Annotated[
    str | None,
    typer.Option(
        "--preprocess",
        help="contract the graph first: a comma list of merge (exact on a problem), blocks, dominators (may lose "
        "optimality; tiercut.preprocess)",
    ),
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

CutCompressionOpt = Annotated[
    str | None,
    typer.Option(
        "--cut-compression",
        help="compress the tensor at a cut (JALAD: quantize + zstd): auto (the planner chooses int8, int4 or raw per "
        "cut), int8 or int4 (only that codec offered), off (default; a problem JSON keeps its own options)",
    ),
]
AccuracyLossMaxOpt = Annotated[
    float | None,
    typer.Option(
        "--accuracy-loss-max",
        help="with --cut-compression: the summed top-1 accuracy loss the compressed cuts may cost, a fraction "
        "(default 0.01)",
    ),
]


def cut_compression_codecs(mode: str | None, accuracy_loss_max: float | None, unsupported: str | None) -> list[str] | None:
    """The codecs ``--cut-compression`` offers (None: leave the problem as it is), checked before any model work;
    ``unsupported`` names an option it cannot be combined with."""
    from tiercut.pipeline.cut_compression import check_accuracy_loss_max, codec_names

    check_accuracy_loss_max(accuracy_loss_max)
    if mode is None:
        if accuracy_loss_max is not None:
            raise TiercutError("--accuracy-loss-max bounds cut compression; add --cut-compression auto (or int8)")
        return None
    names = codec_names(mode)
    if names is not None and unsupported is not None:
        raise TiercutError(f"--cut-compression plans one model's single-user cuts; drop {unsupported} or --cut-compression")
    return names


__all__ = [
    "AccuracyLossMaxOpt",
    "AlgorithmOpt",
    "ComputeOpt",
    "CutCompressionOpt",
    "EnvOpt",
    "JsonOpt",
    "OldOffloadingOpt",
    "OldUploadOpt",
    "OutJsonOpt",
    "PreprocessOpt",
    "ProfileOpt",
    "QuietOpt",
    "SourceOpt",
    "UploadAlgorithmOpt",
    "alias",
    "cut_compression_codecs",
    "emit_json",
    "option_group",
    "preprocess_note",
    "progress_for",
    "warn",
]
