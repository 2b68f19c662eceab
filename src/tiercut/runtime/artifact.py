"""Partitions as data: programs a worker rebuilds without running code it was sent.

A :class:`~tiercut.graph.split.Partition` holds a ``torch.fx.GraphModule``:
Python code and ``nn.Module`` objects. A worker must never import, eval or
unpickle what it receives, so a partition travels as a *program* (a graph of
operators written as plain data) plus its *weights* (raw tensors), and the
worker rebuilds an executable from them with a fixed interpreter.

Two program formats, both data-only:

``aten-json`` (default)
    The partition is exported with ``torch.export.export`` and functionalized
    (:func:`export_aten`: ATen operators, static shapes, no in-place call)
    and re-written as tiercut's own JSON: a list of nodes, each an ATen
    operator overload *named* (``"aten.conv2d.default"``) with its arguments
    as JSON (references to earlier nodes, numbers, lists, dtype and device
    names). The worker's interpreter (:mod:`tiercut.runtime.interpreter`)
    accepts a program only if every operator is on the hand-reviewed
    allow-list of functional overloads (:mod:`tiercut.runtime.allowlist`)
    and the program runs on the meta device from its declared input specs
    (shapes and dtypes: no view outside its base, intermediates within the
    worker's bound, the declared outputs); it then calls the operators in
    order: no code generation, no ``exec``, no pickle. The kernels are the
    ones eager PyTorch runs, so the outputs equal the whole model's bit for
    bit on the zoo.

``onnx``
    The partition exported with the TorchScript-based ONNX exporter
    (``torch.onnx.export(..., dynamo=False)``) and executed by onnxruntime.
    Its initializers are moved out of the graph to the weight store (marked
    as external data that only the worker's store can satisfy); the worker
    refuses any other external-data reference, any operator type not on its
    ONNX allow-list (:data:`~tiercut.runtime.allowlist.ONNX_ALLOWED_OPS`:
    standard domain, no sub-graphs or functions), and any program whose
    intermediate shapes ONNX shape inference cannot fix before it runs
    (ViT's shape arithmetic, for one) or whose intermediates exceed its
    bound. A worker runs ``onnx`` programs only when started with
    ``--allow-onnx``: by default it runs the allow-listed ATen programs only.

Why not ``torch.export.save``/``load``: ``torch.export.load`` unpickles
(torch's loader with ``weights_only=False`` for weights and constants,
``pickle.loads`` for custom objects), and even its JSON program part is
rebuilt with ``sympy.sympify`` (``eval`` of strings from the file) and guard
code that ``ExportedProgram.module()`` passes to ``exec``. None of that may
run on a worker, hence the re-encoding above.

Which is faster (``benchmarks/runtime_fidelity.py``, ``formats`` section,
one thread, each model cut in three): onnxruntime runs the partitions 1.3x
(AlexNet), 1.9x (ResNet-18), 3.3x (MobileNet-v2) and 3.6x (GoogLeNet)
faster than the ATen interpreter (eager kernels) on this CPU. But its
results differ from PyTorch's (up to 5e-6 on those, and by more than the
1e-5 tolerance the runtime guarantees on ResNet-50 and Inception-v3 with
random weights, whose activations grow large), while ``aten-json``
reproduces the whole model bit for bit on the zoo (ViT within 6e-8: eager
PyTorch takes a fused attention path export does not). So ``aten-json`` is
the default and ``onnx`` an option for speed.

Weights are identified by content: :func:`tensor_digest` is the SHA-256 of
dtype, shape and bytes. A worker keeps each distinct tensor once, whichever
partitions or programs use it. A program is identified by content too: its
id (:func:`program_id`) is the SHA-256 of its manifest (every weight's
digest, dtype and shape, the input and output specs) and of its bytes, so
two users whose models share an architecture but not their weights get two
programs, each answering with its own weights; the worker recomputes the id
and refuses a program whose id does not match.

A *partition bundle* (:class:`PartitionBundle`) is the unit the upload
thread sends and the worker confirms: the weights one upload carries and the
programs that become runnable with it, as one safetensors file (weights
``w:<digest>``, program bytes ``p:<program id>`` as uint8 tensors, the
manifest as JSON in the safetensors metadata).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tiercut.runtime.allowlist import EXPORT_DROPPED, EXPORT_REWRITES, ONNX_ALLOWED_OPS
from tiercut.runtime.codec import (
    CodecError,
    dtype_name,
    flatten_value,
    same_constant,
    tensor_bytes_view,
    torch_dtype,
    unflatten_value,
)
from tiercut.runtime.interpreter import (
    PROGRAM_SCHEMA_VERSION,
    ArtifactError,
    AtenProgram,
    Propagation,
    RunControl,
    check_operator,
)

ARTIFACT_FORMATS = ("aten-json", "onnx")
DEFAULT_FORMAT = "aten-json"
BUNDLE_SCHEMA_VERSION = 1
#: bytes of intermediates one run of a program may hold at once, unless the worker says otherwise
DEFAULT_MAX_RUN_BYTES = 2 * 1024**3
#: where ONNX initializers moved to the weight store point to (never a real file)
ONNX_STORE_LOCATION = "tiercut-weight-store"
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
MAX_SPEC_DIMS = 16


# --------------------------------------------------------------------- small types
@dataclass(frozen=True)
class TensorSpec:
    """dtype (wire name) and shape of a tensor a program takes or returns."""

    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def of(cls, tensor: Any) -> TensorSpec:
        return cls(dtype_name(tensor.dtype), tuple(int(s) for s in tensor.shape))

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Any) -> TensorSpec:
        if not isinstance(data, Mapping):
            raise ArtifactError(f"tensor spec {data!r:.60} is not a mapping")
        dtype, shape = data.get("dtype"), data.get("shape")
        try:
            torch_dtype(dtype)  # validates the name
        except CodecError as exc:
            raise ArtifactError(str(exc)) from None
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_SPEC_DIMS
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40 for s in shape)
        ):
            raise ArtifactError(f"tensor spec shape {shape!r:.60} is not a list of at most {MAX_SPEC_DIMS} sizes below 2**40")
        if math.prod(shape) >= 2**56:
            raise ArtifactError(f"tensor spec shape {shape!r:.60} has more elements than any tensor can")
        return cls(str(dtype), tuple(shape))

    def matches(self, tensor: Any) -> bool:
        return dtype_name(tensor.dtype) == self.dtype and tuple(tensor.shape) == self.shape


def tensor_digest(tensor: Any) -> str:
    """SHA-256 (hex) of a tensor's dtype, shape and bytes: its identity in a weight store."""
    digest = hashlib.sha256(f"{dtype_name(tensor.dtype)}|{','.join(map(str, tensor.shape))}|".encode())
    digest.update(tensor_bytes_view(tensor))
    return digest.hexdigest()


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class ProgramManifest:
    """What a program takes and returns, and which weights it needs.

    Attributes:
        program_id: the program's content id (:func:`program_id`); the name the route uses.
        format: ``aten-json`` or ``onnx``.
        input_names: the partition's input value names, in order.
        output_names: the partition's output value names, in order.
        input_structures: per input, its structure (:func:`~tiercut.runtime.codec.flatten_value`):
            tensors are leaves indexing ``tensor_inputs``; ints, bools, sizes and
            ``None`` are constants the received value must equal (the program
            was exported for these shapes).
        tensor_inputs: dtype and shape of every tensor leaf of the inputs.
        output_structures: per output, its structure (leaves index ``tensor_outputs``).
        tensor_outputs: dtype and shape of every tensor the program returns.
        weights: program weight name -> tensor digest in the weight store.
        weight_specs: program weight name -> dtype and shape.
        program_bytes: size of the program bytes.
    """

    program_id: str
    format: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_structures: tuple[Mapping[str, Any], ...]
    tensor_inputs: tuple[TensorSpec, ...]
    output_structures: tuple[Mapping[str, Any], ...]
    tensor_outputs: tuple[TensorSpec, ...]
    weights: Mapping[str, str]
    weight_specs: Mapping[str, TensorSpec]
    program_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "program_id": self.program_id,
            "format": self.format,
            "input_names": list(self.input_names),
            "output_names": list(self.output_names),
            "input_structures": [dict(s) for s in self.input_structures],
            "tensor_inputs": [t.to_dict() for t in self.tensor_inputs],
            "output_structures": [dict(s) for s in self.output_structures],
            "tensor_outputs": [t.to_dict() for t in self.tensor_outputs],
            "weights": dict(self.weights),
            "weight_specs": {k: v.to_dict() for k, v in self.weight_specs.items()},
            "program_bytes": self.program_bytes,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ProgramManifest:
        if not isinstance(data, Mapping):
            raise ArtifactError("program manifest is not a mapping")
        try:
            manifest = cls(
                program_id=_str(data["program_id"]),
                format=_str(data["format"]),
                input_names=tuple(_str(n) for n in _list(data["input_names"])),
                output_names=tuple(_str(n) for n in _list(data["output_names"])),
                input_structures=tuple(_mapping(s) for s in _list(data["input_structures"])),
                tensor_inputs=tuple(TensorSpec.from_dict(t) for t in _list(data["tensor_inputs"])),
                output_structures=tuple(_mapping(s) for s in _list(data["output_structures"])),
                tensor_outputs=tuple(TensorSpec.from_dict(t) for t in _list(data["tensor_outputs"])),
                weights={_str(k): _str(v) for k, v in _mapping(data["weights"]).items()},
                weight_specs={_str(k): TensorSpec.from_dict(v) for k, v in _mapping(data["weight_specs"]).items()},
                program_bytes=_int(data["program_bytes"]),
            )
        except KeyError as exc:
            raise ArtifactError(f"program manifest lacks the field {exc}") from None
        if manifest.format not in ARTIFACT_FORMATS:
            raise ArtifactError(f"program format {manifest.format!r} is not one of {', '.join(ARTIFACT_FORMATS)}")
        if len(manifest.input_structures) != len(manifest.input_names):
            raise ArtifactError("program manifest has a different number of input names and structures")
        if len(manifest.output_structures) != len(manifest.output_names):
            raise ArtifactError("program manifest has a different number of output names and structures")
        if set(manifest.weights) != set(manifest.weight_specs):
            raise ArtifactError("program manifest names different weights in weights and weight_specs")
        return manifest


def program_id(manifest: ProgramManifest, data: bytes) -> str:
    """The content id of a program: SHA-256 over everything that determines its answers.

    That is its bytes and its manifest: every weight's digest, dtype and
    shape, the input and output specs and structures (the ``program_id``
    field itself left out). Same id, same answers.
    """
    body = manifest.to_dict()
    del body["program_id"]
    body["program_sha256"] = sha256_hex(data)
    return sha256_hex(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def make_program(manifest: ProgramManifest, data: bytes) -> PartitionProgram:
    """A :class:`PartitionProgram` whose manifest carries the size and content id of ``data``."""
    sized = replace(manifest, program_id="", program_bytes=len(data))
    return PartitionProgram(replace(sized, program_id=program_id(sized, data)), data)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ArtifactError(f"expected a size in the manifest, got {value!r:.40}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ArtifactError(f"expected a string in the manifest, got {type(value).__name__}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ArtifactError(f"expected a list in the manifest, got {type(value).__name__}")
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ArtifactError(f"expected a mapping in the manifest, got {type(value).__name__}")
    return value


@dataclass(frozen=True, eq=False)
class PartitionProgram:
    """A program as it travels: its manifest and its bytes (JSON or ONNX protobuf)."""

    manifest: ProgramManifest
    data: bytes


@dataclass(frozen=True, eq=False)
class BuiltProgram:
    """A program built on the client, with the weights it needs.

    Attributes:
        program: what is sent.
        weights: digest -> tensor, every weight the program needs.
        weight_sources: digest -> qualified name in the model (``layer1.0.conv1.weight``),
            or the exporter's name for a constant it created.
    """

    program: PartitionProgram
    weights: Mapping[str, Any]
    weight_sources: Mapping[str, str]


# --------------------------------------------------------------------- building (client side)
def _leaves_by_structure(structure: Mapping[str, Any], value: Any, leaves: list[Any]) -> None:
    """Append the tensors of ``value`` found where ``structure`` has leaves (constants are skipped).

    Used while exporting: a tracer may turn an int (a shape) into a tensor,
    and only the positions that were tensors in eager mode are outputs.
    """
    kind = structure.get("kind")
    if kind == "leaf":
        leaves.append(value)
    elif kind in ("tuple", "list"):
        for item, sub in zip(structure.get("items", []), value):
            _leaves_by_structure(item, sub, leaves)


def _flat_module(
    graph_module: Any, input_structures: Sequence[Mapping[str, Any]], output_structures: Sequence[Mapping[str, Any]]
) -> Any:
    """An ``nn.Module`` that takes a partition's tensor leaves and returns its output tensor leaves."""
    import torch

    class FlatPartition(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gm = graph_module
            self.input_structures = [dict(s) for s in input_structures]
            self.output_structures = [dict(s) for s in output_structures]

        def forward(self, *leaves: Any) -> Any:
            args = [unflatten_value(s, leaves) for s in self.input_structures]
            outputs = self.gm(*args)
            out_leaves: list[Any] = []
            for structure, value in zip(self.output_structures, outputs):
                _leaves_by_structure(structure, value, out_leaves)
            return tuple(out_leaves)

    module = FlatPartition()
    module.train(False)
    module.gm.training = False
    return module


def _structures(values: Sequence[Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    leaves: list[Any] = []
    structures = [flatten_value(v, leaves) for v in values]
    return structures, leaves


def build_program(partition: Any, inputs: Mapping[str, Any], *, format: str = DEFAULT_FORMAT) -> BuiltProgram:
    """Turn a :class:`~tiercut.graph.split.Partition` into a data-only program.

    ``inputs`` maps each of ``partition.input_names`` to the value it receives
    on the example input (the program is exported for those shapes; ints and
    sizes among them are checked at run time).
    """
    import torch

    if format not in ARTIFACT_FORMATS:
        raise ArtifactError(f"artifact format {format!r} is not known; use one of {', '.join(ARTIFACT_FORMATS)}")
    missing = [n for n in partition.input_names if n not in inputs]
    if missing:
        raise ArtifactError(f"partition {partition.index} needs example value {missing[0]!r} to be exported")
    in_values = [inputs[n] for n in partition.input_names]
    in_structures, in_leaves = _structures(in_values)
    with torch.no_grad():
        produced = partition.graph_module(*in_values)
    out_structures, out_leaves = _structures(list(produced))
    module = _flat_module(partition.graph_module, in_structures, out_structures)
    if format == "aten-json":
        data, weights, sources, weight_specs = _export_aten_json(module, tuple(in_leaves), partition.index)
    else:
        data, weights, sources, weight_specs = _export_onnx(module, tuple(in_leaves), len(out_leaves), partition.index)
    manifest = ProgramManifest(
        program_id="",
        format=format,
        input_names=tuple(partition.input_names),
        output_names=tuple(partition.output_names),
        input_structures=tuple(in_structures),
        tensor_inputs=tuple(TensorSpec.of(t) for t in in_leaves),
        output_structures=tuple(out_structures),
        tensor_outputs=tuple(TensorSpec.of(t) for t in out_leaves),
        weights={name: digest for name, (digest, _) in weights.items()},
        weight_specs=weight_specs,
        program_bytes=len(data),
    )
    program = make_program(manifest, data)
    by_digest = {digest: tensor for digest, tensor in weights.values()}
    if format == "aten-json":  # the program must pass the worker's own checks, and answer like the partition
        try:
            loaded = load_program(program, by_digest)
            got = loaded.run_leaves(in_leaves)
        except ArtifactError as exc:
            raise ArtifactError(f"partition {partition.index} exports to a program a worker refuses: {exc}") from None
        if not all(_same_tensor(a, b) for a, b in zip(got, out_leaves)):
            raise ArtifactError(f"partition {partition.index} exports to a program whose outputs differ from the partition's")
    return BuiltProgram(program, by_digest, sources)


def _same_tensor(got: Any, expected: Any) -> bool:
    import torch

    if got.shape != expected.shape or got.dtype != expected.dtype:
        return False
    if got.is_floating_point() or got.is_complex():
        return bool(torch.allclose(got, expected, atol=1e-5, equal_nan=True))
    return bool(torch.equal(got, expected))


# ----- aten-json
def _encode_arg(arg: Any, names: Mapping[Any, str]) -> Any:
    import torch
    import torch.fx

    if isinstance(arg, torch.fx.Node):
        return {"ref": names[arg]}
    if isinstance(arg, (list, tuple)):
        return {"list": [_encode_arg(a, names) for a in arg]}
    if arg is None or isinstance(arg, (bool, int, str)):
        return arg
    if isinstance(arg, float):
        return arg if math.isfinite(arg) else {"float": "nan" if math.isnan(arg) else ("inf" if arg > 0 else "-inf")}
    if isinstance(arg, torch.dtype):
        return {"dtype": dtype_name(arg)}
    if isinstance(arg, torch.device):
        return {"device": str(arg)}
    if isinstance(arg, torch.layout):
        return {"layout": str(arg).removeprefix("torch.")}
    if isinstance(arg, torch.memory_format):
        return {"memory_format": str(arg).removeprefix("torch.")}
    raise ArtifactError(f"an operator argument of type {type(arg).__name__} cannot be written as data")


def operator_name(target: Any) -> str:
    import operator

    import torch

    if target is operator.getitem:
        return "getitem"
    if isinstance(target, torch._ops.OpOverload):
        namespace, _, rest = target.name().partition("::")
        op_name, _, overload = rest.partition(".")
        return f"{namespace}.{op_name}.{overload or 'default'}"
    name = getattr(target, "__name__", repr(target))
    raise ArtifactError(
        f"the exported partition calls {name}, which is not an ATen operator; the aten-json format carries ATen "
        "operators only (try --artifact-format onnx)"
    )


def export_aten(module: Any, leaves: tuple[Any, ...]) -> Any:
    """``module`` on ``leaves`` as a functional ATen graph: ``torch.export`` then functionalization.

    ``run_decompositions({})`` functionalizes without decomposing: in-place
    calls become their functional forms (``relu_`` -> ``relu``, a mutation of
    an input becomes an extra ``USER_INPUT_MUTATION`` output), ``dropout`` in
    eval disappears, ``reshape``/``flatten``/``contiguous`` become ``view`` or
    ``clone``; composite layers (``conv2d``, ``linear``, ``layer_norm``,
    ``scaled_dot_product_attention``) stay whole, so the kernels are the
    ones eager PyTorch runs. Raises whatever ``torch.export`` raises.
    """
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        exported = torch.export.export(module, leaves, strict=False)
        return exported.run_decompositions({})


def _export_aten_json(
    module: Any, leaves: tuple[Any, ...], index: int
) -> tuple[bytes, dict[str, tuple[str, Any]], dict[str, str], dict[str, TensorSpec]]:
    """Export and encode one partition; only what its outputs need is kept.

    Mutations of the partition's own inputs (an in-place call on a value it
    received, as a cut before ``ReLU(inplace=True)`` makes) become extra
    outputs under functionalization; the copy a worker receives is its own,
    so they are dropped. ``_unsafe_view`` is rewritten to ``view``
    (:data:`~tiercut.runtime.allowlist.EXPORT_REWRITES`).
    """
    from torch.export.graph_signature import InputKind, OutputKind

    try:
        exported = export_aten(module, leaves)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"torch.export cannot export partition {index}: {first[:200]}") from None
    signature = exported.graph_signature
    kinds = {spec.arg.name: spec for spec in signature.input_specs}
    graph_nodes = list(exported.graph.nodes)
    output_node = next(n for n in graph_nodes if n.op == "output")
    results = output_node.args[0]
    results = list(results) if isinstance(results, (list, tuple)) else [results]
    kept_results = []
    for spec, result in zip(signature.output_specs, results):
        if spec.kind == OutputKind.USER_OUTPUT:
            kept_results.append(result)
        elif spec.kind != OutputKind.USER_INPUT_MUTATION:
            raise ArtifactError(f"partition {index} mutates a buffer ({spec.kind.name}); it cannot be shipped")
    needed: set[Any] = set()
    stack = [r for r in kept_results if hasattr(r, "all_input_nodes")]
    while stack:
        node = stack.pop()
        if node not in needed:
            needed.add(node)
            stack.extend(node.all_input_nodes)
    weights: dict[str, tuple[str, Any]] = {}
    sources: dict[str, str] = {}
    specs: dict[str, TensorSpec] = {}
    user_inputs: list[str] = []
    names: dict[Any, str] = {}
    nodes: list[dict[str, Any]] = []
    for node in graph_nodes:
        if node.op == "placeholder":
            names[node] = node.name
            spec = kinds[node.name]
            if spec.kind == InputKind.USER_INPUT:
                user_inputs.append(node.name)
                continue
            if node not in needed:
                continue
            if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
                tensor = exported.state_dict.get(spec.target)
                if tensor is None:
                    tensor = exported.constants[spec.target]
            elif spec.kind == InputKind.CONSTANT_TENSOR:
                tensor = exported.constants[spec.target]
            else:
                raise ArtifactError(f"partition {index} takes a {spec.kind.name} input, which cannot be shipped as data")
            tensor = tensor.detach()
            digest = tensor_digest(tensor)
            weights[node.name] = (digest, tensor)
            source = str(spec.target)
            sources[digest] = source.removeprefix("gm.")
            specs[node.name] = TensorSpec.of(tensor)
        elif node.op == "call_function":
            if node not in needed:
                continue
            op = operator_name(node.target)
            if op in EXPORT_DROPPED:
                raise ArtifactError(f"partition {index} reads the result of {op}, which a program never carries")
            names[node] = node.name
            nodes.append(
                {
                    "name": node.name,
                    "op": EXPORT_REWRITES.get(op, op),
                    "args": [_encode_arg(a, names) for a in node.args],
                    "kwargs": {k: _encode_arg(v, names) for k, v in node.kwargs.items()},
                }
            )
        elif node.op != "output":
            raise ArtifactError(
                f"the exported partition {index} has a {node.op} node ({node.name}); only operator calls are shipped"
            )
    program = {
        "schema_version": PROGRAM_SCHEMA_VERSION,
        "inputs": user_inputs,
        "weights": list(weights),
        "nodes": nodes,
        "outputs": [_encode_arg(r, names) for r in kept_results],
    }
    data = json.dumps(program, separators=(",", ":"), allow_nan=False).encode()
    return data, weights, sources, specs


# ----- onnx
def _export_onnx(
    module: Any, leaves: tuple[Any, ...], n_outputs: int, index: int
) -> tuple[bytes, dict[str, tuple[str, Any]], dict[str, str], dict[str, TensorSpec]]:
    import onnx
    import torch

    buffer = io.BytesIO()
    input_names = [f"input_{i}" for i in range(len(leaves))]
    output_names = [f"output_{i}" for i in range(n_outputs)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                leaves,
                buffer,
                dynamo=False,
                do_constant_folding=False,
                input_names=input_names,
                output_names=output_names,
                opset_version=17,
            )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"the ONNX exporter cannot export partition {index}: {first[:200]}") from None
    model = onnx.load_from_string(buffer.getvalue())
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    unused = [init for init in model.graph.initializer if init.name not in used]
    for init in unused:  # onnxruntime refuses initializers no node reads
        model.graph.initializer.remove(init)
    weights, sources, specs = initializers_to_store(model, lambda name: name.removeprefix("gm."))
    data = model.SerializeToString()
    return data, weights, sources, specs


def initializers_to_store(
    model: Any, source_of: Callable[[str], str] = str
) -> tuple[dict[str, tuple[str, Any]], dict[str, str], dict[str, TensorSpec]]:
    """Move an ONNX model's initializers out of it (in place) to the weight store.

    Each initializer becomes external data at :data:`ONNX_STORE_LOCATION`
    (which only a worker's store satisfies). Returns initializer name ->
    (digest, tensor), digest -> ``source_of(name)`` and name -> its spec.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    weights: dict[str, tuple[str, Any]] = {}
    sources: dict[str, str] = {}
    specs: dict[str, TensorSpec] = {}
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        tensor = torch.from_numpy(array.copy())
        digest = tensor_digest(tensor)
        weights[init.name] = (digest, tensor)
        sources[digest] = source_of(init.name)
        specs[init.name] = TensorSpec.of(tensor)
        nbytes = len(init.raw_data) if init.HasField("raw_data") else array.nbytes
        for fname in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
            init.ClearField(fname)
        init.data_location = onnx.TensorProto.EXTERNAL
        del init.external_data[:]
        for key, value in (("location", ONNX_STORE_LOCATION), ("offset", "0"), ("length", str(nbytes))):
            entry = init.external_data.add()
            entry.key, entry.value = key, value
    return weights, sources, specs


# --------------------------------------------------------------------- loading (worker side)
def _check_onnx(model: Any, weight_names: set[str]) -> None:
    """Refuse external data other than the store's initializers and non-standard operator domains."""
    import onnx

    local_domains = {f.domain for f in model.functions}
    for opset in model.opset_import:
        if opset.domain not in ONNX_DOMAINS and opset.domain not in local_domains:
            raise ArtifactError(f"ONNX program imports operator domain {opset.domain!r}; only the standard domains are allowed")

    def tensors_of_graph(graph: Any) -> list[Any]:
        found = list(graph.initializer) + [s.values for s in graph.sparse_initializer]
        for node in graph.node:
            found += tensors_of_node(node)
        return found

    def tensors_of_node(node: Any) -> list[Any]:
        if node.domain not in ONNX_DOMAINS and node.domain not in local_domains:
            raise ArtifactError(f"ONNX program uses operator {node.domain}.{node.op_type}; only the standard domains are allowed")
        found = []
        for attribute in node.attribute:
            if attribute.HasField("t"):
                found.append(attribute.t)
            found += list(attribute.tensors)
            if attribute.HasField("sparse_tensor"):
                found.append(attribute.sparse_tensor.values)
            if attribute.HasField("g"):
                found += tensors_of_graph(attribute.g)
            for graph in attribute.graphs:
                found += tensors_of_graph(graph)
        return found

    top_level = {init.name for init in model.graph.initializer}
    nested = tensors_of_graph(model.graph)[len(model.graph.initializer) :]  # everything but the initializers
    for function in model.functions:
        for node in function.node:
            nested += tensors_of_node(node)
    for tensor in nested:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ArtifactError(f"ONNX program tensor {tensor.name!r:.60} refers to external data; only initializers may")
    for init in model.graph.initializer:
        location = {e.key: e.value for e in init.external_data}.get("location")
        if init.data_location == onnx.TensorProto.EXTERNAL:
            if location != ONNX_STORE_LOCATION or init.name not in weight_names:
                raise ArtifactError(
                    f"ONNX program initializer {init.name!r:.60} refers to external data {location!r:.60}; only the "
                    "worker's weight store may supply external data"
                )
        elif init.name in weight_names:
            raise ArtifactError(f"ONNX program holds weight {init.name!r} inline and in the store; send it once")
    missing = weight_names - top_level
    if missing:
        raise ArtifactError(f"ONNX program has no initializer {sorted(missing)[0]!r} that its manifest lists")


def _check_onnx_operators_and_shapes(model: Any, manifest: ProgramManifest, max_run_bytes: int) -> None:
    """Allow-listed op types only, no sub-graphs or functions, every shape static, intermediates within the bound."""
    import numpy as np
    import onnx
    from onnx import helper, shape_inference

    name = manifest.program_id[:12]
    if len(model.functions):
        raise ArtifactError(f"ONNX program {name} defines functions; a worker runs allow-listed operators only")
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ONNX_ALLOWED_OPS:
            raise ArtifactError(
                f"ONNX program {name} uses operator {node.domain or 'ai.onnx'}.{node.op_type}, which is not on this "
                "worker's allow-list of ONNX operators"
            )
        if any(a.HasField("g") or len(a.graphs) for a in node.attribute):
            raise ArtifactError(f"ONNX program {name} holds a sub-graph in {node.op_type}; a worker refuses them")
    inputs = [i for i in model.graph.input if i.name not in {init.name for init in model.graph.initializer}]
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:  # onnx's checker refuses the graph: refuse the program
        raise ArtifactError(f"ONNX program {name} fails shape inference: {str(exc).strip().splitlines()[0][:160]}") from None

    def static(value: Any) -> tuple[tuple[int, ...], int] | None:
        tensor = value.type.tensor_type
        if not value.type.HasField("tensor_type") or not tensor.HasField("shape"):
            return None
        if not all(d.HasField("dim_value") and d.dim_value >= 0 for d in tensor.shape.dim):
            return None
        if tensor.elem_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
            return None
        return tuple(d.dim_value for d in tensor.shape.dim), np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).itemsize

    known = {v.name: static(v) for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    for value, spec in zip(inputs, manifest.tensor_inputs):
        shape = known.get(value.name)
        if shape is None or shape[0] != spec.shape:
            raise ArtifactError(f"ONNX program {name} takes input {value.name!r:.60} of another shape than its manifest declares")
    last_use: dict[str, int] = {}
    for index, node in enumerate(inferred.graph.node):
        for value in node.input:
            last_use[value] = index
    outputs = {o.name for o in inferred.graph.output}
    produced = {value for node in inferred.graph.node for value in node.output}
    live = 0
    for index, node in enumerate(inferred.graph.node):
        for value in node.output:
            if not value:
                continue
            shape = known.get(value)
            if shape is None:
                raise ArtifactError(
                    f"ONNX program {name}: the shape of {value!r:.60} ({node.op_type}) is not known before it runs; "
                    "a worker runs only programs whose shapes it can check (export this partition as aten-json)"
                )
            live += math.prod(shape[0]) * shape[1]
        if live > max_run_bytes:
            raise ArtifactError(
                f"ONNX program {name} needs {live} bytes of intermediates at {node.op_type}, more than this worker's "
                f"bound of {max_run_bytes} bytes (--max-run-bytes)"
            )
        for value in dict.fromkeys(node.input):  # free what no later node reads (inputs and weights are not counted)
            shape = known.get(value)
            if last_use.get(value) == index and value in produced and value not in outputs and shape is not None:
                live -= math.prod(shape[0]) * shape[1]


@dataclass(eq=False)
class LoadedProgram:
    """A program rebuilt on a worker, checked and ready to run on received values.

    Build it with :func:`load_program`; :meth:`run` is safe to call from
    several threads at once.
    """

    manifest: ProgramManifest
    _weights: dict[str, Any] = field(repr=False)
    _aten: AtenProgram | None = field(default=None, repr=False)
    _propagation: Propagation | None = field(default=None, repr=False)
    _session: Any = field(default=None, repr=False)
    _keepalive: list[Any] = field(default_factory=list, repr=False)

    @property
    def program_id(self) -> str:
        return self.manifest.program_id

    @property
    def peak_bytes(self) -> int:
        """Bytes of intermediates a run holds at most (propagated at load; 0 for ONNX programs)."""
        return self._propagation.peak_bytes if self._propagation is not None else 0

    def check_inputs(self, values: Mapping[str, Any]) -> list[Any]:
        """The tensor leaves of the inputs, after checking them against the manifest exactly."""
        import torch

        manifest = self.manifest
        leaves: list[Any] = []
        for name, structure in zip(manifest.input_names, manifest.input_structures):
            if name not in values:
                raise ArtifactError(f"partition program {manifest.program_id[:12]} needs value {name!r}, which was not sent")
            value = values[name]
            if not same_constant(structure, value):
                raise ArtifactError(
                    f"value {name!r} does not have the structure or constants partition program "
                    f"{manifest.program_id[:12]} was exported for"
                )
            flatten_value(value, leaves)
        if len(leaves) != len(manifest.tensor_inputs):
            raise ArtifactError(f"partition program {manifest.program_id[:12]} received another number of tensors")
        for i, (leaf, spec) in enumerate(zip(leaves, manifest.tensor_inputs)):
            if not spec.matches(leaf) or leaf.device.type != "cpu" or leaf.layout != torch.strided:
                raise ArtifactError(
                    f"tensor input {i} of partition program {manifest.program_id[:12]} is {dtype_name(leaf.dtype)} "
                    f"{list(leaf.shape)}; it was exported for {spec.dtype} {list(spec.shape)} (use the same input shape)"
                )
            if not leaf.is_contiguous():  # the propagation assumed the layout received tensors have
                leaves[i] = leaf.contiguous()
        return leaves

    def run_leaves(self, leaves: Sequence[Any], control: RunControl | None = None) -> list[Any]:
        """Run on checked tensor leaves; returns the output tensors in manifest order."""
        import torch

        if self._aten is not None:
            assert self._propagation is not None
            outputs = self._aten.run(leaves, self._weights, self._propagation.signatures, control)
        elif self._session is None:
            outputs = []
        else:
            wanted = {i.name for i in self._session.get_inputs()}  # the exporter drops inputs nothing reads
            feeds = {f"input_{i}": leaf.numpy() for i, leaf in enumerate(leaves) if f"input_{i}" in wanted}
            outputs = [torch.from_numpy(array) for array in self._session.run(None, feeds)]
        if len(outputs) != len(self.manifest.tensor_outputs) or not all(
            spec.matches(t) for spec, t in zip(self.manifest.tensor_outputs, outputs)
        ):
            raise ArtifactError(f"partition program {self.program_id[:12]} returned other tensors than its manifest declares")
        return outputs

    def run(self, values: Mapping[str, Any], control: RunControl | None = None) -> dict[str, Any]:
        """Run on named inputs; returns ``output_names`` -> value.

        ``control`` stops an aten-json run at the next step once its deadline
        passes or it is cancelled (:class:`~tiercut.runtime.interpreter.RunStoppedError`).
        """
        outputs = self.run_leaves(self.check_inputs(values), control)
        return {
            name: unflatten_value(structure, outputs)
            for name, structure in zip(self.manifest.output_names, self.manifest.output_structures)
        }


def load_program(
    program: PartitionProgram,
    weights: Mapping[str, Any],
    *,
    max_run_bytes: int = DEFAULT_MAX_RUN_BYTES,
    onnx_threads: int = 1,
    formats: Sequence[str] = ARTIFACT_FORMATS,
) -> LoadedProgram:
    """Rebuild a received program: check it, bind its weights (digest -> tensor) and prepare it to run.

    Raises :class:`ArtifactError` if the program's format is not in
    ``formats``, the manifest and bytes do not hash to the program id, an
    operator is not on the allow-list, the program does not propagate (on
    fake tensors; for ONNX, by static shape inference) within
    ``max_run_bytes`` to its declared outputs, or a weight is missing or has
    another shape.
    """
    manifest = program.manifest
    if manifest.format not in formats:
        raise ArtifactError(
            f"program {manifest.program_id[:12]} is in the {manifest.format} format, which this worker does not run "
            f"(it runs {', '.join(formats)}; start it with --allow-onnx for onnx programs)"
        )
    if manifest.program_bytes != len(program.data) or program_id(manifest, program.data) != manifest.program_id:
        raise ArtifactError(f"program {manifest.program_id[:12]} does not hash to its id; it is corrupt or forged")
    bound: dict[str, Any] = {}
    for name, digest in manifest.weights.items():
        tensor = weights.get(digest)
        if tensor is None:
            raise ArtifactError(
                f"program {manifest.program_id[:12]} needs weight {name!r} ({digest[:12]}), which the worker does not hold"
            )
        if not manifest.weight_specs[name].matches(tensor):
            raise ArtifactError(
                f"weight {name!r} of program {manifest.program_id[:12]} has another dtype or shape than its manifest says"
            )
        bound[name] = tensor
    if manifest.format == "aten-json":
        aten = AtenProgram.parse(program.data)
        if set(aten.weights) != set(manifest.weights):
            raise ArtifactError(f"program {manifest.program_id[:12]} names other weights than its manifest")
        propagation = aten.propagate(
            [(t.shape, t.dtype) for t in manifest.tensor_inputs],
            {name: (spec.shape, spec.dtype) for name, spec in manifest.weight_specs.items()},
            [(t.shape, t.dtype) for t in manifest.tensor_outputs],
            max_run_bytes=max_run_bytes,
        )
        return LoadedProgram(manifest, bound, _aten=aten, _propagation=propagation)
    return _load_onnx(program, bound, max_run_bytes=max_run_bytes, onnx_threads=onnx_threads)


def _load_onnx(program: PartitionProgram, bound: dict[str, Any], *, max_run_bytes: int, onnx_threads: int) -> LoadedProgram:
    import onnx
    import onnxruntime as ort

    manifest = program.manifest
    try:
        model = onnx.load_from_string(program.data)
    except Exception:
        raise ArtifactError(f"ONNX program {manifest.program_id[:12]} is not a valid ONNX model") from None
    _check_onnx(model, set(manifest.weights))
    _check_onnx_operators_and_shapes(model, manifest, max_run_bytes)
    if not manifest.tensor_outputs:  # only constants (shape glue) come out: nothing to run
        return LoadedProgram(manifest, bound, _session=None)
    options = ort.SessionOptions()
    options.intra_op_num_threads = onnx_threads
    options.inter_op_num_threads = 1
    names = list(bound)
    ort_values = [ort.OrtValue.ortvalue_from_numpy(bound[n].contiguous().numpy()) for n in names]
    if names:
        options.add_external_initializers(names, ort_values)
    try:
        session = ort.InferenceSession(program.data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"onnxruntime refuses program {manifest.program_id[:12]}: {first[:200]}") from None
    return LoadedProgram(manifest, bound, _session=session, _keepalive=[ort_values, options])


# --------------------------------------------------------------------- bundles
MAX_PARTITION_ID_CHARS = 200
_ID_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:+-@")


def check_partition_id(partition_id: Any) -> str:
    """A partition id as a worker accepts it: 1..200 of ``A-Z a-z 0-9 . _ : + - @``."""
    if not isinstance(partition_id, str) or not 0 < len(partition_id) <= MAX_PARTITION_ID_CHARS:
        raise ArtifactError(f"partition id must be 1..{MAX_PARTITION_ID_CHARS} characters long")
    if not set(partition_id) <= _ID_CHARACTERS:
        raise ArtifactError(f"partition id {partition_id[:80]!r} holds characters other than letters, digits and ._:+-@")
    return partition_id


@dataclass(frozen=True, eq=False)
class PartitionBundle:
    """One upload: the weights it carries and the programs runnable once it is confirmed.

    Attributes:
        partition_id: the name the client and the worker use for it
            (:func:`check_partition_id`): a label, or a label, ``@`` and the
            bundle's :meth:`content_digest`, which the worker then checks (the
            runtime's client always names bundles so: two users' bundles never
            clash, and no one can hold a name for content it does not have).
        nodes: the layer-graph nodes whose parameters it carries (the UploadPlan's P3).
        weights: digest -> tensor carried by this upload.
        programs: programs that become runnable with it (their weights are
            in this bundle or in bundles confirmed before it).
        requires: digests of weights the programs need from earlier bundles.
    """

    partition_id: str
    nodes: tuple[str, ...]
    weights: Mapping[str, Any]
    programs: tuple[PartitionProgram, ...]
    requires: tuple[str, ...] = ()

    @property
    def weight_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.weights.values())

    def content_digest(self) -> str:
        """SHA-256 of what the bundle holds: its nodes, weight digests, program ids and requirements."""
        body = {
            "nodes": list(self.nodes),
            "weights": sorted(self.weights),
            "programs": sorted(p.manifest.program_id for p in self.programs),
            "requires": sorted(self.requires),
        }
        return sha256_hex(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())

    def named(self, label: str) -> PartitionBundle:
        """This bundle named ``label@<content digest>``."""
        return replace(self, partition_id=f"{label}@{self.content_digest()}")

    def check_name(self) -> None:
        """Raise :class:`ArtifactError` if the id is malformed or names a content digest the bundle does not have."""
        check_partition_id(self.partition_id)
        _, at, digest = self.partition_id.rpartition("@")
        if at and digest != self.content_digest():
            raise ArtifactError(f"partition {self.partition_id[:80]!r} does not hold the content its name's digest says")

    def to_bytes(self) -> bytes:
        """The bundle as a safetensors file (data only)."""
        import safetensors.torch
        import torch

        tensors: dict[str, Any] = {}
        for digest, tensor in self.weights.items():
            tensors[f"w:{digest}"] = tensor.detach().contiguous()
        for program in self.programs:
            tensors[f"p:{program.manifest.program_id}"] = torch.frombuffer(bytearray(program.data), dtype=torch.uint8)
        manifest = {
            "schema_version": BUNDLE_SCHEMA_VERSION,
            "partition_id": self.partition_id,
            "nodes": list(self.nodes),
            "weights": sorted(self.weights),
            "requires": list(self.requires),
            "programs": [p.manifest.to_dict() for p in self.programs],
        }
        return safetensors.torch.save(tensors, metadata={"tiercut": json.dumps(manifest, separators=(",", ":"))})

    @classmethod
    def from_bytes(cls, data: bytes, *, verify_weights: bool = True) -> PartitionBundle:
        """Parse a received bundle, checking every weight digest and program hash."""
        from safetensors.torch import load as load_safetensors

        if len(data) < 8:
            raise ArtifactError("partition bundle is shorter than a safetensors header")
        (header_len,) = struct.unpack_from("<Q", data, 0)
        if header_len > min(len(data) - 8, 100 * 1024 * 1024):
            raise ArtifactError("partition bundle header length is out of range; the bundle is corrupt")
        try:
            header = json.loads(bytes(data[8 : 8 + header_len]))
            manifest = json.loads(header["__metadata__"]["tiercut"])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            raise ArtifactError("partition bundle has no valid tiercut manifest") from None
        if not isinstance(manifest, dict) or manifest.get("schema_version") != BUNDLE_SCHEMA_VERSION:
            raise ArtifactError(f"partition bundle is not schema version {BUNDLE_SCHEMA_VERSION}")
        try:
            tensors = load_safetensors(bytes(data))  # safetensors: a header and raw buffers, no pickle
        except Exception as exc:
            raise ArtifactError(f"partition bundle is not a valid safetensors file ({str(exc)[:120]})") from None
        weights: dict[str, Any] = {}
        for digest in _list(manifest.get("weights")):
            tensor = tensors.get(f"w:{_str(digest)}")
            if tensor is None:
                raise ArtifactError(f"partition bundle lists weight {digest[:12]} but does not hold it")
            if verify_weights and tensor_digest(tensor) != digest:
                raise ArtifactError(f"weight {digest[:12]} of the partition bundle does not hash to its digest")
            weights[digest] = tensor
        programs: list[PartitionProgram] = []
        for raw in _list(manifest.get("programs")):
            program_manifest = ProgramManifest.from_dict(raw)
            tensor = tensors.get(f"p:{program_manifest.program_id}")
            if tensor is None:
                raise ArtifactError(f"partition bundle lists program {program_manifest.program_id[:12]} but does not hold it")
            program_data = tensor.numpy().tobytes()
            if len(program_data) != program_manifest.program_bytes or program_id(program_manifest, program_data) != (
                program_manifest.program_id
            ):
                raise ArtifactError(f"program {program_manifest.program_id[:12]} of the bundle does not hash to its id")
            programs.append(PartitionProgram(program_manifest, program_data))
        expected = {f"w:{d}" for d in weights} | {f"p:{p.manifest.program_id}" for p in programs}
        if set(tensors) != expected:
            extra = sorted(set(tensors) - expected)[:1]
            raise ArtifactError(f"partition bundle holds tensor {extra} that its manifest does not list")
        return cls(
            partition_id=_str(manifest.get("partition_id")),
            nodes=tuple(_str(n) for n in _list(manifest.get("nodes"))),
            weights=weights,
            programs=tuple(programs),
            requires=tuple(_str(d) for d in _list(manifest.get("requires", []))),
        )


__all__ = [
    "ARTIFACT_FORMATS",
    "DEFAULT_FORMAT",
    "ArtifactError",
    "BuiltProgram",
    "LoadedProgram",
    "PartitionBundle",
    "PartitionProgram",
    "ProgramManifest",
    "RunControl",
    "TensorSpec",
    "build_program",
    "check_operator",
    "check_partition_id",
    "export_aten",
    "initializers_to_store",
    "load_program",
    "make_program",
    "operator_name",
    "program_id",
    "sha256_hex",
    "tensor_digest",
]
