"""Partitions as data: programs a worker rebuilds without running code it was sent.

A :class:`~tiercut.graph.split.Partition` holds a ``torch.fx.GraphModule``:
Python code and ``nn.Module`` objects. A worker must never import, eval or
unpickle what it receives, so a partition travels as a *program* (a graph of
operators written as plain data) plus its *weights* (raw tensors), and the
worker rebuilds an executable from them with a fixed interpreter.

Two program formats, both data-only:

``aten-json`` (default)
    The partition is exported with ``torch.export.export`` (ATen operators,
    static shapes) and re-written as tiercut's own JSON: a list of nodes, each
    an ATen operator overload *named* (``"aten.conv2d.default"``) with its
    arguments as JSON (references to earlier nodes, numbers, lists, dtype and
    device names). The worker resolves each name in ``torch.ops.aten`` and
    refuses the program unless every operator passes :func:`check_operator`
    (ATen namespace only; no string argument except a known option such as
    ``approximate`` or ``rounding_mode``, so no ``aten::from_file``; no
    in-place write into a weight or anything that may alias one). A small
    interpreter then calls the operators in order: no code generation, no
    ``exec``, no pickle. The kernels are the ones eager PyTorch runs, so the
    outputs equal the whole model's bit for bit on the zoo.

``onnx``
    The partition exported with the TorchScript-based ONNX exporter
    (``torch.onnx.export(..., dynamo=False)``) and executed by onnxruntime.
    Its initializers are moved out of the graph to the weight store (marked
    as external data that only the worker's store can satisfy); the worker
    refuses any other external-data reference and any operator domain other
    than the standard ones.

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
partitions or programs use it.

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
import re
import struct
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.runtime.codec import dtype_name, flatten_value, same_constant, tensor_bytes_view, torch_dtype, unflatten_value

ARTIFACT_FORMATS = ("aten-json", "onnx")
DEFAULT_FORMAT = "aten-json"
PROGRAM_SCHEMA_VERSION = 1
BUNDLE_SCHEMA_VERSION = 1

#: string arguments an ATen operator may take in a program (options, never paths or code)
SAFE_STRING_ARGUMENTS = frozenset(
    {
        "approximate",
        "rounding_mode",
        "reduce",
        "padding",
        "indexing",
        "equation",
        "side",
        "mode",
        "interpolation",
        "assert_msg",
        "msg",
        "norm",
        "UPLO",
        "driver",
        "activation",
        "padding_side",
        "pad_mode",
    }
)
#: ATen operators refused whatever their arguments
DENIED_OPERATORS = frozenset({"from_file", "_print", "save", "_assert_async"})
#: where ONNX initializers moved to the weight store point to (never a real file)
ONNX_STORE_LOCATION = "tiercut-weight-store"
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
_MAX_PROGRAM_NODES = 200_000
_MAX_JSON_DEPTH = 64


class ArtifactError(TiercutError):
    """A program or bundle that cannot be built, or received bytes that are not a valid one."""


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
        torch_dtype(dtype)  # validates the name
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise ArtifactError(f"tensor spec shape {shape!r:.60} is not a list of sizes")
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
        program_id: SHA-256 (hex) of the program bytes; the name the route uses.
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
                program_bytes=int(data["program_bytes"]),
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
class Program:
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

    program: Program
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
        program_id=sha256_hex(data),
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
    by_digest = {digest: tensor for digest, tensor in weights.values()}
    return BuiltProgram(Program(manifest, data), by_digest, sources)


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


def _operator_name(target: Any) -> str:
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


def _export_aten_json(
    module: Any, leaves: tuple[Any, ...], index: int
) -> tuple[bytes, dict[str, tuple[str, Any]], dict[str, str], dict[str, TensorSpec]]:
    import torch
    from torch.export.graph_signature import InputKind, OutputKind

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = torch.export.export(module, leaves, strict=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"torch.export cannot export partition {index}: {first[:200]}") from None
    signature = exported.graph_signature
    kinds = {spec.arg.name: spec for spec in signature.input_specs}
    weights: dict[str, tuple[str, Any]] = {}
    sources: dict[str, str] = {}
    specs: dict[str, TensorSpec] = {}
    user_inputs: list[str] = []
    names: dict[Any, str] = {}
    nodes: list[dict[str, Any]] = []
    outputs: list[Any] = []
    for spec in signature.output_specs:
        if spec.kind != OutputKind.USER_OUTPUT:
            raise ArtifactError(f"partition {index} mutates a buffer or input ({spec.kind.name}); it cannot be shipped")
    for node in exported.graph.nodes:
        if node.op == "placeholder":
            names[node] = node.name
            spec = kinds[node.name]
            if spec.kind == InputKind.USER_INPUT:
                user_inputs.append(node.name)
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
            names[node] = node.name
            nodes.append(
                {
                    "name": node.name,
                    "op": _operator_name(node.target),
                    "args": [_encode_arg(a, names) for a in node.args],
                    "kwargs": {k: _encode_arg(v, names) for k, v in node.kwargs.items()},
                }
            )
        elif node.op == "output":
            result = node.args[0]
            outputs = [_encode_arg(a, names) for a in (result if isinstance(result, (list, tuple)) else [result])]
        else:
            raise ArtifactError(
                f"the exported partition {index} has a {node.op} node ({node.name}); only operator calls are shipped"
            )
    program = {
        "schema_version": PROGRAM_SCHEMA_VERSION,
        "inputs": user_inputs,
        "weights": list(weights),
        "nodes": nodes,
        "outputs": outputs,
    }
    data = json.dumps(program, separators=(",", ":"), allow_nan=False).encode()
    # the program must pass the worker's own checks before it is ever sent
    _AtenProgram.parse(data)
    return data, weights, sources, specs


# ----- onnx
def _export_onnx(
    module: Any, leaves: tuple[Any, ...], n_outputs: int, index: int
) -> tuple[bytes, dict[str, tuple[str, Any]], dict[str, str], dict[str, TensorSpec]]:
    import onnx
    import torch
    from onnx import numpy_helper

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
    weights: dict[str, tuple[str, Any]] = {}
    sources: dict[str, str] = {}
    specs: dict[str, TensorSpec] = {}
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        tensor = torch.from_numpy(array.copy())
        digest = tensor_digest(tensor)
        weights[init.name] = (digest, tensor)
        sources[digest] = init.name.removeprefix("gm.")
        specs[init.name] = TensorSpec.of(tensor)
        nbytes = len(init.raw_data) if init.HasField("raw_data") else array.nbytes
        for fname in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
            init.ClearField(fname)
        init.data_location = onnx.TensorProto.EXTERNAL
        del init.external_data[:]
        for key, value in (("location", ONNX_STORE_LOCATION), ("offset", "0"), ("length", str(nbytes))):
            entry = init.external_data.add()
            entry.key, entry.value = key, value
    data = model.SerializeToString()
    return data, weights, sources, specs


# --------------------------------------------------------------------- loading (worker side)
def check_operator(name: str) -> Any:
    """The ATen operator overload a program names, if the worker may call it.

    Allowed: ``getitem`` and overloads in ``torch.ops.aten`` not in
    :data:`DENIED_OPERATORS` whose string arguments are all known options
    (:data:`SAFE_STRING_ARGUMENTS`). Anything else is an :class:`ArtifactError`.
    """
    import operator

    import torch

    if name == "getitem":
        return operator.getitem
    parts = name.split(".")
    if len(parts) != 3 or parts[0] != "aten" or not all(p.isidentifier() for p in parts[1:]):
        raise ArtifactError(f"program calls {name!r:.80}; only ATen operators (aten.<op>.<overload>) may be called")
    _, op_name, overload = parts
    if op_name in DENIED_OPERATORS:
        raise ArtifactError(f"program calls aten.{op_name}, which a worker never runs")
    packet = getattr(torch.ops.aten, op_name, None)
    if packet is None or not isinstance(packet, torch._ops.OpOverloadPacket):
        raise ArtifactError(f"program calls aten.{op_name}, which this torch does not have")
    if overload not in packet.overloads():
        raise ArtifactError(f"program calls aten.{op_name}.{overload}, an overload this torch does not have")
    target = getattr(packet, overload)
    for argument in target._schema.arguments:
        type_text = str(argument.type)
        if re.search(r"\bstr\b", type_text) and argument.name not in SAFE_STRING_ARGUMENTS:
            raise ArtifactError(f"program calls {name}, whose string argument {argument.name!r} a worker refuses")
        if "Storage" in type_text:
            raise ArtifactError(f"program calls {name}, which takes a storage; a worker refuses it")
    return target


class _Ref:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _decode_arg(value: Any, defined: set[str], depth: int = 0) -> Any:
    import torch

    if depth > _MAX_JSON_DEPTH:
        raise ArtifactError("program argument nests too deep")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if key == "ref":
            if not isinstance(inner, str) or inner not in defined:
                raise ArtifactError(f"program refers to {inner!r:.60} before it is defined")
            return _Ref(inner)
        if key == "list":
            if not isinstance(inner, list):
                raise ArtifactError("program list argument is not a list")
            return [_decode_arg(v, defined, depth + 1) for v in inner]
        if key == "float" and inner in ("inf", "-inf", "nan"):
            return float(inner)
        if key == "dtype":
            return torch_dtype(inner)
        if key == "device":
            if not isinstance(inner, str) or inner.split(":")[0] not in ("cpu", "cuda"):
                raise ArtifactError(f"program names device {inner!r:.40}; only cpu and cuda devices are allowed")
            return torch.device(inner)
        if key == "layout" and inner in ("strided",):
            return torch.strided
        if key == "memory_format" and inner in ("contiguous_format", "channels_last", "preserve_format", "channels_last_3d"):
            return getattr(torch, inner)
    raise ArtifactError(f"program argument {value!r:.60} is not a known kind of value")


def _refs(value: Any) -> list[str]:
    if isinstance(value, _Ref):
        return [value.name]
    if isinstance(value, list):
        return [name for item in value for name in _refs(item)]
    if isinstance(value, dict):
        return [name for item in value.values() for name in _refs(item)]
    return []


def _resolve(value: Any, env: Mapping[str, Any]) -> Any:
    if isinstance(value, _Ref):
        return env[value.name]
    if isinstance(value, list):
        return [_resolve(v, env) for v in value]
    return value


@dataclass(frozen=True, eq=False)
class _Step:
    name: str
    target: Any
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    free_after: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class _AtenProgram:
    """A parsed, checked aten-json program."""

    inputs: tuple[str, ...]
    weights: tuple[str, ...]
    steps: tuple[_Step, ...]
    outputs: tuple[Any, ...]

    @classmethod
    def parse(cls, data: bytes) -> _AtenProgram:
        try:
            program = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ArtifactError("aten-json program is not valid JSON") from None
        if not isinstance(program, dict) or program.get("schema_version") != PROGRAM_SCHEMA_VERSION:
            raise ArtifactError(f"aten-json program is not schema version {PROGRAM_SCHEMA_VERSION}")
        inputs = [_str(n) for n in _list(program.get("inputs"))]
        weight_names = [_str(n) for n in _list(program.get("weights"))]
        raw_nodes = _list(program.get("nodes"))
        if len(raw_nodes) > _MAX_PROGRAM_NODES:
            raise ArtifactError(f"aten-json program has {len(raw_nodes)} nodes, more than {_MAX_PROGRAM_NODES}")
        defined: set[str] = set()
        for name in inputs + weight_names:
            if name in defined:
                raise ArtifactError(f"aten-json program defines {name!r} twice")
            defined.add(name)
        weight_set = set(weight_names)
        may_alias_weight: set[str] = set(weight_names)
        parsed: list[tuple[str, Any, list[Any], dict[str, Any]]] = []
        for raw in raw_nodes:
            if not isinstance(raw, dict):
                raise ArtifactError("aten-json program node is not a mapping")
            name = _str(raw.get("name"))
            if name in defined:
                raise ArtifactError(f"aten-json program defines {name!r} twice")
            target = check_operator(_str(raw.get("op")))
            args = [_decode_arg(a, defined) for a in _list(raw.get("args", []))]
            kwargs = {_str(k): _decode_arg(v, defined) for k, v in _mapping(raw.get("kwargs", {})).items()}
            cls._check_writes(name, target, args, kwargs, may_alias_weight, weight_set)
            if cls._returns_alias(target) and any(r in may_alias_weight for r in _refs(args) + _refs(kwargs)):
                may_alias_weight.add(name)
            defined.add(name)
            parsed.append((name, target, args, kwargs))
        outputs = [_decode_arg(o, defined) for o in _list(program.get("outputs"))]
        # liveness: free each intermediate after its last use
        last_use: dict[str, int] = {}
        for i, (_, _, args, kwargs) in enumerate(parsed):
            for ref in _refs(args) + _refs(kwargs):
                last_use[ref] = i
        keep = set(_refs(outputs)) | weight_set
        frees: list[list[str]] = [[] for _ in parsed]
        for ref, i in last_use.items():
            if ref not in keep:
                frees[i].append(ref)
        steps = tuple(
            _Step(name, target, tuple(args), kwargs, tuple(frees[i])) for i, (name, target, args, kwargs) in enumerate(parsed)
        )
        return cls(tuple(inputs), tuple(weight_names), steps, tuple(outputs))

    @staticmethod
    def _returns_alias(target: Any) -> bool:
        import operator

        if target is operator.getitem:
            return True
        return any(r.alias_info is not None for r in target._schema.returns)

    @staticmethod
    def _check_writes(
        name: str, target: Any, args: list[Any], kwargs: dict[str, Any], may_alias: set[str], weights: set[str]
    ) -> None:
        import operator

        if target is operator.getitem:
            return
        schema = target._schema
        for position, argument in enumerate(schema.arguments):
            info = argument.alias_info
            if info is None or not info.is_write:
                continue
            if argument.kwarg_only or position >= len(args):
                value = kwargs.get(argument.name)
            else:
                value = args[position]
            for ref in _refs(value):
                if ref in may_alias:
                    raise ArtifactError(
                        f"program node {name!r} writes in place into {ref!r}, a weight or a view of one; a worker refuses it"
                    )

    def run(self, leaves: Sequence[Any], weights: Mapping[str, Any]) -> list[Any]:
        env: dict[str, Any] = dict(zip(self.inputs, leaves))
        env.update(weights)
        for step in self.steps:
            args = [_resolve(a, env) for a in step.args]
            kwargs = {k: _resolve(v, env) for k, v in step.kwargs.items()}
            env[step.name] = step.target(*args, **kwargs)
            for name in step.free_after:
                env.pop(name, None)
        return [_resolve(o, env) for o in self.outputs]


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


@dataclass(eq=False)
class LoadedProgram:
    """A program rebuilt on a worker, ready to run on received values.

    Build it with :func:`load_program`; :meth:`run` is safe to call from
    several threads at once.
    """

    manifest: ProgramManifest
    _weights: dict[str, Any] = field(repr=False)
    _aten: _AtenProgram | None = field(default=None, repr=False)
    _session: Any = field(default=None, repr=False)
    _keepalive: list[Any] = field(default_factory=list, repr=False)

    @property
    def program_id(self) -> str:
        return self.manifest.program_id

    def check_inputs(self, values: Mapping[str, Any]) -> list[Any]:
        """The tensor leaves of the inputs, after checking them against the manifest."""
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
        for i, (leaf, spec) in enumerate(zip(leaves, manifest.tensor_inputs)):
            if not spec.matches(leaf):
                raise ArtifactError(
                    f"tensor input {i} of partition program {manifest.program_id[:12]} is {dtype_name(leaf.dtype)} "
                    f"{list(leaf.shape)}; it was exported for {spec.dtype} {list(spec.shape)} (use the same input shape)"
                )
        return leaves

    def run(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Run on named inputs; returns ``output_names`` -> value."""
        import torch

        leaves = self.check_inputs(values)
        with torch.no_grad():
            if self._aten is not None:
                outputs = self._aten.run(leaves, self._weights)
            elif self._session is None:
                outputs = []
            else:
                wanted = {i.name for i in self._session.get_inputs()}  # the exporter drops inputs nothing reads
                feeds = {f"input_{i}": leaf.numpy() for i, leaf in enumerate(leaves) if f"input_{i}" in wanted}
                outputs = [torch.from_numpy(array) for array in self._session.run(None, feeds)]
        if len(outputs) != len(self.manifest.tensor_outputs):
            raise ArtifactError(
                f"partition program {self.program_id[:12]} returned {len(outputs)} tensors, "
                f"not {len(self.manifest.tensor_outputs)}"
            )
        return {
            name: unflatten_value(structure, outputs)
            for name, structure in zip(self.manifest.output_names, self.manifest.output_structures)
        }


def load_program(program: Program, weights: Mapping[str, Any], *, onnx_threads: int = 1) -> LoadedProgram:
    """Rebuild a received program: check it, bind its weights (digest -> tensor) and prepare it to run.

    Raises :class:`ArtifactError` if the bytes do not hash to the program id,
    the program fails a check, or a weight is missing or has another shape.
    """
    manifest = program.manifest
    if sha256_hex(program.data) != manifest.program_id:
        raise ArtifactError(f"program {manifest.program_id[:12]} does not hash to its id; it is corrupt")
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
        aten = _AtenProgram.parse(program.data)
        if set(aten.weights) != set(manifest.weights):
            raise ArtifactError(f"program {manifest.program_id[:12]} names other weights than its manifest")
        if len(aten.inputs) != len(manifest.tensor_inputs) or len(aten.outputs) != len(manifest.tensor_outputs):
            raise ArtifactError(
                f"program {manifest.program_id[:12]} takes or returns another number of tensors than its manifest says"
            )
        return LoadedProgram(manifest, bound, _aten=aten)
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load_from_string(program.data)
    except Exception:
        raise ArtifactError(f"ONNX program {manifest.program_id[:12]} is not a valid ONNX model") from None
    _check_onnx(model, set(manifest.weights))
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
@dataclass(frozen=True, eq=False)
class PartitionBundle:
    """One upload: the weights it carries and the programs runnable once it is confirmed.

    Attributes:
        partition_id: the name the client and the worker use for it.
        nodes: the layer-graph nodes whose parameters it carries (the UploadPlan's P3).
        weights: digest -> tensor carried by this upload.
        programs: programs that become runnable with it (their weights are
            in this bundle or in bundles confirmed before it).
        requires: digests of weights the programs need from earlier bundles.
    """

    partition_id: str
    nodes: tuple[str, ...]
    weights: Mapping[str, Any]
    programs: tuple[Program, ...]
    requires: tuple[str, ...] = ()

    @property
    def weight_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.weights.values())

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
        programs: list[Program] = []
        for raw in _list(manifest.get("programs")):
            program_manifest = ProgramManifest.from_dict(raw)
            tensor = tensors.get(f"p:{program_manifest.program_id}")
            if tensor is None:
                raise ArtifactError(f"partition bundle lists program {program_manifest.program_id[:12]} but does not hold it")
            program_data = tensor.numpy().tobytes()
            if sha256_hex(program_data) != program_manifest.program_id:
                raise ArtifactError(f"program {program_manifest.program_id[:12]} of the bundle does not hash to its id")
            programs.append(Program(program_manifest, program_data))
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
    "Program",
    "ProgramManifest",
    "TensorSpec",
    "build_program",
    "check_operator",
    "load_program",
    "sha256_hex",
    "tensor_digest",
]
