"""Progress of the pipeline's slow steps, shown on stderr while they run.

Every step that can take more than a couple of seconds (tracing a model,
predicting or measuring its compute times, planning each case, uploading,
setting a simulation up) reports through a :class:`Progress`:

- :meth:`Progress.step` ``with progress.step("tracing vgg16"): ...`` -- a
  spinner with the elapsed time while the body runs;
- :meth:`Progress.advance` ``progress.advance(done, total, label)`` -- a bar
  over counted work inside the current step;
- :meth:`Progress.log` -- one line printed above the spinner (kept in the
  terminal's scroll-back).

:data:`SILENT` shows nothing (the default of every pipeline function, so the
Python API prints nothing unless asked); :func:`terminal_progress` returns a
rich display on stderr, or :data:`SILENT` when stderr is not a terminal or
``quiet`` is set -- so piped output and ``--json`` stay clean.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


class Progress:
    """Shows nothing: the base of every progress display, and :data:`SILENT`."""

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        """A step of the pipeline called ``label`` runs inside this context."""
        yield

    def advance(self, done: float, total: float | None, label: str = "") -> None:
        """``done`` of ``total`` units of the current step are finished (``label``: what is being done)."""

    def log(self, line: str) -> None:
        """A line worth keeping (e.g. an upload confirmed)."""


SILENT = Progress()


class RichProgress(Progress):
    """A transient rich display on stderr: one line per running step, a bar when counts are known."""

    def __init__(self, console: Any | None = None) -> None:
        self._console = console
        self._bar: Any = None
        self._tasks: list[Any] = []

    def _display(self) -> Any:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console or Console(stderr=True),
                transient=True,
            )
            self._bar.start()
        return self._bar

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        bar = self._display()
        task = bar.add_task(label, total=None)
        self._tasks.append((task, label))
        try:
            yield
        finally:
            self._tasks.pop()
            bar.remove_task(task)
            if not self._tasks:
                bar.stop()
                self._bar = None

    def advance(self, done: float, total: float | None, label: str = "") -> None:
        if not self._tasks:
            return
        task, step_label = self._tasks[-1]
        description = f"{step_label}: {label}" if label else step_label
        self._display().update(task, completed=done, total=total, description=description)

    def log(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=sys.stderr)


def terminal_progress(quiet: bool = False) -> Progress:
    """A display on stderr when it is a terminal and not ``quiet``; else :data:`SILENT`."""
    if quiet or not sys.stderr.isatty():
        return SILENT
    return RichProgress()


__all__ = ["SILENT", "Progress", "RichProgress", "terminal_progress"]
