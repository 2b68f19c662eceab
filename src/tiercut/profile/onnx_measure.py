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

import os
import time
from collections.abc import Callable

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
    from tiercut.profile.host import describe_host, load_average, measure_host
    from tiercut.profile.measure import StoppingRule, assess_quality, repeat_until_stable, thread_count, wall_timer
    from tiercut.profile.profile_file import NodeProfile

    rule = StoppingRule()
    if repeats is not None:
        rule = rule.with_max_repeats(repeats)
    graph = model.graph
    features = graph_features(graph)
    total = len(features) + 1 + int(measure_host_roofline)
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, label)

    load_before = load_average()
    with thread_count(threads) as used:
        host = measure_host(used, timer=wall_timer) if measure_host_roofline else describe_host(used)
        if measure_host_roofline:
            tick("host roofline")
        values = dict(model.example_inputs)
        nodes: dict[str, NodeProfile] = {}
        for name, feats in features.items():
            piece = model.piece([name])
            session = piece.session(threads=used)
            feeds = {n: values[n] for n in piece.input_names}
            outputs = list(piece.output_names)
            values.update(zip(outputs, session.run(outputs, feeds)))
            timing = repeat_until_stable(lambda s=session, o=outputs, f=feeds: s.run(o, f), rule, wall_timer)
            nodes[name] = NodeProfile(name=name, features=feats, timing=timing)
            tick(name)
        whole_session = model.whole().session(threads=used)
        example = dict(model.example_inputs)
        whole = repeat_until_stable(lambda: whole_session.run(None, example), rule, wall_timer)
        tick("whole model")
    quality = assess_quality(
        [n.timing for n in nodes.values()], whole, load_before=load_before, load_after=load_average(),
        cpus=os.cpu_count() or 0, threads=used, clock="wall",
    )
    return Profile(
        model=graph.model,
        granularity=graph.granularity,
        input_shapes=tuple(tuple(v.shape) for v in model.example_inputs.values()),
        host=host,
        rule=rule,
        nodes=nodes,
        whole_model=whole,
        clock="wall",
        created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        quality=quality,
    )


__all__ = ["measure_onnx_profile"]
