"""Run an ONNX model whole, per layer-graph node, or split by a placement, in onnxruntime.

The layer graph of an ``.onnx`` file (:func:`tiercut.graph.onnx_import.onnx_graph`)
names one node per kept ONNX node; constants folded into a reader are
recomputed wherever they are needed. A set of layer-graph nodes becomes a
runnable ONNX model with ``onnx.utils.Extractor``: its inputs are the
activations (graph inputs or outputs of kept nodes outside the set) its
nodes read, its outputs the tensors of its nodes that a node outside the set
reads or that are graph outputs; the extractor adds the initializers and
constant nodes they need. Each such piece runs in its own
``onnxruntime.InferenceSession`` (CPU).

:func:`split_onnx` cuts the model into maximal runs of consecutive nodes (in
topological order) on one device and checks, like
:func:`tiercut.graph.split.split_by_placement`, that running the pieces one
after the other gives the whole model's outputs on the example inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph


@dataclass(frozen=True)
class OnnxPiece:
    """A runnable part of an ONNX model: its model bytes and the tensors it takes and gives."""

    nodes: tuple[str, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    model_bytes: bytes
    device: str = ""

    def session(self, threads: int = 1) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        return ort.InferenceSession(self.model_bytes, options, providers=["CPUExecutionProvider"])


@dataclass
class OnnxModel:
    """An ONNX model ready to run: the file's model (shapes inferred), its layer graph and example inputs.

    Attributes:
        path: the file.
        model: the ``ModelProto`` with weights and inferred shapes.
        graph: its layer graph (module granularity).
        example_inputs: real graph input name -> numpy array.
    """

    path: Path
    model: Any
    graph: LayerGraph
    example_inputs: dict[str, Any]
    _analysis: Any = field(default=None, repr=False)
    _extractor: Any = field(default=None, repr=False)

    # ----------------------------------------------------------- node sets -> tensors
    def _kept_indices(self, names: Sequence[str]) -> set[int]:
        index = {key: i for i, key in enumerate(self._analysis.keys)}
        out: set[int] = set()
        for name in names:
            node = self.graph[name]
            if node.is_input:
                continue
            out |= {index[m] for m in node.members if m in index and self._analysis.kept[index[m]]}
        return out

    def boundary(self, names: Sequence[str]) -> tuple[list[str], list[str]]:
        """(input tensors, output tensors) of the layer-graph nodes ``names`` run together."""
        a = self._analysis
        inside = self._kept_indices(names)
        produced = {o for i in inside for o in a.nodes[i].output if o}
        inputs: list[str] = []
        for i in sorted(inside):
            for tensor in a.reads(i):
                if not tensor or tensor in produced:
                    continue
                j = a.producer.get(tensor)
                if tensor in a.inputs or (j is not None and a.kept[j]):
                    inputs.append(tensor)
        readers_outside = {
            t for j, keep in enumerate(a.kept) if keep and j not in inside for t in a.reads(j) if t in produced
        }
        outputs = [t for i in sorted(inside) for t in a.nodes[i].output
                   if t and (t in a.outputs or t in readers_outside)]
        return list(dict.fromkeys(inputs)), list(dict.fromkeys(outputs))

    def piece(self, names: Sequence[str], device: str = "") -> OnnxPiece:
        """The runnable ONNX model of the layer-graph nodes ``names``."""
        import onnx.utils

        inputs, outputs = self.boundary(names)
        if not outputs:  # a node whose result nobody reads (profiled alone): its own outputs
            outputs = [o for i in sorted(self._kept_indices(names)) for o in self._analysis.nodes[i].output if o]
        if self._extractor is None:
            self._extractor = onnx.utils.Extractor(self.model)
        try:
            sub = self._extractor.extract_model(inputs, outputs)
        except Exception as exc:
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TiercutError(f"cannot cut {self.path.name} at nodes {', '.join(names[:3])}: {line[:160]}") from None
        return OnnxPiece(tuple(names), tuple(inputs), tuple(outputs), sub.SerializeToString(), device)

    def whole(self) -> OnnxPiece:
        a = self._analysis
        return OnnxPiece(tuple(n.name for n in self.graph), tuple(a.inputs), tuple(a.outputs), self.model.SerializeToString())


def _example_inputs(model: Any, names: Sequence[str], seed: int) -> dict[str, Any]:
    import onnx.helper
    import torch

    from tiercut.graph.model_spec import InputSpec

    declared = {vi.name: vi for vi in model.graph.input}
    generator = torch.Generator().manual_seed(seed)
    feeds: dict[str, Any] = {}
    for name in names:
        tensor_type = declared[name].type.tensor_type
        shape = tuple(d.dim_value for d in tensor_type.shape.dim)
        if not shape or any(s <= 0 for s in shape):
            raise TiercutError(f"ONNX input {name!r} has no static shape {shape}; pass --input-shape")
        dtype = str(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        spec = InputSpec(name=None, dtype={"float32": "float32", "float64": "float64", "float16": "float16",
                                           "int64": "int64", "int32": "int32", "bool": "bool"}.get(dtype, "float32"),
                         shape=shape)
        feeds[name] = spec.make(generator).numpy().astype(dtype)
    return feeds


def load_onnx_model(path: str | Path, input_shape: tuple[int, ...] | None = None, *, seed: int = 0) -> OnnxModel:
    """An ONNX file with its weights, its layer graph and example inputs (``input_shape``: its first input's)."""
    import onnx

    from tiercut.graph.onnx_import import _analyse, _load, _set_input_shape, onnx_graph

    path = Path(path)
    graph = onnx_graph(path, input_shape)
    _load(path)  # one-line errors for a missing or broken file
    model = onnx.load(str(path))
    initializer_names = {t.name for t in model.graph.initializer}
    real_inputs = [vi for vi in model.graph.input if vi.name not in initializer_names]
    if input_shape is not None:
        _set_input_shape(model, real_inputs[0], tuple(input_shape), path)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise TiercutError(f"shape inference fails on {path.name}: {str(exc).splitlines()[0][:160]}") from None
    analysis = _analyse(model.graph, path)
    return OnnxModel(path, model, graph, _example_inputs(model, analysis.inputs, seed), _analysis=analysis)


@dataclass
class OnnxSplit:
    """An ONNX model cut into pieces by a placement, each run in its own onnxruntime session."""

    model: OnnxModel
    pieces: list[OnnxPiece]
    _sessions: list[Any] = field(default_factory=list, repr=False)

    @property
    def devices(self) -> list[str]:
        return list(dict.fromkeys(p.device for p in self.pieces))

    def run(self, feeds: Mapping[str, Any]) -> list[Any]:
        """The graph outputs (in the file's order) of running every piece in turn on ``feeds``."""
        if not self._sessions:
            self._sessions = [p.session() for p in self.pieces]
        values = dict(feeds)
        for piece, session in zip(self.pieces, self._sessions):
            missing = [n for n in piece.input_names if n not in values]
            if missing:
                raise TiercutError(f"ONNX piece on {piece.device} needs tensor {missing[0]!r}, which no earlier piece gives")
            results = session.run(list(piece.output_names), {n: values[n] for n in piece.input_names})
            values.update(zip(piece.output_names, results))
        return [values[name] for name in self.model._analysis.outputs]


def run_whole(model: OnnxModel, feeds: Mapping[str, Any] | None = None) -> list[Any]:
    """The outputs of the whole ONNX model in onnxruntime."""
    session = model.whole().session()
    return session.run(None, dict(feeds if feeds is not None else model.example_inputs))


def split_onnx(model: OnnxModel, placement: Mapping[str, str], *, verify: bool = True) -> OnnxSplit:
    """Cut ``model`` by ``placement`` (layer-graph node -> device) into runs of consecutive nodes per device.

    Requires every layer-graph node placed. Ensures (``verify``) the pieces run
    in turn give the whole model's outputs on the example inputs (rtol 1e-4, atol 1e-5).
    """
    import numpy as np

    missing = [n.name for n in model.graph if n.name not in placement]
    if missing:
        raise TiercutError(f"placement misses node {missing[0]!r} of {model.path.name}; place every node")
    runs: list[tuple[str, list[str]]] = []
    for node in model.graph:
        if node.is_input:
            continue
        device = placement[node.name]
        if runs and runs[-1][0] == device:
            runs[-1][1].append(node.name)
        else:
            runs.append((device, [node.name]))
    split = OnnxSplit(model, [model.piece(names, device) for device, names in runs])
    if verify:
        expected = run_whole(model)
        got = split.run(model.example_inputs)
        for index, (a, b) in enumerate(zip(got, expected)):
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True):
                raise TiercutError(f"the split {model.path.name} differs from the whole model at output {index}")
    return split


__all__ = ["OnnxModel", "OnnxPiece", "OnnxSplit", "load_onnx_model", "run_whole", "split_onnx"]
