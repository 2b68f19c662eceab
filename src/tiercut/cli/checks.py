"""Checks every command applies to its options before any model work, and safe output files.

* :func:`check_finite`: a float option is a finite number in range (typer
  reads ``nan`` and ``inf`` as floats);
* :func:`check_output_path` and :func:`write_output`: an output file
  (``--out``, ``--output``, ``--plot``) must be a regular file or not exist
  yet; missing parent folders are created (as ``mkdir -p``, and only when
  the file is written, so a command that fails creates nothing), but a
  parent that exists must be a folder. The file is written to a temporary
  file in the same folder and renamed over the target, so a failure leaves
  neither a half-written file nor a ``.tmp`` behind, and a device node, a
  folder or a symbolic link to one is never replaced. Every command checks
  its outputs this way before any model work.
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from tiercut.errors import TiercutError


def check_finite(option: str, value: float | None, *, positive: bool = False, minimum: float | None = None) -> None:
    """Raise a one-line error unless ``value`` (when given) is finite, > 0 if ``positive``, >= ``minimum``."""
    if value is None:
        return
    if not math.isfinite(value):
        raise TiercutError(f"{option} {value} is not a finite number")
    if positive and not value > 0:
        raise TiercutError(f"{option} {value} must be > 0")
    if minimum is not None and value < minimum:
        raise TiercutError(f"{option} {value} must be >= {minimum:g}")


def check_output_path(path: Path, option: str) -> Path:
    """``path`` if it can be written as an output file: a regular file or absent, under folders (or none yet)."""
    path = Path(path)
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise TiercutError(f"{ancestor} in {option} {path} is not a folder; give a path under folders")
    try:
        mode = os.stat(path).st_mode  # follows a symbolic link: its target must be a regular file too
    except FileNotFoundError:
        if path.is_symlink():
            raise TiercutError(f"{option} {path} is a dangling symbolic link; give a regular file path") from None
        return path
    except OSError as exc:
        raise TiercutError(f"cannot use {option} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, pipe or socket)"
        raise TiercutError(f"{option} {path} is {kind}; give the path of a regular file")
    return path


PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def check_plot_path(path: Path, option: str = "--plot") -> Path:
    """:func:`check_output_path` for a figure, whose suffix says its format."""
    if Path(path).suffix.lower() not in PLOT_SUFFIXES:
        raise TiercutError(f"plot file {path} must end in {', '.join(PLOT_SUFFIXES[:-1])} or {PLOT_SUFFIXES[-1]}")
    return check_output_path(path, option)


def write_output(path: Path, option: str, write: Callable[[Path], None], *, mode: int | None = None) -> None:
    """Write an output file atomically: ``write(temporary)`` in the same folder, then rename it over ``path``.

    ``mode`` (e.g. ``0o600``) is set on the temporary file before any byte is
    written. Nothing is left behind if ``write`` fails.
    """
    path = check_output_path(path, option)
    target = path.resolve() if path.is_symlink() else path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TiercutError(f"cannot create the folder of {option} {path}: {exc.strerror or exc}") from None
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}")
    temporary = Path(name)
    try:
        os.close(handle)
        os.chmod(temporary, mode if mode is not None else _default_mode(target))
        write(temporary)
        os.replace(temporary, target)
    except OSError as exc:
        raise TiercutError(f"cannot write {option} {path}: {exc.strerror or exc}") from None
    finally:
        temporary.unlink(missing_ok=True)


def _default_mode(target: Path) -> int:
    """The mode a replaced file had, or what the umask gives a new file (``mkstemp`` alone would make it 0600)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_text_output(path: Path, option: str, text: str, *, mode: int | None = None) -> None:
    """:func:`write_output` of a UTF-8 text."""
    write_output(path, option, lambda temporary: temporary.write_text(text, encoding="utf-8"), mode=mode)


__all__ = ["PLOT_SUFFIXES", "check_finite", "check_output_path", "check_plot_path", "write_output", "write_text_output"]
