"""Measuring cut compression (JALAD) here: size, accuracy and codec time of every tensor that may cross a cut.

For each layer-graph node whose output is a floating tensor, and each codec
(``int8``, ``int4``: :mod:`tiercut.runtime.cut_codec`, linear quantization
then zstd), on a batch of samples (one query each, compressed separately as
the runtime sends them):

- ``ratio``: mean bytes of the encoded blob / raw bytes of the tensor;
- the model's output with that tensor replaced by what the receiver decodes
  (the rest of the graph re-run from it, :class:`torch.fx.Interpreter` with
  the values before it kept): the *top-1 agreement* with the uncompressed
  output, its *relative error* ``||y' - y|| / ||y||`` and, with labels (the
  digits data set), the accuracies; ``accuracy_loss`` is the drop in
  accuracy with labels, else ``1 - agreement`` (random-weight models);
- the codec's encode and decode seconds per raw byte on this host.

:meth:`CutCompressionMeasurement.for_problem` turns this into a problem's
:class:`~tiercut.problem.CutCompression`: a device's codec seconds per byte
are this host's scaled by how much slower that device runs the whole model
than this host (``sum_v c(v, d) / model_s_here``), a modelling assumption
(quantization and zstd scale with the device's speed like the model does),
stated in the options' ``basis``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.problem import CutCodec, CutCompression, Problem, TensorCompression

#: the codecs measured by default: name, bits, granularity
DEFAULT_CODECS: tuple[tuple[str, int, str], ...] = (("int8", 8, "tensor"), ("int4", 4, "tensor"))
#: JALAD's budget example: at most 1 point of top-1 accuracy lost (an assumption; see benchmarks/compression.py)
DEFAULT_ACCURACY_LOSS_MAX = 0.01


@dataclass(frozen=True)
class TensorMeasurement:
    """One tensor under one codec (module docstring)."""

    node: str
    codec: str
    raw_bytes: int
    wire_bytes: float
    top1_agreement: float
    relative_error: float
    accuracy: float | None = None

    @property
    def ratio(self) -> float:
        return self.wire_bytes / max(self.raw_bytes, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node, "codec": self.codec, "raw_bytes": self.raw_bytes, "wire_bytes": self.wire_bytes,
            "ratio": self.ratio, "top1_agreement": self.top1_agreement, "relative_error": self.relative_error,
            "accuracy": self.accuracy,
        }


@dataclass(frozen=True)
class CutCompressionMeasurement:
    """What :func:`measure_cut_compression` found.

    Attributes:
        codecs: the codecs (without device figures).
        tensors: one :class:`TensorMeasurement` per node and codec.
        encode_s_per_byte, decode_s_per_byte: codec -> seconds per raw byte here.
        model_s: seconds per sample of the whole model here (the scale of :meth:`for_problem`).
        samples: how many samples each figure is over.
        reference_accuracy: the uncompressed model's accuracy (with labels).
        basis: what was measured on what.
    """

    codecs: tuple[CutCodec, ...]
    tensors: tuple[TensorMeasurement, ...]
    encode_s_per_byte: Mapping[str, float]
    decode_s_per_byte: Mapping[str, float]
    model_s: float
    samples: int
    reference_accuracy: float | None = None
    basis: str = ""
    labels: bool = field(default=False)

    def loss(self, t: TensorMeasurement) -> float:
        if t.accuracy is not None and self.reference_accuracy is not None:
            return max(0.0, self.reference_accuracy - t.accuracy)
        return 1.0 - t.top1_agreement

    def for_problem(
        self, problem: Problem, accuracy_loss_max: float | None = DEFAULT_ACCURACY_LOSS_MAX,
        codecs: Sequence[str] | None = None,
    ) -> CutCompression:
        """The problem's cut-compression options (module docstring: devices scaled by their model time)."""
        names = [c.name for c in self.codecs] if codecs is None else list(codecs)
        for name in names:
            if name not in {c.name for c in self.codecs}:
                raise TiercutError(f"codec {name!r} was not measured; measured: {', '.join(c.name for c in self.codecs)}")
        scale: dict[str, float] = {}
        for device in problem.device_names:
            rows = [problem.compute_s[n.name].get(device) for n in problem.graph if not n.is_input]
            if rows and all(r is not None for r in rows) and self.model_s > 0:
                scale[device] = sum(rows) / self.model_s  # type: ignore[arg-type]
        codecs_out = tuple(
            CutCodec(
                c.name, c.bits, c.granularity,
                {d: self.encode_s_per_byte[c.name] * f for d, f in scale.items()},
                {d: self.decode_s_per_byte[c.name] * f for d, f in scale.items()},
            )
            for c in self.codecs
            if c.name in names
        )
        nodes = {n.name for n in problem.graph}
        tensors: dict[str, dict[str, TensorCompression]] = {}
        for t in self.tensors:
            if t.codec in names and t.node in nodes:
                tensors.setdefault(t.node, {})[t.codec] = TensorCompression(t.ratio, min(1.0, self.loss(t)))
        basis = (
            f"{self.basis}; codec time per byte measured here, on each device scaled by its model time / this host's "
            f"({self.model_s * 1e3:.3g} ms) (assumption)"
        )
        return CutCompression(codecs_out, tensors, accuracy_loss_max, basis)

    def to_dict(self) -> dict[str, Any]:
        return {
            "codecs": [c.to_dict() for c in self.codecs],
            "tensors": [t.to_dict() for t in self.tensors],
            "encode_s_per_byte": dict(self.encode_s_per_byte),
            "decode_s_per_byte": dict(self.decode_s_per_byte),
            "model_s": self.model_s,
            "samples": self.samples,
            "reference_accuracy": self.reference_accuracy,
            "basis": self.basis,
        }


def single_tensor_cuts(graph: Any) -> list[str]:
    """The nodes after which a cut sends their tensor alone (every tensor produced before and needed after is
    theirs): the chain cut points Neurosurgeon and JALAD choose among, graph inputs included."""
    consumers = graph.consumers()
    position = {node.name: i for i, node in enumerate(graph)}
    last_use = {}
    for node in graph:
        uses = [position[w] for w in consumers[node.name]]
        last_use[node.name] = math.inf if node.is_output else max(uses, default=-1)
    out = []
    alive: set[str] = set()
    for i, node in enumerate(graph):
        alive = {u for u in alive if last_use[u] > i}
        if last_use[node.name] > i:
            alive.add(node.name)
        if alive == {node.name} and i < len(graph) - 1:
            out.append(node.name)
    return out


def _spread(names: list[str], limit: int) -> list[str]:
    """At most ``limit`` of ``names``, evenly spaced, the first kept."""
    if len(names) <= limit:
        return names
    step = len(names) / limit
    return [names[int(i * step)] for i in range(limit)]


def _output_fx_name(captured: Any, layer: str) -> str | None:
    """The fx node that holds layer-graph node ``layer``'s output (its own name at module granularity)."""
    gm = captured.graph_module
    by_name = {n.name: n for n in gm.graph.nodes}
    if layer in by_name:
        return layer
    owned = [n for n in gm.graph.nodes if captured.owner.get(n.name) == layer]
    for n in reversed(owned):
        if any(captured.owner.get(u.name) != layer for u in n.users):
            return n.name
    return None


def _top1(out: Any, n: int) -> Any:
    return out.reshape(n, -1).argmax(dim=1)


def _first_tensor(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out:
        return _first_tensor(out[0])
    if isinstance(out, dict) and out:
        return _first_tensor(next(iter(out.values())))
    raise TiercutError("the model's output holds no tensor; cut compression measures a tensor output")


def _model_seconds(gm: Any, batch: tuple[Any, ...], repeats: int = 5) -> float:
    """Least seconds of one sample through the whole model here, of ``repeats`` runs (what the codec times are
    scaled against; the least, as the host's speed when nothing else runs)."""
    import torch

    one = tuple(x[:1] if isinstance(x, torch.Tensor) and x.dim() else x for x in batch)
    times = []
    with torch.no_grad():
        gm(*one)
        for _ in range(repeats):
            start = time.perf_counter()
            gm(*one)
            times.append(time.perf_counter() - start)
    return min(times)


def sample_inputs(captured: Any, samples: int, seed: int = 0) -> tuple[Any, ...]:
    """``samples`` random inputs like the captured example inputs (floats: standard normal, seeded; others repeated)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    out = []
    for example in captured.example_inputs:
        if isinstance(example, torch.Tensor) and example.is_floating_point():
            out.append(torch.randn((samples, *example.shape[1:]), generator=generator, dtype=example.dtype))
        elif isinstance(example, torch.Tensor):
            out.append(example[:1].repeat(samples, *([1] * (example.dim() - 1))))
        else:
            out.append(example)
    return tuple(out)


def measure_cut_compression(
    captured: Any,
    inputs: tuple[Any, ...] | None = None,
    *,
    labels: Any = None,
    samples: int = 16,
    codecs: Sequence[tuple[str, int, str]] = DEFAULT_CODECS,
    nodes: Sequence[str] | None = None,
    max_nodes: int = 24,
    seed: int = 0,
    basis: str = "",
) -> CutCompressionMeasurement:
    """Measure every codec on every floating output tensor of ``captured`` (a :class:`tiercut.graph.CapturedModel`).

    ``inputs``: a batch (dimension 0: samples) for the model's inputs; default ``samples`` random ones
    (:func:`sample_inputs`). ``labels``: the true classes of the batch (then the loss is in accuracy).
    ``nodes``: these layer-graph nodes (default: the :func:`single_tensor_cuts`, at most ``max_nodes`` of them
    evenly spread; every other tensor then travels raw). Each (node, codec) re-runs the graph after the node on
    the batch, so the time grows with both.
    """
    import torch
    import torch.fx

    from tiercut.runtime.cut_codec import CutCodecError, decode_tensor, encode_tensor, roundtrip

    if not codecs:
        raise TiercutError("give at least one codec to measure, e.g. int8")
    specs = tuple(CutCodec(name, bits, granularity) for name, bits, granularity in codecs)
    batch = sample_inputs(captured, samples, seed) if inputs is None else tuple(inputs)
    gm = captured.graph_module
    n = int(_first_tensor(batch).shape[0])
    fx_nodes = list(gm.graph.nodes)
    order = {node.name: i for i, node in enumerate(fx_nodes)}
    values: dict[Any, Any] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node: Any) -> Any:
            out = super().run_node(node)
            values[node] = out
            return out

    with torch.no_grad():
        reference = _first_tensor(Recorder(gm).run(*batch))
        model_s = _model_seconds(gm, batch)
    ref_top1 = _top1(reference, n)
    ref_norm = float(reference.float().norm()) or 1.0
    label_tensor = None if labels is None else torch.as_tensor(labels)
    reference_accuracy = None if label_tensor is None else float((ref_top1 == label_tensor).float().mean())
    wanted = _spread(single_tensor_cuts(captured.graph), max_nodes) if nodes is None else list(nodes)
    enc_s = dict.fromkeys((c.name for c in specs), 0.0)
    dec_s = dict.fromkeys((c.name for c in specs), 0.0)
    coded = dict.fromkeys((c.name for c in specs), 0)
    found: list[TensorMeasurement] = []
    for layer in wanted:
        fx_name = _output_fx_name(captured, layer)
        if fx_name is None:
            continue
        target = next(node for node in fx_nodes if node.name == fx_name)
        value = values.get(target)
        if not (isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() >= 1 and value.shape[0] == n):
            continue
        before = {node: v for node, v in values.items() if order[node.name] < order[fx_name]}
        raw = value[:1].numel() * value.element_size()
        for spec in specs:
            try:
                blobs = []
                for i in range(n):
                    start = time.perf_counter()
                    blobs.append(encode_tensor(value[i : i + 1], spec.bits, spec.granularity))
                    enc_s[spec.name] += time.perf_counter() - start
                    start = time.perf_counter()
                    decode_tensor(blobs[-1], max_elements=value[i : i + 1].numel())
                    dec_s[spec.name] += time.perf_counter() - start
                coded[spec.name] += raw * n
                received = roundtrip(value, spec.bits, spec.granularity)
            except CutCodecError:
                continue  # e.g. a tensor with inf: sent raw, no option
            with torch.no_grad():
                out = _first_tensor(torch.fx.Interpreter(gm).run(*batch, initial_env={**before, target: received}))
            top1 = _top1(out, n)
            found.append(
                TensorMeasurement(
                    node=layer,
                    codec=spec.name,
                    raw_bytes=raw,
                    wire_bytes=sum(len(b) for b in blobs) / n,
                    top1_agreement=float((top1 == ref_top1).float().mean()),
                    relative_error=float((out.float() - reference.float()).norm()) / ref_norm,
                    accuracy=None if label_tensor is None else float((top1 == label_tensor).float().mean()),
                )
            )
    if not found:
        raise TiercutError(f"no tensor of {captured.graph.model!r} could be compressed (no floating tensor outputs)")
    per_byte = {k: enc_s[k] / coded[k] for k in enc_s if coded[k]}
    per_byte_dec = {k: dec_s[k] / coded[k] for k in dec_s if coded[k]}
    return CutCompressionMeasurement(
        codecs=tuple(c for c in specs if c.name in per_byte),
        tensors=tuple(found),
        encode_s_per_byte=per_byte,
        decode_s_per_byte=per_byte_dec,
        model_s=model_s,
        samples=n,
        reference_accuracy=reference_accuracy,
        basis=basis or f"measured on {n} {'labelled' if labels is not None else 'random'} samples of {captured.graph.model}",
        labels=labels is not None,
    )


__all__ = [
    "DEFAULT_ACCURACY_LOSS_MAX",
    "DEFAULT_CODECS",
    "CutCompressionMeasurement",
    "TensorMeasurement",
    "measure_cut_compression",
    "sample_inputs",
    "single_tensor_cuts",
]
