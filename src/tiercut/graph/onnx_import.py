"""ONNX file -> LayerGraph, with the same conventions as the torch path.

The file is read with ``onnx``; weights are never needed, only their shapes,
so weights kept in external data files are not read and the values of large
initializers (> 1024 elements) are dropped from memory right after parsing.
Tensor shapes come from ``onnx.shape_inference.infer_shapes`` (strict, with
data propagation). Where inference cannot see through a computation on
constants (the TorchScript exporter's ``expand(n, -1, -1)`` goes through
``Where``; the dynamo exporter builds zero biases with ``Expand``), those
constants are evaluated with ``onnx.reference`` and inference runs again with
their values. When ``input_shape`` is given it replaces the first real graph
input's dimensions before inference (a dynamic batch, or another size of a
static export), and the shapes the file declares for its outputs and
intermediate values are dropped so that inference recomputes them.

A model exported from torch gives the torch path's totals when the exporter
keeps its layers: exporters that fold BatchNorm into the convolutions (the
TorchScript exporter in eval mode with constant folding, its default; the
dynamo exporter with ``optimize=True``, its default) write a different model
with fewer parameters, and its graph counts what the file holds. Export with
``training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False``
(TorchScript) or ``optimize=False`` (dynamo) to compare with the torch model.

Nodes
    One :class:`~tiercut.graph.types.Node` per ONNX node, plus one
    ``op="input"`` node per real graph input (an input that is not an
    initializer). ``inputs`` are the producers of the node's tensor inputs
    (tensors read inside an ``If``/``Loop`` body count as inputs of that node).
    Nodes are listed in the file's order when it is topological, otherwise in
    a topological order that keeps the file's order where it can.

Constants are folded, like the torch path's ``get_attr`` nodes
    A node that computes only from constants (``Constant``, the ``Identity``
    aliases the TorchScript exporter makes when it de-duplicates equal
    weights, ``Shape`` of a weight, casts and reshapes of initializers, a
    ``DequantizeLinear`` of quantized weights) can be computed ahead of time:
    it is not a node of the layer graph but a member of the first node that
    reads its result, and that result counts among the reader's weights.
    ``CastLike`` takes only a dtype from its second input, so that input does
    not make it data dependent. Shape arithmetic on activations (``Shape`` of
    an activation, ``Gather``, ``Concat`` of sizes) is kept as nodes, as the
    torch path keeps ``size``/``view`` glue. Constant nodes nobody reads are
    dropped.

Op kinds
    The torch path's vocabulary where ONNX has an equivalent (``Conv`` ->
    ``conv2d`` by rank, ``Gemm`` -> ``linear``, ``MatMul`` -> ``linear`` when
    one operand is a constant else ``matmul``, ``Clip`` to [0, 6] ->
    ``relu6``, ``BatchNormalization`` -> ``batchnorm2d``, ``Concat`` -> ``cat``,
    ``GlobalAveragePool`` -> ``adaptiveavgpool2d``...), otherwise the ONNX op
    type in lower case (custom-domain ops too).

FLOPs (:mod:`tiercut.graph.flops`; one multiply-add = 2, bias not counted)
    Convolutions, ``Gemm``, ``MatMul``, ``Einsum`` and ``Attention`` from
    their shapes, as ``torch.utils.flop_counter`` counts them (these are
    ``matmul_flops``); the other ops by the project's per-element formulas
    applied to their mapped op kind, so an op has the FLOPs its torch
    counterpart has. Quantized kernels (``QLinearConv``, ``MatMulInteger``),
    control flow and custom-domain ops count 0.

Weights
    ``param_bytes`` are the bytes of the constant tensors a node reads
    (initializers and folded constants), a tensor read by several nodes
    counted on the first. ``param_count`` counts the elements of those that
    are weights in the torch sense: derived from an initializer, floating
    point (or <= 8-bit integer, i.e. quantized weights), and read at a data
    slot of the op -- not a ``BatchNormalization`` running mean/variance
    (buffers in torch), not a ``Clip`` bound, a ``Reshape`` shape or other
    operand that configures the op. Literals of ``Constant`` nodes are not
    parameters. Initializers no node needs are ``unused_param_*``.

Outputs
    ``out_bytes`` sums the outputs of a node that something reads (or that
    are graph outputs), at the real element size (sub-byte types packed);
    ``out_shape``/``out_dtype`` are those of the first of them. ``is_output``
    marks the producers of graph outputs.

Block granularity (``granularity="block"``)
    Needs module scopes, which torch's exporters record: the TorchScript
    exporter in node names (``/layer1/layer1.0/conv1/Conv``; a numeric child
    is written with its parent's name, ``features.0``, and a module called
    twice gets ``relu_1``, which is read back as ``relu``), the dynamo
    exporter in the ``pkg.torch.onnx.name_scopes`` / ``class_hierarchy``
    metadata of each node. A node's block is the first module on its scope
    path that is not walked through, as in :mod:`tiercut.graph.blocks`:
    walked through are containers (with class metadata: exactly
    ``Sequential``/``ModuleList``/``ModuleDict``; from names alone: a module
    whose children are all numbered, except a numbered module whose children
    are all leaves, which is taken as one layer such as torchvision's
    ``Conv2dNormActivation``), stacks (at least ``blocks.MIN_STACK``
    children named one stem plus a number -- ``0, 1, 2``, ``denselayer1,
    denselayer2, ...`` -- of one class, or from names alone of the same
    sub-module structure and ops) and modules holding a stack. Consecutive nodes of one block (in topological order) become one
    node, named after the block (``#2`` for a later run of the same block);
    nodes at the root stay single. The block's op is its class name in lower
    case when the file records classes, else ``"block"``. A file without
    scopes (other exporters) has no blocks: its block graph has the same
    nodes as its module graph.
"""

from __future__ import annotations

import ast
import heapq
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph.blocks import MIN_STACK, collapse_runs
from tiercut.graph.flops import (
    MATMUL_CLASS_OPS,
    attention_flops,
    contraction_flops,
    conv_flops,
    size_formula_flops,
)
from tiercut.graph.types import INPUT_OP, LayerGraph, Node

# Ops that draw random numbers: not constant even when every input is.
_RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)

# Inputs that carry data (the rest configure the op: shapes, axes, bounds, scales, statistics).
# Ops not listed: every input carries data.
_DATA_SLOTS: dict[str, tuple[int, ...]] = {
    **{op: (0,) for op in (
        "Reshape", "Expand", "Tile", "Slice", "Pad", "Resize", "Upsample", "Squeeze", "Unsqueeze", "Split",
        "TopK", "Gather", "GatherElements", "GatherND", "CastLike", "Clip", "Dropout", "QuantizeLinear",
        "DequantizeLinear", "Trilu", "CumSum", "Compress", "RoiAlign", "ReduceMean", "ReduceSum", "ReduceMax",
        "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
    )},
    "ScatterElements": (0, 2), "ScatterND": (0, 2), "Scatter": (0, 2), "Where": (1, 2),
    "BatchNormalization": (0, 1, 2), "QLinearConv": (0, 3, 8), "QLinearMatMul": (0, 3),
    "Shape": (), "Size": (), "ConstantOfShape": (), "Range": (), "OneHot": (), "EyeLike": (),
}

# Inputs that only lend their dtype (not a data dependency).
_TYPE_ONLY_SLOTS: dict[str, tuple[int, ...]] = {"CastLike": (1,)}

# ONNX op type -> the torch path's op kind (rank-dependent ones are handled in _op_kind).
_OP_NAMES = {
    "Gemm": "linear", "Relu": "relu", "Add": "add", "Sum": "add", "Sub": "sub", "Mul": "mul", "Div": "div",
    "Neg": "neg", "Abs": "abs", "Exp": "exp", "Sqrt": "sqrt", "Pow": "pow", "Sigmoid": "sigmoid",
    "Tanh": "tanh", "HardSwish": "hardswish", "HardSigmoid": "hardsigmoid", "LeakyRelu": "leakyrelu",
    "Elu": "elu", "Gelu": "gelu", "Softmax": "softmax", "LogSoftmax": "log_softmax", "Concat": "cat",
    "Flatten": "flatten", "Reshape": "reshape", "LayerNormalization": "layernorm",
    "GroupNormalization": "groupnorm", "ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "amax",
    "Einsum": "einsum", "Attention": "scaled_dot_product_attention", "Dropout": "dropout",
}

_RANK_OPS = {
    "Conv": "conv{}d", "ConvTranspose": "convtranspose{}d", "MaxPool": "maxpool{}d", "AveragePool": "avgpool{}d",
    "GlobalAveragePool": "adaptiveavgpool{}d", "GlobalMaxPool": "adaptivemaxpool{}d",
    "InstanceNormalization": "instancenorm{}d",
}

_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
_CLASSES_KEY = "pkg.torch.onnx.class_hierarchy"
_CONTAINER_CLASSES = frozenset(
    f"torch.nn.modules.container.{name}" for name in ("Sequential", "ModuleList", "ModuleDict")
)
_REPEAT_SUFFIX = re.compile(r"^(.+)_(\d+)$")
_STEM_NUMBER = re.compile(r"^(.*?)(\d+)$")


# --------------------------------------------------------------------------- tensors
@dataclass(frozen=True)
class _Tensor:
    """What shape inference knows of one tensor."""

    shape: tuple[int, ...] | None  # None: not static
    dtype: str
    bits: int  # bits per element

    @property
    def numel(self) -> int:
        return math.prod(self.shape) if self.shape is not None else 0

    @property
    def nbytes(self) -> int:
        return (self.numel * self.bits + 7) // 8

    @property
    def is_weight_dtype(self) -> bool:
        """Floating point, or an integer of <= 8 bits (quantized weights); not sizes or indices."""
        return "float" in self.dtype or ("int" in self.dtype and self.bits <= 8)


def _sub_byte_bits() -> dict[int, int]:
    import onnx

    bits = {"INT4": 4, "UINT4": 4, "FLOAT4E2M1": 4, "INT2": 2, "UINT2": 2}
    return {getattr(onnx.TensorProto, name): b for name, b in bits.items() if hasattr(onnx.TensorProto, name)}


def _elem(elem_type: int, sub_byte: dict[int, int]) -> tuple[str, int]:
    import numpy as np
    import onnx

    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return f"onnx_type_{elem_type}", 0
    return dtype.name, sub_byte.get(elem_type, dtype.itemsize * 8)


def _tensor_of_type(type_proto: Any, sub_byte: dict[int, int]) -> _Tensor:
    kind = type_proto.WhichOneof("value")
    if kind != "tensor_type":
        # sequences, maps, optionals: no fixed size (the torch path counts such values as 0 bytes)
        return _Tensor(shape=(), dtype=kind or "unknown", bits=0)
    tensor_type = type_proto.tensor_type
    dtype, bits = _elem(tensor_type.elem_type, sub_byte)
    if not tensor_type.HasField("shape"):
        return _Tensor(shape=None, dtype=dtype, bits=bits)
    dims: list[int] = []
    for dim in tensor_type.shape.dim:
        if not dim.HasField("dim_value") or dim.dim_value < 0:
            return _Tensor(shape=None, dtype=dtype, bits=bits)
        dims.append(int(dim.dim_value))
    return _Tensor(shape=tuple(dims), dtype=dtype, bits=bits)


def _no_shape(name: str) -> TiercutError:
    return TiercutError(
        f"ONNX tensor {name!r} has no static shape after shape inference; pass --input-shape "
        "(e.g. 1,3,224,224) or export the model with static shapes"
    )


# --------------------------------------------------------------------------- loading
def _load(path: Path) -> Any:
    import onnx

    if not path.exists():
        raise TiercutError(f"ONNX file {str(path)!r} does not exist; check the path")
    if not path.is_file():
        raise TiercutError(f"ONNX path {str(path)!r} is not a file; pass an .onnx model file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError as exc:
        raise TiercutError(f"cannot read ONNX file {str(path)!r}: {exc.strerror or exc}; check its permissions") from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TiercutError(
            f"{str(path)!r} is not an ONNX model (cannot parse it: {first[:120]}); pass a file written by onnx.save "
            "or torch.onnx.export"
        ) from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.opset_import:
        raise TiercutError(
            f"{str(path)!r} is not an ONNX model (no graph, IR version or opset); pass a file written by onnx.save "
            "or torch.onnx.export"
        )
    return model


def _set_input_shape(model: Any, value_info: Any, input_shape: tuple[int, ...], path: Path) -> None:
    """Replace a graph input's dims by ``input_shape``; drop declared shapes inference must redo."""
    tensor_type = value_info.type.tensor_type
    dims = tensor_type.shape.dim
    if value_info.type.WhichOneof("value") != "tensor_type" or not tensor_type.HasField("shape"):
        raise TiercutError(f"input {value_info.name!r} of {path.name} has no declared rank; export it with one")
    if len(dims) != len(input_shape):
        declared = ",".join(d.dim_param or str(d.dim_value) if d.dim_param or d.HasField("dim_value") else "?" for d in dims)
        raise TiercutError(
            f"input shape {','.join(map(str, input_shape))} has rank {len(input_shape)} but input "
            f"{value_info.name!r} of {path.name} has rank {len(dims)} ({declared}); pass {len(dims)} sizes"
        )
    for dim, size in zip(dims, input_shape):
        dim.Clear()
        dim.dim_value = int(size)
    del model.graph.value_info[:]
    for output in model.graph.output:
        if output.type.WhichOneof("value") == "tensor_type":
            output.type.tensor_type.ClearField("shape")


def _infer(model: Any, path: Path, input_shape: tuple[int, ...] | None) -> Any:
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = "check --input-shape" if input_shape is not None else "check the model with onnx.checker"
        raise TiercutError(f"ONNX shape inference failed on {path.name}: {first[:200]}; {hint}") from None


# --------------------------------------------------------------------------- scopes
@dataclass
class _Scopes:
    """The module tree torch's exporters record, as far as the file shows it."""

    chain: dict[str, tuple[str, ...]] = field(default_factory=dict)  # onnx node key -> qualified paths, root first
    classes: dict[str, str] = field(default_factory=dict)  # qualified path -> class (dynamo metadata)
    children: dict[str, set[str]] = field(default_factory=dict)  # path -> child paths ('' = root)
    ops: dict[str, set[str]] = field(default_factory=dict)  # path -> op types of the nodes called there
    _walks: dict[str, bool] = field(default_factory=dict)  # memo of walks_through (filled after all adds)

    def add(self, key: str, op_type: str, chain: tuple[str, ...], classes: tuple[str, ...] = ()) -> None:
        self.chain[key] = chain
        self.ops.setdefault(chain[-1] if chain else "", set()).add(op_type)
        parent = ""
        for i, path in enumerate(chain):
            self.children.setdefault(parent, set()).add(path)
            self.children.setdefault(path, set())
            if i < len(classes) and classes[i]:
                self.classes[path] = classes[i]
            parent = path

    @property
    def has_classes(self) -> bool:
        return bool(self.classes)

    # --------------------------------------------------- block rule (tiercut.graph.blocks)
    @staticmethod
    def _atom(path: str) -> str:
        return path.rsplit(".", 1)[-1]

    def _is_leaf(self, path: str) -> bool:
        return not self.children.get(path)

    def _signature(self, path: str) -> Any:
        if path in self.classes:
            return self.classes[path]
        start = len(path) + 1
        inside = [path, *self._descendants(path)]
        return frozenset((p[start:], op) for p in inside for op in self.ops.get(p, ()))

    def _descendants(self, path: str) -> Iterable[str]:
        for child in self.children.get(path, ()):
            yield child
            yield from self._descendants(child)

    def _is_container(self, path: str) -> bool:
        kids = self.children.get(path, set())
        if not kids:
            return False
        if self.has_classes and path in self.classes:
            return self.classes[path] in _CONTAINER_CLASSES
        if not all(self._atom(k).isdigit() for k in kids):
            return False
        # a numbered module made of leaves only is a layer (Conv2dNormActivation), not a container
        return not (self._atom(path).isdigit() and all(self._is_leaf(k) for k in kids))

    def _is_stack(self, path: str) -> bool:
        kids = sorted(self.children.get(path, ()))
        if len(kids) < MIN_STACK:
            return False
        stems = set()
        for kid in kids:
            match = _STEM_NUMBER.match(self._atom(kid))
            if match is None:
                return False
            stems.add(match.group(1))
        return len(stems) == 1 and len({self._signature(k) for k in kids}) == 1

    def walks_through(self, path: str) -> bool:
        if path not in self._walks:
            self._walks[path] = (
                self._is_container(path)
                or self._is_stack(path)
                or any(self._is_stack(k) for k in self.children.get(path, ()))
            )
        return self._walks[path]

    def block_of(self, key: str) -> str:
        """The block an ONNX node belongs to ('' at the root)."""
        chain = self.chain.get(key, ())
        for path in chain:
            if not self.walks_through(path):
                return path
        return chain[-1] if chain else ""

    def block_op(self, path: str) -> str:
        cls = self.classes.get(path)
        return cls.rsplit(".", 1)[-1].lower() if cls else "block"


def _legacy_chain(name: str) -> tuple[str, ...]:
    """Qualified module paths from a TorchScript-exporter node name ``/layer1/layer1.0/conv1/Conv``."""
    if not name.startswith("/"):
        return ()
    scopes = [s for s in name[1:].split("/")[:-1] if s]
    parts: list[str] = []
    chain: list[str] = []
    previous = ""
    for scope in scopes:
        # numbered children are written with their parent's name: features / features.0 / features.0.0
        if previous and scope.startswith(previous + ".") and scope[len(previous) + 1:].replace(".", "").isdigit():
            parts.extend(scope[len(previous) + 1:].split("."))
        elif not chain and all(a.isdigit() for a in scope.split(".")):
            parts.extend(scope.split("."))
        else:
            parts.append(scope)
        previous = scope
        chain.append(".".join(parts))
    return tuple(chain)


def _merge_repeat_calls(chains: dict[str, tuple[str, ...]], weight_names: list[str]) -> dict[str, tuple[str, ...]]:
    """``layer1.0.relu_1`` (second call of ``layer1.0.relu``) -> ``layer1.0.relu``."""
    paths = {p for chain in chains.values() for p in chain}
    rename: dict[str, str] = {}
    for path in paths:
        parent, _, atom = path.rpartition(".")
        match = _REPEAT_SUFFIX.match(atom)
        if match is None:
            continue
        base = f"{parent}.{match.group(1)}" if parent else match.group(1)
        has_weights = any(w.startswith(path + ".") for w in weight_names)
        if base in paths and not has_weights:
            rename[path] = base

    def fix(path: str) -> str:
        for old, new in rename.items():
            if path == old or path.startswith(old + "."):
                return new + path[len(old):]
        return path

    return {key: tuple(fix(p) for p in chain) for key, chain in chains.items()}


def _scopes(onnx_nodes: list[Any], keys: list[str], weight_names: list[str]) -> _Scopes:
    scopes = _Scopes()
    legacy: dict[str, tuple[str, ...]] = {}
    for key, node in zip(keys, onnx_nodes):
        props = {p.key: p.value for p in node.metadata_props}
        if _SCOPES_KEY in props:
            try:
                names = [str(s) for s in ast.literal_eval(props[_SCOPES_KEY])]
                classes = [str(s) for s in ast.literal_eval(props.get(_CLASSES_KEY, "[]"))]
            except (ValueError, SyntaxError):
                names, classes = [], []
            if len(classes) != len(names):
                classes = []
            chain = tuple(n for n in names[1:-1] if n)
            scopes.add(key, node.op_type, chain, tuple(classes[1:-1]) if classes else ())
        else:
            legacy[key] = _legacy_chain(node.name)
    op_types = {key: node.op_type for key, node in zip(keys, onnx_nodes)}
    for key, chain in _merge_repeat_calls(legacy, weight_names).items():
        scopes.add(key, op_types[key], chain)
    return scopes


# --------------------------------------------------------------------------- graph walk
def _subgraph_reads(node: Any) -> list[str]:
    """Outer-scope tensors an ``If``/``Loop``/``Scan`` body reads."""
    import onnx

    reads: list[str] = []
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            local = {i.name for i in graph.input} | {i.name for i in graph.initializer}
            for inner in graph.node:
                local.update(inner.output)
            for inner in graph.node:
                reads.extend(n for n in inner.input if n and n not in local)
                reads.extend(n for n in _subgraph_reads(inner) if n not in local)
    return reads


def _has_subgraph(node: Any) -> bool:
    import onnx

    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def _topological(onnx_nodes: list[Any], keys: list[str], available: set[str], path: Path) -> list[int]:
    """Node indices in a topological order, the file's order where possible."""
    producer: dict[str, int] = {}
    for i, node in enumerate(onnx_nodes):
        for out in node.output:
            if out:
                producer[out] = i
    deps: list[set[int]] = []
    for i, node in enumerate(onnx_nodes):
        mine: set[int] = set()
        for name in list(node.input) + _subgraph_reads(node):
            if not name:
                continue
            if name in producer:
                mine.add(producer[name])
            elif name not in available:
                raise TiercutError(
                    f"ONNX node {keys[i]!r} of {path.name} reads tensor {name!r}, which no node, input or "
                    "initializer provides; the file is malformed, re-export it"
                )
        deps.append(mine)
    users: list[list[int]] = [[] for _ in onnx_nodes]
    pending = [len(d) for d in deps]
    for i, mine in enumerate(deps):
        for d in mine:
            users[d].append(i)
    ready = [i for i, n in enumerate(pending) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            pending[u] -= 1
            if pending[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(onnx_nodes):
        stuck = next(keys[i] for i, n in enumerate(pending) if n > 0)
        raise TiercutError(f"ONNX graph of {path.name} has a cycle through node {stuck!r}; the file is malformed")
    return order


def _node_keys(onnx_nodes: list[Any]) -> list[str]:
    """Unique names: the ONNX node name, else its first output, made unique with #n."""
    keys: list[str] = []
    taken: set[str] = set()
    for i, node in enumerate(onnx_nodes):
        base = node.name or next((o for o in node.output if o), "") or f"{node.op_type}_{i}"
        key = base
        n = 1
        while key in taken:
            n += 1
            key = f"{base}#{n}"
        taken.add(key)
        keys.append(key)
    return keys


# --------------------------------------------------------------------------- ops and FLOPs
def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


@dataclass
class _Context:
    """Everything known about the graph's tensors while building nodes."""

    tensors: dict[str, _Tensor]
    constant: set[str]  # tensor names computable ahead of time
    producer: dict[str, Any]  # tensor name -> onnx node
    initializers: dict[str, Any]  # the initializers whose values were kept

    def info(self, name: str) -> _Tensor:
        tensor = self.tensors.get(name)
        if tensor is None or tensor.shape is None:
            raise _no_shape(name)
        return tensor

    def shape(self, name: str) -> tuple[int, ...]:
        return self.info(name).shape or ()

    def value(self, name: str, depth: int = 0) -> Any:
        """The value of a small constant (through Identity/Cast), or None if not at hand."""
        from onnx import numpy_helper

        if not name or depth > 8:
            return None
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            value = _attr(node, "value")
            if value is not None:
                return numpy_helper.to_array(value)
            for key in ("value_float", "value_int", "value_floats", "value_ints"):
                got = _attr(node, key)
                if got is not None:
                    return got
            return None
        if node.op_type in ("Identity", "Cast", "CastLike") and node.input:
            return self.value(node.input[0], depth + 1)
        return None


def _clip_kind(node: Any, ctx: _Context) -> str:
    import numpy as np

    if len(node.input) >= 3:
        low, high = ctx.value(node.input[1]), ctx.value(node.input[2])
    else:  # opset < 11: attributes
        low, high = _attr(node, "min"), _attr(node, "max")
    try:
        if low is not None and high is not None and float(np.asarray(low)) == 0.0 and float(np.asarray(high)) == 6.0:
            return "relu6"
    except (TypeError, ValueError):
        pass
    return "clamp"


def _op_kind(node: Any, ctx: _Context) -> str:
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return op.lower()
    if op in _RANK_OPS:
        rank = len(ctx.shape(node.input[0]))
        return _RANK_OPS[op].format(max(rank - 2, 1))
    if op == "BatchNormalization":
        rank = len(ctx.shape(node.input[0]))
        return f"batchnorm{max(rank - 2, 1)}d"
    if op == "MatMul":
        return "linear" if any(i in ctx.constant for i in node.input) else "matmul"
    if op == "Clip":
        return _clip_kind(node, ctx)
    return _OP_NAMES.get(op, op.lower())


def _einsum_flops(equation: str, shapes: list[tuple[int, ...]]) -> int:
    """Operands contracted pairwise left to right, each step ``2 * prod(sizes of its indices)``
    (``bij,bjk->bik``: ``2*b*i*j*k``, torch's ``bmm`` count). One operand (a transpose or a
    reduction) is not a product: 0."""
    lhs, arrow, rhs = equation.replace(" ", "").partition("->")
    operands = lhs.split(",")
    if len(operands) != len(shapes) or len(operands) < 2:
        return 0
    sizes: dict[str, int] = {}
    terms: list[list[str]] = []
    for term, shape in zip(operands, shapes):
        head, dots, tail = term.partition("...")
        broadcast = len(shape) - len(head) - len(tail) if dots else 0
        # the dims under "..." broadcast across operands: name them by their position from the right
        indices = list(head) + [f"...{broadcast - k}" for k in range(broadcast)] + list(tail)
        if len(indices) != len(shape):
            return 0
        for index, size in zip(indices, shape):
            sizes[index] = max(sizes.get(index, 1), size)
        terms.append(indices)
    if arrow:
        kept = set(rhs.replace("...", "")) | {x for t in terms for x in t if x.startswith("...")}
    else:  # implicit output: the indices that appear once
        counts = [x for t in terms for x in t]
        kept = {x for x in counts if counts.count(x) == 1 or x.startswith("...")}
    flops = 0
    current = set(terms[0])
    for k in range(1, len(terms)):
        joint = current | set(terms[k])
        flops += 2 * math.prod(sizes[x] for x in joint)
        later = {x for t in terms[k + 1:] for x in t} | kept
        current = {x for x in joint if x in later}
    return flops


def _attention(node: Any, ctx: _Context) -> int:
    q, k, v = (ctx.shape(node.input[i]) for i in range(3))
    if len(q) == 4:
        batch_heads, query_len, head_dim = q[0] * q[1], q[2], q[3]
        key_len, value_dim = k[2], v[3]
        if len(node.input) > 4 and node.input[4]:
            key_len += ctx.shape(node.input[4])[2]
    else:
        q_heads = int(_attr(node, "q_num_heads", 1))
        kv_heads = int(_attr(node, "kv_num_heads", 1))
        batch_heads, query_len, head_dim = q[0] * q_heads, q[1], q[2] // q_heads
        key_len, value_dim = k[1], v[2] // kv_heads
        if len(node.input) > 4 and node.input[4]:
            key_len += ctx.shape(node.input[4])[2]
    return attention_flops(batch_heads, query_len, key_len, head_dim, value_dim)


def _node_flops(node: Any, kind: str, out_shape: tuple[int, ...], ctx: _Context) -> int:
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return 0
    out_numel = math.prod(out_shape)
    if op in ("Conv", "ConvTranspose"):
        return conv_flops(ctx.shape(node.input[0]), ctx.shape(node.input[1]), out_shape, op == "ConvTranspose")
    if op == "Gemm":
        a = ctx.shape(node.input[0])
        return contraction_flops(out_numel, a[0] if _attr(node, "transA", 0) else a[-1])
    if op == "MatMul":
        return contraction_flops(out_numel, ctx.shape(node.input[0])[-1])
    if op == "Einsum":
        equation = _attr(node, "equation", b"")
        if isinstance(equation, bytes):
            equation = equation.decode()
        return _einsum_flops(str(equation), [ctx.shape(i) for i in node.input])
    if op == "Attention":
        return _attention(node, ctx)
    first = [i for i in node.input if i]
    in_numel = ctx.info(first[0]).numel if first else 0
    kernel = _attr(node, "kernel_shape")
    kernel_area = math.prod(kernel) if kernel else 1
    return size_formula_flops(kind, in_numel, out_numel, kernel_area)


# --------------------------------------------------------------------------- constants
_KEEP_VALUES_UP_TO = 1024  # initializers up to this many elements keep their values (sizes, bounds, scalars)
_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


def _strip_large_initializers(model: Any) -> dict[str, tuple[int, ...]]:
    """Drop the values of large initializers (only their shapes are needed); returns their names and dims.

    Keeps memory at the size of the graph rather than of the weights and
    makes shape inference (which copies the model) fast.
    """
    import onnx

    stripped: dict[str, tuple[int, ...]] = {}
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or math.prod(tensor.dims) > _KEEP_VALUES_UP_TO:
            for name in _DATA_FIELDS:
                tensor.ClearField(name)
            stripped[tensor.name] = tuple(int(d) for d in tensor.dims)
    return stripped


def _is_constant_node(node: Any, constant: set[str]) -> bool:
    if node.op_type in _RANDOM_OPS or _has_subgraph(node):
        return False
    skip = _TYPE_ONLY_SLOTS.get(node.op_type, ())
    deps = [name for slot, name in enumerate(node.input) if name and slot not in skip]
    if not deps:
        return node.op_type == "Constant"
    return all(name in constant for name in deps)


def _data_inputs(node: Any) -> list[tuple[int, str]]:
    slots = _DATA_SLOTS.get(node.op_type)
    return [(s, n) for s, n in enumerate(node.input) if n and (slots is None or s in slots)]


@dataclass
class _Analysis:
    """The graph's nodes in topological order and what can be computed ahead of time.

    Attributes:
        nodes, keys: ONNX nodes in topological order and their unique names.
        inputs: names of the real graph inputs.
        initializers: name -> TensorProto (large ones without values).
        constant: tensors computable ahead of time (initializers and outputs of constant nodes).
        from_weights: constants whose data derive from an initializer.
        kept: per node, whether it is a layer-graph node (else folded into its first reader).
        producer: tensor -> (index in ``nodes``) of the node writing it.
        consumed: tensors some node reads.
        outputs: graph output names.
    """

    nodes: list[Any]
    keys: list[str]
    inputs: list[str]
    initializers: dict[str, Any]
    constant: set[str]
    from_weights: set[str]
    kept: list[bool]
    producer: dict[str, int]
    consumed: set[str]
    outputs: list[str]

    def reads(self, i: int) -> list[str]:
        """Tensors node ``i`` reads (its inputs, then what its subgraphs read), in slot order."""
        node = self.nodes[i]
        return list(node.input) + _subgraph_reads(node)

    def counted_outputs(self, i: int) -> list[str]:
        """Outputs of node ``i`` that something reads or that are graph outputs (else its first)."""
        outs = [o for o in self.nodes[i].output if o]
        counted = [o for o in outs if o in self.consumed or o in self.outputs]
        return counted or outs[:1]

    def is_folded_tensor(self, name: str) -> bool:
        """A constant that readers take as a weight (not the output of a kept node)."""
        if name not in self.constant:
            return False
        i = self.producer.get(name)
        return i is None or not self.kept[i]

    def required(self) -> list[str]:
        """Tensors whose shapes the layer graph needs, in topological order."""
        need: list[str] = list(self.inputs)
        for i, keep in enumerate(self.kept):
            if keep:
                need.extend(n for n in self.reads(i) if n)
                need.extend(self.counted_outputs(i))
        return list(dict.fromkeys(need))


def _analyse(graph: Any, path: Path) -> _Analysis:
    initializers = {t.name: t for t in graph.initializer}
    inputs = [vi.name for vi in graph.input if vi.name not in initializers]
    onnx_nodes = list(graph.node)
    keys = _node_keys(onnx_nodes)
    order = _topological(onnx_nodes, keys, set(inputs) | set(initializers), path)
    onnx_nodes = [onnx_nodes[i] for i in order]
    keys = [keys[i] for i in order]
    outputs = [o.name for o in graph.output]

    constant = set(initializers)
    from_weights = set(initializers)
    producer: dict[str, int] = {}
    kept: list[bool] = []
    for i, node in enumerate(onnx_nodes):
        is_constant = _is_constant_node(node, constant)
        derived = any(name in from_weights for _, name in _data_inputs(node))
        for out in node.output:
            if out:
                producer[out] = i
                if is_constant:
                    constant.add(out)
                    if derived:
                        from_weights.add(out)
        # constant nodes that are graph outputs stay nodes; the others fold into their first reader
        kept.append(not is_constant or any(o in outputs for o in node.output))
    consumed = {name for node in onnx_nodes for name in list(node.input) + _subgraph_reads(node) if name}
    return _Analysis(
        nodes=onnx_nodes, keys=keys, inputs=inputs, initializers=initializers, constant=constant,
        from_weights=from_weights, kept=kept, producer=producer, consumed=consumed, outputs=outputs,
    )


def _evaluate_constants(
    model: Any, analysis: _Analysis, stripped: dict[str, tuple[int, ...]], elem_types: dict[str, int]
) -> dict[str, Any]:
    """Values of the computed constants kept nodes read, by ``onnx.reference`` (those it can compute).

    Shape inference does not see through every constant computation (the
    TorchScript exporter's ``expand(n, -1, -1)`` goes through ``Where``);
    evaluating these small subgraphs gives their values, hence the shapes.
    """
    import onnx
    from onnx.reference import ReferenceEvaluator

    wanted: list[int] = []
    for i, keep in enumerate(analysis.kept):
        if not keep:
            continue
        for name in analysis.reads(i):
            j = analysis.producer.get(name)
            if j is not None and not analysis.kept[j] and analysis.nodes[j].op_type != "Constant":
                wanted.append(j)
    ancestors: set[int] = set()
    evaluable: list[int] = []
    for j in dict.fromkeys(wanted):
        mine: set[int] = set()
        stack = [j]
        ok = True
        while stack and ok:
            k = stack.pop()
            if k in mine:
                continue
            mine.add(k)
            if _shape_of_stripped(analysis.nodes[k], stripped) is not None:
                continue
            skip = _TYPE_ONLY_SLOTS.get(analysis.nodes[k].op_type, ())
            for slot, name in enumerate(analysis.nodes[k].input):
                if slot in skip:
                    continue
                if name in stripped:
                    ok = False
                elif name in analysis.producer:
                    stack.append(analysis.producer[name])
        if ok:
            ancestors |= mine
            evaluable.append(j)
    if not evaluable:
        return {}
    targets = [o for j in evaluable for o in analysis.nodes[j].output if o]
    needed = sorted(ancestors)

    sub_nodes = []
    for k in needed:
        node = analysis.nodes[k]
        dims = _shape_of_stripped(node, stripped)
        if node.op_type == "CastLike" and len(node.input) > 1 and node.input[1] in elem_types:
            # the dtype source need not be a constant: cast to its (inferred) type instead
            sub_nodes.append(onnx.helper.make_node("Cast", node.input[:1], list(node.output), to=elem_types[node.input[1]]))
        elif dims is None:
            sub_nodes.append(node)
        else:  # the shape of a weight whose values were dropped: known from its dims
            value = onnx.helper.make_tensor("value", onnx.TensorProto.INT64, [len(dims)] if node.op_type == "Shape" else [], dims)
            sub_nodes.append(onnx.helper.make_node("Constant", [], list(node.output), value=value))
    reads = {n for node in sub_nodes for n in node.input}
    sub = onnx.helper.make_graph(
        sub_nodes, "constants", [],
        [onnx.helper.make_empty_tensor_value_info(t) for t in targets],
        initializer=[t for name, t in analysis.initializers.items() if name in reads],
    )
    submodel = onnx.helper.make_model(sub, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    submodel.functions.extend(model.functions)
    try:
        values = ReferenceEvaluator(submodel).run(None, {})
    except Exception:
        return {}  # the missing shapes are then reported as such
    return dict(zip(targets, values))


def _shape_of_stripped(node: Any, stripped: dict[str, tuple[int, ...]]) -> list[int] | None:
    """What ``Shape``/``Size`` of a weight whose values were dropped returns (None for other nodes)."""
    if node.op_type not in ("Shape", "Size") or not node.input or node.input[0] not in stripped:
        return None
    dims = list(stripped[node.input[0]])
    if node.op_type == "Size":
        return [math.prod(dims)]
    return dims[int(_attr(node, "start", 0)):_attr(node, "end", None)]


def _with_values(model: Any, values: dict[str, Any]) -> Any:
    """A copy of ``model`` whose tensors in ``values`` are initializers instead of node outputs."""
    import onnx
    from onnx import numpy_helper

    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    keep = [n for n in folded.graph.node if not any(o in values for o in n.output)]
    del folded.graph.node[:]
    folded.graph.node.extend(keep)
    for name, value in values.items():
        folded.graph.initializer.append(numpy_helper.from_array(value, name))
    return folded


def _tensor_infos(graph: Any, sub_byte: dict[int, int]) -> dict[str, _Tensor]:
    tensors: dict[str, _Tensor] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        if vi.name:
            tensors[vi.name] = _tensor_of_type(vi.type, sub_byte)
    for t in graph.initializer:
        dtype, bits = _elem(t.data_type, sub_byte)
        tensors[t.name] = _Tensor(shape=tuple(int(d) for d in t.dims), dtype=dtype, bits=bits)
    return tensors


def _shapes(
    model: Any, analysis: _Analysis, stripped: dict[str, tuple[int, ...]], path: Path, input_shape: tuple[int, ...] | None
) -> dict[str, _Tensor]:
    """Every tensor's shape and dtype: inference, then constant evaluation where inference fell short."""
    import numpy as np

    sub_byte = _sub_byte_bits()
    inferred = _infer(model, path, input_shape).graph
    tensors = _tensor_infos(inferred, sub_byte)
    missing = [t for t in analysis.required() if tensors.get(t) is None or tensors[t].shape is None]
    if not missing:
        return tensors
    elem_types = {
        vi.name: vi.type.tensor_type.elem_type
        for vi in list(inferred.input) + list(inferred.value_info)
        if vi.type.WhichOneof("value") == "tensor_type" and vi.type.tensor_type.elem_type
    }
    values = _evaluate_constants(model, analysis, stripped, elem_types)
    if not values:
        return tensors
    tensors.update(_tensor_infos(_infer(_with_values(model, values), path, input_shape).graph, sub_byte))
    for name, value in values.items():
        array = np.asarray(value)
        tensors[name] = _Tensor(shape=tuple(int(d) for d in array.shape), dtype=array.dtype.name, bits=array.dtype.itemsize * 8)
    return tensors


# --------------------------------------------------------------------------- building
@dataclass
class _Parsed:
    """An ONNX file read and analysed: what the layer-graph steps below share."""

    path: Path
    analysis: _Analysis
    ctx: _Context
    tensors: dict[str, _Tensor]
    kept_index: list[int]
    scopes: _Scopes


def _parse(path: Path, input_shape: tuple[int, ...] | None) -> _Parsed:
    """Step 1: load the file (no weight values), set the input shape, analyse and infer every tensor's shape."""
    model = _load(path)
    stripped = _strip_large_initializers(model)
    initializer_names = {t.name for t in model.graph.initializer}
    real_inputs = [vi for vi in model.graph.input if vi.name not in initializer_names]
    if not real_inputs:
        raise TiercutError(
            f"ONNX graph of {path.name} has no inputs (only initializers or nothing); export the model with its input"
        )
    if input_shape is not None:
        _set_input_shape(model, real_inputs[0], tuple(input_shape), path)
    analysis = _analyse(model.graph, path)
    tensors = _shapes(model, analysis, stripped, path, input_shape)
    producer = {o: analysis.nodes[i] for o, i in analysis.producer.items()}
    ctx = _Context(
        tensors=tensors, constant=analysis.constant, producer=producer,
        initializers={k: v for k, v in analysis.initializers.items() if k not in stripped},
    )
    kept_index = [i for i, keep in enumerate(analysis.kept) if keep]
    scopes = _scopes([analysis.nodes[i] for i in kept_index], [analysis.keys[i] for i in kept_index],
                     sorted(analysis.initializers))
    return _Parsed(path, analysis, ctx, tensors, kept_index, scopes)


def _input_nodes(parsed: _Parsed) -> list[Node]:
    """Step 2: one ``op="input"`` node per real graph input."""
    nodes = []
    for name in parsed.analysis.inputs:
        info = parsed.ctx.info(name)
        nodes.append(
            Node(
                name=name, op=INPUT_OP, out_bytes=info.nbytes, out_shape=info.shape or (), out_dtype=info.dtype,
                is_output=name in parsed.analysis.outputs, members=(name,),
            )
        )
    return nodes


@dataclass
class _Weights:
    """Constant tensors charged to kept nodes: each counted once, on its first reader.

    Attributes:
        owner: folded node index -> the kept node index that reads it first.
        reached: constants some kept node needs, directly or through folded nodes.
        counted: constants already charged to a node.
        table: every constant tensor a node reads -> bytes (shared ones once).
    """

    analysis: _Analysis
    owner: dict[int, int] = field(default_factory=dict)
    reached: set[str] = field(default_factory=set)
    counted: set[str] = field(default_factory=set)
    table: dict[str, int] = field(default_factory=dict)

    def claim(self, tensor: str, reader: int) -> None:
        """Mark ``tensor`` and the folded nodes computing it as needed by ``reader`` (first reader wins)."""
        a = self.analysis
        stack = [tensor]
        while stack:
            name = stack.pop()
            if name in self.reached:
                continue
            self.reached.add(name)
            j = a.producer.get(name)
            if j is not None and not a.kept[j]:
                self.owner.setdefault(j, reader)
                stack.extend(source for source in a.nodes[j].input if source)

    def charge(self, i: int, ctx: _Context) -> tuple[int, int, dict[str, None]]:
        """(param bytes, param count, constant names) of kept node ``i``, charging each constant once."""
        a = self.analysis
        param_bytes = param_count = 0
        params: dict[str, None] = {}
        data_slots = _DATA_SLOTS.get(a.nodes[i].op_type)
        for slot, tensor in enumerate(a.reads(i)):
            if not tensor or not a.is_folded_tensor(tensor):
                continue
            self.claim(tensor, i)
            info = ctx.info(tensor)
            if info.nbytes > 0:
                params[tensor] = None
                self.table.setdefault(tensor, int(info.nbytes))
            if tensor in self.counted:
                continue
            self.counted.add(tensor)
            param_bytes += info.nbytes
            is_data = data_slots is None or slot in data_slots
            if is_data and tensor in a.from_weights and info.is_weight_dtype:
                param_count += info.numel
        return param_bytes, param_count, params


def _compute_nodes(parsed: _Parsed, weights: _Weights, taken: set[str]) -> tuple[list[Node], dict[int, str]]:
    """Step 3: one node per kept ONNX node, with its producers, FLOPs, weights and outputs."""
    a, ctx = parsed.analysis, parsed.ctx
    name_of: dict[str, str] = {name: name for name in a.inputs}  # tensor -> layer-graph node writing it
    node_name: dict[int, str] = {}
    nodes: list[Node] = []
    for i in parsed.kept_index:
        node, key = a.nodes[i], a.keys[i]
        name = key
        while name in taken:
            name += "#node"
        taken.add(name)
        node_name[i] = name
        param_bytes, param_count, params = weights.charge(i, ctx)
        inputs = [name_of[t] for t in a.reads(i) if t and not a.is_folded_tensor(t) and t in name_of]
        infos = [ctx.info(o) for o in a.counted_outputs(i)]
        first = infos[0] if infos else _Tensor(shape=(), dtype="float32", bits=0)
        kind = _op_kind(node, ctx)
        flops = _node_flops(node, kind, first.shape or (), ctx) if infos else 0
        for out in node.output:
            if out:
                name_of[out] = name
        chain = parsed.scopes.chain.get(key, ())
        nodes.append(
            Node(
                name=name,
                op=kind,
                inputs=tuple(dict.fromkeys(inputs)),
                flops=int(flops),
                matmul_flops=int(flops) if kind in MATMUL_CLASS_OPS else 0,
                param_bytes=param_bytes,
                param_count=param_count,
                out_bytes=sum(info.nbytes for info in infos),
                out_shape=first.shape or (),
                out_dtype=first.dtype,
                is_output=any(o in a.outputs for o in node.output),
                members=(key,),
                module=chain[-1] if chain else "",
                params=tuple(params),
            )
        )
    return nodes, node_name


def _with_members(nodes: list[Node], parsed: _Parsed, weights: _Weights, node_name: dict[int, str]) -> list[Node]:
    """Step 4: a kept node stands for itself and the folded nodes it reads first, in topological order."""
    a = parsed.analysis
    members: dict[str, list[str]] = {n: [] for n in node_name.values()}
    for i, key in enumerate(a.keys):
        if a.kept[i]:
            members[node_name[i]].append(key)
        elif i in weights.owner:
            members[node_name[weights.owner[i]]].append(key)
    return [n if n.is_input else replace(n, members=tuple(members[n.name])) for n in nodes]


def onnx_graph(path: Path, input_shape: tuple[int, ...] | None = None, *, granularity: str = "module") -> LayerGraph:
    """The :class:`LayerGraph` of an ``.onnx`` file (conventions in the module docstring).

    Args:
        path: the model file; weights kept in external data files are not read.
        input_shape: sizes for the first real graph input (e.g. a batch size for a
            dynamic-batch export); ``None`` keeps the file's shapes.
        granularity: ``"module"`` (one node per ONNX node) or ``"block"``.

    Raises:
        TiercutError: the file is missing or not an ONNX model, the graph has no
            input, ``input_shape`` does not match the input's rank, or a tensor has
            no static shape after inference.
    """
    if granularity not in ("module", "block"):
        raise TiercutError(f"granularity {granularity!r} is not known; use 'module' or 'block'")
    path = Path(path)
    parsed = _parse(path, input_shape)
    inputs = _input_nodes(parsed)
    weights = _Weights(parsed.analysis)
    computed, node_name = _compute_nodes(parsed, weights, taken={n.name for n in inputs})
    nodes = _with_members([*inputs, *computed], parsed, weights, node_name)
    unused = [parsed.tensors[name] for name in parsed.analysis.initializers if name not in weights.reached]
    layer_graph = LayerGraph(
        nodes=tuple(nodes),
        model=path.name,
        granularity="module",
        unused_param_count=sum(t.numel for t in unused if t.is_weight_dtype),
        unused_param_bytes=sum(t.nbytes for t in unused),
        params=weights.table,
    )
    if granularity == "block":
        block_key = {node_name[i]: parsed.scopes.block_of(parsed.analysis.keys[i]) for i in parsed.kept_index}
        layer_graph = collapse_runs(layer_graph, block_key, parsed.scopes.block_op)
    return layer_graph


__all__ = ["onnx_graph"]
