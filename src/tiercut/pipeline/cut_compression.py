"""The cut-compression step (JALAD): measure how a model's cut tensors compress and offer it to the planners.

``tiercut plan MODEL --cut-compression auto|off|int8|int4`` runs
:func:`attach_cut_compression` after the problem is built: it measures the
codecs on the model here (:func:`tiercut.profile.cut_compression.measure_cut_compression`)
and puts the options in the problem (``problem.cut_compression``), where the
planners decide per cut whether to compress (the ILP and brute force jointly
with the placement, the others by a post-pass), within
``--accuracy-loss-max``.
"""

from __future__ import annotations

from typing import Any

from tiercut.errors import TiercutError
from tiercut.pipeline.progress import SILENT, Progress
from tiercut.problem import Problem

#: ``--cut-compression`` modes besides a codec name: off (raw tensors), auto (every measured codec)
MODES = ("auto", "off")


def codec_names(mode: str) -> list[str] | None:
    """The codecs ``mode`` offers: None for off, every default codec for auto, else the comma-separated names."""
    from tiercut.profile.cut_compression import DEFAULT_CODECS

    known = [name for name, _, _ in DEFAULT_CODECS]
    mode = mode.strip()
    if mode == "off":
        return None
    if mode == "auto":
        return known
    names = [m.strip() for m in mode.split(",") if m.strip()]
    for name in names:
        if name not in known:
            raise TiercutError(f"--cut-compression {mode!r} is not known; use auto, off or codecs among {', '.join(known)}")
    if not names:
        raise TiercutError("--cut-compression is empty; use auto, off, int8 or int4")
    return names


def check_accuracy_loss_max(value: float | None) -> float | None:
    if value is not None and not (0.0 <= value <= 1.0):
        raise TiercutError(f"--accuracy-loss-max {value!r} must be a fraction in [0, 1], e.g. 0.01 for one point")
    return value


def attach_cut_compression(
    problem: Problem,
    model: Any,
    mode: str = "auto",
    *,
    accuracy_loss_max: float | None = None,
    samples: int = 8,
    progress: Progress = SILENT,
) -> Problem:
    """``problem`` with the cut-compression options ``mode`` asks for, measured on ``model`` (a model request or
    spec :func:`tiercut.graph.capture_request` takes). A problem that already carries options (a problem JSON)
    keeps its measurements, restricted to ``mode``'s codecs; ``accuracy_loss_max`` replaces its budget when given
    (default for new measurements: :data:`~tiercut.profile.cut_compression.DEFAULT_ACCURACY_LOSS_MAX`)."""
    from tiercut.profile.cut_compression import DEFAULT_ACCURACY_LOSS_MAX, measure_cut_compression

    names = codec_names(mode)
    check_accuracy_loss_max(accuracy_loss_max)
    if names is None:
        return problem.with_cut_compression(None)
    if samples < 1:
        raise TiercutError(f"cut compression needs at least 1 sample, not {samples}")
    own = problem.cut_compression
    if own is not None:
        offered = [n for n in names if n in {c.name for c in own.codecs}]
        options = own.only(offered)
        return problem.with_cut_compression(options if accuracy_loss_max is None else options.with_budget(accuracy_loss_max))
    if model is None or _is_problem_json(model):
        raise TiercutError(
            "this problem has no cut_compression measurements; plan the model itself (with --env) to measure them, "
            "or use --cut-compression off"
        )
    from tiercut.graph import ModelRequest, capture_request

    request = model if isinstance(model, ModelRequest) else ModelRequest(spec=model)
    with progress.step(f"measuring cut compression ({', '.join(names)}) of {problem.graph.model} on {samples} samples"):
        captured = capture_request(request)
        if [n.name for n in captured.graph] != [n.name for n in problem.graph]:
            raise TiercutError("cut compression measures the module graph; drop --granularity block or --cut-compression")
        measured = measure_cut_compression(captured, samples=samples, codecs=_codecs(names))
    budget = DEFAULT_ACCURACY_LOSS_MAX if accuracy_loss_max is None else accuracy_loss_max
    return problem.with_cut_compression(measured.for_problem(problem, budget))


def _codecs(names: list[str]) -> list[tuple[str, int, str]]:
    from tiercut.profile.cut_compression import DEFAULT_CODECS

    return [c for c in DEFAULT_CODECS if c[0] in names]


def _is_problem_json(model: Any) -> bool:
    from tiercut.graph import ModelRequest, is_graph_json_path

    spec = model.spec if isinstance(model, ModelRequest) else model
    return isinstance(spec, str) and is_graph_json_path(spec)


__all__ = ["MODES", "attach_cut_compression", "check_accuracy_loss_max", "codec_names"]
