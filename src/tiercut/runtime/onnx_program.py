"""An ``.onnx`` file run split over real workers: its partitions as ``onnx`` programs.

A torch model reaches the runtime as a captured fx graph
(:class:`~tiercut.graph.capture.CapturedModel`) whose partitions are
exported to programs (:mod:`tiercut.runtime.artifact`). An ONNX file has no
torch model; :class:`OnnxCaptured` stands in for the captured model on the
client: its layer graph (:func:`tiercut.graph.onnx_import.onnx_graph`), its
example inputs as tensors, the whole model as a callable (the reference
``--verify`` compares with), and :meth:`OnnxCaptured.split`, which cuts it
by a placement (:func:`tiercut.graph.onnx_run.split_onnx`: runs of
consecutive nodes on one device, checked to give the whole model's outputs)
into :class:`OnnxPartition` objects that the runtime runs like
:class:`~tiercut.graph.split.Partition` (named values in, named values out).

A partition becomes a program (:func:`pack_piece`) in the ``onnx`` format a
worker started with ``--allow-onnx`` runs (:func:`~tiercut.runtime.artifact.load_program`):
the piece's ONNX model with its tensors renamed (inputs ``input_<i>``,
outputs ``output_<i>``, the rest ``v<k>``/``w<k>``: file names never reach a
worker), its initializers moved to the weight store (external data that only
the worker's store satisfies) and a manifest of its inputs' and outputs'
dtypes and shapes. :func:`build_onnx_program` also loads the program as a
worker would (the op-type allow-list, static shapes, the memory bound) and
checks that it answers like the piece, so a model a worker would refuse
fails on the client, in one line naming the operator, before any upload.
Nothing is pickled on either side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph.onnx_run import OnnxModel, OnnxPiece, load_onnx_model, split_onnx
from tiercut.graph.split import InputSpec, OutputSpec, SplitModel
from tiercut.graph.types import LayerGraph
from tiercut.runtime.artifact import (
    ArtifactError,
    BuiltProgram,
    ProgramManifest,
    TensorSpec,
    initializers_to_store,
    load_program,
    make_program,
)
from tiercut.runtime.codec import flatten_value


def _tensor(array: Any) -> Any:
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))


def _array(value: Any) -> Any:
    import torch

    return value.detach().contiguous().numpy() if isinstance(value, torch.Tensor) else value


@dataclass(eq=False)
class OnnxPartition:
    """One runnable piece of a split ONNX model, run in onnxruntime on the client.

    Attributes are those of :class:`~tiercut.graph.split.Partition` (``index``,
    ``device``, ``input_names``, ``output_names``: ONNX tensor names, ``nodes``),
    plus the piece (its ONNX model bytes).
    """

    index: int
    device: str
    piece: OnnxPiece
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    nodes: tuple[str, ...]
    param_bytes: int = 0
    _session: Any = field(default=None, init=False, repr=False)

    def run(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Run on named tensors (at least ``input_names``); returns ``output_names`` -> tensor."""
        import torch

        missing = [name for name in self.input_names if name not in values]
        if missing:
            raise TiercutError(f"ONNX partition {self.index} on {self.device!r} needs value {missing[0]!r}; pass it")
        if self._session is None:
            self._session = self.piece.session(threads=max(1, torch.get_num_threads()))
        results = self._session.run(list(self.output_names), {n: _array(values[n]) for n in self.input_names})
        return {name: _tensor(array) for name, array in zip(self.output_names, results)}


@dataclass(eq=False)
class OnnxCaptured:
    """An ONNX model as the runtime's client holds it: what a captured fx graph is for a torch model.

    Attributes:
        model: the loaded ONNX model (weights, inferred shapes, layer graph, example inputs).
        method: ``"onnx"`` (a torch model's is ``"fx"`` or ``"export"``).
    """

    model: OnnxModel
    method: str = "onnx"
    _whole: Any = field(default=None, init=False, repr=False)

    @property
    def graph(self) -> LayerGraph:
        return self.model.graph

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.model._analysis.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self.model._analysis.outputs)

    @property
    def example_inputs(self) -> tuple[Any, ...]:
        """The example inputs as tensors, in the graph inputs' order."""
        return tuple(_tensor(self.model.example_inputs[name]) for name in self.input_names)

    @property
    def graph_module(self) -> Any:
        """The whole model as a callable on tensors (what the split's outputs are checked against)."""
        return self.run

    def run(self, *inputs: Any) -> Any:
        """The whole model's output on ``inputs`` (one tensor, or a tuple for several outputs)."""
        if self._whole is None:
            self._whole = self.model.whole().session()
        results = self._whole.run(None, dict(zip(self.input_names, (_array(x) for x in inputs))))
        outputs = tuple(_tensor(r) for r in results)
        return outputs[0] if len(outputs) == 1 else outputs

    def output_spec(self) -> OutputSpec:
        names = self.output_names
        if len(names) == 1:
            return OutputSpec(kind="value", name=names[0])
        return OutputSpec(kind="tuple", items=tuple(OutputSpec(kind="value", name=n) for n in names))

    def split(self, placement: Mapping[str, str]) -> SplitModel:
        """The model cut by ``placement`` (layer-graph node -> device), checked against the whole model."""
        cut = split_onnx(self.model, placement, verify=True)
        partitions = tuple(
            OnnxPartition(i, piece.device, piece, piece.input_names, piece.output_names, piece.nodes)
            for i, piece in enumerate(cut.pieces)
        )
        producers = {name: p.index for p in partitions for name in p.output_names}
        return SplitModel(partitions, InputSpec(names=self.input_names), self.output_spec(), dict(placement), producers)  # type: ignore[arg-type]

    def example_values(self, split: SplitModel) -> dict[str, Any]:
        """Every value ``split``'s partitions take or give, on the example inputs (tensor name -> tensor)."""
        values = dict(split.input_spec.bind(self.example_inputs))
        for partition in split.partitions:
            values.update(partition.run(values))
        return values

    def node_tensors(self) -> dict[str, list[Any]]:
        """Layer-graph node -> the initializers its ONNX nodes read (as tensors): what uploading it carries."""
        from onnx import numpy_helper

        analysis = self.model._analysis
        index = {key: i for i, key in enumerate(analysis.keys)}
        initializers = {t.name: t for t in self.model.model.graph.initializer}
        held: dict[str, list[Any]] = {}
        seen: set[str] = set()
        for node in self.graph:
            tensors = held.setdefault(node.name, [])
            for member in node.members:
                if member not in index:
                    continue
                for name in analysis.nodes[index[member]].input:
                    if name in initializers and name not in seen:
                        seen.add(name)
                        tensors.append(_tensor(numpy_helper.to_array(initializers[name]).copy()))
        return held

    def build_program(self, partition: OnnxPartition, inputs: Mapping[str, Any]) -> BuiltProgram:
        return build_onnx_program(partition.piece, inputs, index=partition.index)


def load_onnx_captured(
    path: str | Path, input_shape: tuple[int, ...] | None = None, *, granularity: str = "module", seed: int = 0
) -> OnnxCaptured:
    """An ``.onnx`` file ready to be split over workers (``input_shape``: its first input's, as for its graph)."""
    if granularity != "module":
        raise TiercutError(f"an ONNX model runs split at module granularity; drop --granularity {granularity}")
    return OnnxCaptured(load_onnx_model(path, input_shape, seed=seed))


# --------------------------------------------------------------------- pieces -> programs
def _renamed(model: Any, inputs: Sequence[str], outputs: Sequence[str]) -> tuple[Any, dict[str, str]]:
    """``model`` with every tensor renamed (``input_<i>``, ``output_<i>``, ``w<k>``, ``v<k>``) and the name map."""
    names: dict[str, str] = {"": ""}
    names.update({name: f"input_{i}" for i, name in enumerate(inputs)})
    names.update({name: f"output_{i}" for i, name in enumerate(outputs)})
    for init in model.graph.initializer:
        names.setdefault(init.name, f"w{len(names)}")
    for node in model.graph.node:
        for name in [*node.input, *node.output]:
            names.setdefault(name, f"v{len(names)}")
    graph = model.graph
    for init in graph.initializer:
        init.name = names[init.name]
    for node in graph.node:
        node.input[:] = [names[n] for n in node.input]
        node.output[:] = [names[n] for n in node.output]
        node.name = ""  # node names from the file are not needed to run
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = names.get(value.name, value.name)
    order = {f"input_{i}": i for i in range(len(inputs))}
    real = sorted((v for v in graph.input if v.name in order), key=lambda v: order[v.name])
    others = [v for v in graph.input if v.name not in order]
    del graph.input[:]
    graph.input.extend([*real, *others])
    out_order = {f"output_{i}": i for i in range(len(outputs))}
    ordered = sorted(graph.output, key=lambda v: out_order.get(v.name, len(out_order)))
    del graph.output[:]
    graph.output.extend(ordered)
    return model, names


def pack_piece(piece: OnnxPiece, inputs: Mapping[str, Any], *, index: int = 0) -> BuiltProgram:
    """A piece of an ONNX model as an ``onnx`` program: tensors renamed, weights to the store, a manifest.

    ``inputs``: each of ``piece.input_names`` -> the tensor it receives on the
    example input (the program is made for those dtypes and shapes). Does not
    check the program as a worker does; :func:`build_onnx_program` does.
    """
    import onnx

    missing = [n for n in piece.input_names if n not in inputs]
    if missing:
        raise ArtifactError(f"ONNX partition {index} needs example value {missing[0]!r} to be packed")
    model = onnx.load_from_string(piece.model_bytes)
    model, names = _renamed(model, piece.input_names, piece.output_names)
    original = {new: old for old, new in names.items()}
    weights, sources, specs = initializers_to_store(model, lambda name: original.get(name, name))
    in_leaves: list[Any] = []
    in_structures = [flatten_value(inputs[n], in_leaves) for n in piece.input_names]
    declared = {v.name: v for v in model.graph.output}
    out_specs = []
    for i in range(len(piece.output_names)):
        value = declared.get(f"output_{i}")
        if value is None:
            raise ArtifactError(f"ONNX partition {index} does not declare its output {piece.output_names[i]!r}")
        out_specs.append(_declared_spec(value, index))
    data = model.SerializeToString()
    manifest = ProgramManifest(
        program_id="",
        format="onnx",
        input_names=tuple(piece.input_names),
        output_names=tuple(piece.output_names),
        input_structures=tuple(in_structures),
        tensor_inputs=tuple(TensorSpec.of(t) for t in in_leaves),
        output_structures=tuple({"kind": "leaf", "index": i} for i in range(len(piece.output_names))),
        tensor_outputs=tuple(out_specs),
        weights={name: digest for name, (digest, _) in weights.items()},
        weight_specs=specs,
        program_bytes=len(data),
    )
    program = make_program(manifest, data)
    return BuiltProgram(program, {digest: tensor for digest, tensor in weights.values()}, sources)


def _declared_spec(value: Any, index: int) -> TensorSpec:
    """The dtype and static shape an ONNX graph output declares."""
    from onnx import helper

    tensor_type = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
    if not value.type.HasField("tensor_type") or any(d < 0 for d in dims):
        raise ArtifactError(f"ONNX partition {index}: output {value.name!r} has no static shape; export with static shapes")
    dtype = str(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    return TensorSpec(dtype, tuple(dims))


def build_onnx_program(piece: OnnxPiece, inputs: Mapping[str, Any], *, index: int = 0) -> BuiltProgram:
    """:func:`pack_piece`, then load it as a worker started with ``--allow-onnx`` would, and check its answers.

    Raises :class:`ArtifactError` (one line) if a worker would refuse the
    program (an operator off the ONNX allow-list, a shape not known before it
    runs, intermediates over the bound) or its outputs differ from the piece's.
    """
    import torch

    built = pack_piece(piece, inputs, index=index)
    try:
        loaded = load_program(built.program, built.weights, formats=("onnx",))
        leaves: list[Any] = []
        for name in piece.input_names:
            flatten_value(inputs[name], leaves)
        got = loaded.run_leaves(leaves)
    except ArtifactError as exc:
        where = ", ".join(piece.nodes[:2]) + (", ..." if len(piece.nodes) > 2 else "")
        raise ArtifactError(f"ONNX partition {index} ({where}) makes a program a worker refuses: {exc}") from None
    session = piece.session()
    expected = session.run(list(piece.output_names), {n: _array(inputs[n]) for n in piece.input_names})
    for a, b in zip(got, expected):
        b = _tensor(b)
        same = a.shape == b.shape and a.dtype == b.dtype
        if same and a.is_floating_point():
            same = bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True))
        elif same:
            same = bool(torch.equal(a, b))
        if not same:
            raise ArtifactError(f"ONNX partition {index} makes a program whose outputs differ from the partition's")
    return built


__all__ = [
    "OnnxCaptured",
    "OnnxPartition",
    "build_onnx_program",
    "load_onnx_captured",
    "pack_piece",
]
