"""The profile step: time every node of a model alone on this host, and the whole model."""

from __future__ import annotations

from typing import Any

from tiercut.pipeline.model import capture
from tiercut.pipeline.progress import SILENT, Progress


def profile(
    model: Any,
    input_shape: tuple[int, ...] | None = None,
    *,
    example_inputs: tuple[Any, ...] | None = None,
    granularity: str = "module",
    repeats: int = 30,
    torch_threads: int | None = None,
    clock: str | None = None,
    torch_device: str = "cpu",
    progress: Progress = SILENT,
) -> Any:
    """A :class:`tiercut.profile.Profile` of ``model`` measured here (``tiercut profile``).

    ``repeats``: at most this many timed samples per node (fewer once the
    median is stable); ``torch_threads``: intra-op threads to measure at;
    ``clock``: ``wall``, ``cpu`` (the thread's CPU time, one thread) or ``cuda``.
    """
    from tiercut.errors import TiercutError
    from tiercut.profile import measure_profile
    from tiercut.profile.measure import resolve_torch_device

    if repeats < 1:
        raise TiercutError(f"--repeats {repeats} is not positive; use at least 1")
    torch_device = resolve_torch_device(torch_device)
    captured = capture(model, input_shape, example_inputs=example_inputs, granularity=granularity, progress=progress)
    with progress.step(f"profiling {captured.graph.model}"):

        def tick(done: int, total: int, label: str) -> None:
            progress.advance(done, total, label)

        return measure_profile(
            captured, repeats=repeats, threads=torch_threads, progress=tick, clock=clock, torch_device=torch_device
        )


__all__ = ["profile"]
