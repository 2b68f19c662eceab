"""The profile step: time every node of a model alone on this host, and the whole model.

A torch model is timed in torch (:func:`tiercut.profile.measure_profile`); an
``.onnx`` file node by node in onnxruntime
(:func:`tiercut.profile.onnx_measure.measure_onnx_profile`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tiercut.graph import ModelRequest, is_onnx_path
from tiercut.pipeline.model import capture, model_request
from tiercut.pipeline.progress import SILENT, Progress


def profile(
    model: Any,
    input_shape: tuple[int, ...] | None = None,
    *,
    example_inputs: tuple[Any, ...] | None = None,
    inputs: Sequence[Any] | None = None,
    granularity: str = "module",
    leaf_modules: Sequence[str] = (),
    open_modules: Sequence[str] = (),
    allow_code: bool = False,
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
    ``model``: anything :func:`tiercut.pipeline.capture` takes (a :class:`ModelRequest` too),
    or an ``.onnx`` file (profiled in onnxruntime on the CPU, wall clock, module granularity;
    ``input_shape`` or one input spec sets its first input's shape).
    """
    from tiercut.errors import TiercutError
    from tiercut.profile import measure_profile
    from tiercut.profile.measure import resolve_torch_device

    if repeats < 1:
        raise TiercutError(f"--repeats {repeats} is not positive; use at least 1")
    torch_device = resolve_torch_device(torch_device)

    def tick(done: int, total: int, label: str) -> None:
        progress.advance(done, total, label)

    spec = model.spec if isinstance(model, ModelRequest) else model
    if is_onnx_path(spec):
        from tiercut.graph.onnx_run import load_onnx_model
        from tiercut.profile.onnx_measure import measure_onnx_profile

        request = model_request(model, input_shape, inputs=inputs, granularity=granularity)
        if clock not in (None, "wall") or torch_device != "cpu" or request.granularity != "module":
            raise TiercutError("an ONNX model is profiled in onnxruntime on the CPU, wall clock, module granularity")
        specs = request.inputs or ()
        if len(specs) > 1 or any(s.name is not None or s.dtype != "float32" for s in specs):
            raise TiercutError("an ONNX model takes --input-shape for its first input; its other inputs keep their shapes")
        with progress.step(f"reading {spec}"):
            onnx_model = load_onnx_model(spec, specs[0].shape if specs else None)
        with progress.step(f"profiling {onnx_model.graph.model} in onnxruntime"):
            return measure_onnx_profile(onnx_model, repeats=repeats, threads=torch_threads, progress=tick)
    captured = capture(
        model, input_shape, example_inputs=example_inputs, inputs=inputs, granularity=granularity,
        leaf_modules=leaf_modules, open_modules=open_modules, allow_code=allow_code, progress=progress,
    )
    with progress.step(f"profiling {captured.graph.model}"):
        return measure_profile(
            captured, repeats=repeats, threads=torch_threads, progress=tick, clock=clock, torch_device=torch_device
        )


__all__ = ["profile"]
