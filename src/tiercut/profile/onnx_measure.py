"""Profile an ONNX model in onnxruntime: every layer-graph node alone, and the whole model.

The same method as :func:`tiercut.profile.measure.measure_profile` for torch
models: each node is cut out of the file as its own ONNX model
(:meth:`tiercut.graph.onnx_run.OnnxModel.piece`), run in its own
onnxruntime session on the values it reads when the whole model runs on the
example inputs, and timed with the same stopping rule; the whole model is
timed in one session. The result is a :class:`~tiercut.profile.profile_file.Profile`
that plans use like a torch model's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tiercut.graph.onnx_run import OnnxModel
from tiercut.profile.profile_file import Profile


def measure_onnx_profile(
    model: OnnxModel,
    *,
    repeats: int | None = None,
    threads: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    measure_host_roofline: bool = True,
) -> Profile:
    """Time every node of ``model`` alone in onnxruntime (``threads`` intra-op threads), then the whole model."""
    from tiercut.profile.features import graph_features
    from tiercut.profile.measure import WHOLE_MODEL, profile_calls

    def calls(used: int) -> Iterator[tuple[str, Callable[[], Any]]]:
        values = dict(model.example_inputs)
        for name in graph_features(model.graph):
            piece = model.piece([name])
            session = piece.session(threads=used)
            feeds = {n: values[n] for n in piece.input_names}
            outputs = list(piece.output_names)
            values.update(zip(outputs, session.run(outputs, feeds)))
            yield name, lambda s=session, o=outputs, f=feeds: s.run(o, f)
        whole_session = model.whole().session(threads=used)
        example = dict(model.example_inputs)
        yield WHOLE_MODEL, lambda: whole_session.run(None, example)

    return profile_calls(
        model.graph, calls, input_shapes=tuple(tuple(v.shape) for v in model.example_inputs.values()),
        repeats=repeats, threads=threads, progress=progress, measure_host_roofline=measure_host_roofline,
    )


__all__ = ["measure_onnx_profile"]
