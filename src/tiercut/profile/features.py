"""What a node's time is predicted from: its op kind and its work and traffic.

Following Neurosurgeon (Kang et al., ASPLOS'17: per-layer-type regression on
layer parameters) and the seed paper's installation phase (server times
predicted "based on the parameters of the DNN and the server"), a node is
described by its op kind and five numbers from the layer graph:

- ``matmul_flops``: FLOPs in convolutions, matrix products, attention;
- ``other_flops``: the remaining FLOPs (norms, activations, pooling, arithmetic);
- ``in_bytes``: bytes of the tensors it reads (outputs of its input nodes);
- ``out_bytes``: bytes of its output;
- ``param_bytes``: bytes of the weights it reads;
- ``reduction``: for matrix-multiply-class nodes, the length of the dot
  products (``K`` of the GEMM: ``C_in / groups * kernel area`` for a
  convolution, ``in_features`` for a linear layer), ``matmul_flops / (2 *
  output elements)``; 0 otherwise. It separates depthwise (K = 9) from
  pointwise and dense convolutions, whose efficiency differs by 10x.

Op kinds with too few measurements fall back to their *group*
(:data:`OP_GROUPS`, one explicit mapping), and groups to one global model.
The ``conv`` and ``matmul`` groups together are the matrix-multiply class
(:data:`GEMM_GROUPS`); a node of that class outside every fitted range
falls back to the host's measured convolution or GEMM throughput rather
than to the global model (see :mod:`tiercut.profile.predict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.serialization import json_contract

FEATURE_NAMES = ("matmul_flops", "other_flops", "in_bytes", "out_bytes", "param_bytes", "reduction")

#: op kind -> group. Module class names (fx) and ATen names (torch.export) alike.
OP_GROUPS: dict[str, str] = {
    **dict.fromkeys(
        ("conv1d", "conv2d", "conv3d", "convolution", "convtranspose1d", "convtranspose2d", "conv_transpose2d"),
        "conv",
    ),
    **dict.fromkeys(
        ("linear", "matmul", "mm", "bmm", "addmm", "baddbmm", "einsum", "multiheadattention",
         "scaled_dot_product_attention"),
        "matmul",
    ),
    **dict.fromkeys(
        ("batchnorm1d", "batchnorm2d", "batchnorm3d", "batch_norm", "_native_batch_norm_legit_no_training",
         "layernorm", "layer_norm", "native_layer_norm", "groupnorm", "group_norm", "instancenorm1d",
         "instancenorm2d", "instancenorm3d", "batchnormalization", "localresponsenorm", "lrn", "softmax",
         "log_softmax"),
        "norm",
    ),
    **dict.fromkeys(
        ("relu", "relu_", "relu6", "hardtanh", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid",
         "leakyrelu", "elu", "mish", "dropout", "identity", "stochasticdepth", "stochastic_depth", "clamp",
         "clip"),
        "activation",
    ),
    **dict.fromkeys(
        ("add", "add_", "iadd", "sub", "mul", "mul_", "imul", "div", "truediv", "floordiv_tensor", "neg", "pow",
         "sqrt", "rsqrt", "exp", "where", "abs"),
        "elementwise",
    ),
    **dict.fromkeys(
        ("maxpool1d", "maxpool2d", "maxpool3d", "max_pool2d", "avgpool1d", "avgpool2d", "avgpool3d", "avg_pool2d",
         "adaptiveavgpool1d", "adaptiveavgpool2d", "adaptive_avg_pool2d", "adaptivemaxpool1d", "adaptivemaxpool2d",
         "mean", "sum", "amax"),
        "pool",
    ),
    **dict.fromkeys(("cat", "concat", "stack", "contiguous", "clone", "expand", "repeat", "pad", "tile"), "memory"),
    **dict.fromkeys(
        ("flatten", "reshape", "view", "permute", "transpose", "squeeze", "unsqueeze", "getitem", "getattr",
         "size", "dim", "eq", "assert", "floordiv", "chunk", "split", "narrow", "select", "slice", "t",
         "get_attr", "to", "type_as", "_assert", "gather", "shape", "constant", "cast"),
        "shape",
    ),
}

#: groups of matrix-multiply-class ops.
GEMM_GROUPS = frozenset(("conv", "matmul"))

#: the convolutions among them (timed against the host's convolution throughput).
CONV_OPS = frozenset(
    ("conv1d", "conv2d", "conv3d", "convolution", "convtranspose1d", "convtranspose2d", "conv_transpose2d")
)

#: group of op kinds not in :data:`OP_GROUPS` (block classes, user ops).
OTHER_GROUP = "other"


def op_group(op: str) -> str:
    """The group an op kind falls back to."""
    return OP_GROUPS.get(op, OTHER_GROUP)


@dataclass(frozen=True)
class NodeFeatures:
    """The numbers a node's time is predicted from (see the module docstring)."""

    op: str
    matmul_flops: float
    other_flops: float
    in_bytes: float
    out_bytes: float
    param_bytes: float
    reduction: float = 0.0

    @property
    def group(self) -> str:
        return op_group(self.op)

    @property
    def flops(self) -> float:
        return self.matmul_flops + self.other_flops

    @property
    def bytes_total(self) -> float:
        """Compulsory memory traffic: inputs read, output written, weights read."""
        return self.in_bytes + self.out_bytes + self.param_bytes

    def vector(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, name)) for name in FEATURE_NAMES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    @json_contract("node features", hint="re-profile with this tiercut")
    def from_dict(cls, data: Mapping[str, Any]) -> NodeFeatures:
        values = {name: float(data.get(name, 0.0) if name == "reduction" else data[name]) for name in FEATURE_NAMES}
        op = str(data["op"])
        if any(v < 0 for v in values.values()):
            raise TiercutError(f"node features of op {op!r} have a negative count; fix the profile file")
        return cls(op=op, **values)

    @classmethod
    def of(cls, node: Node, graph: LayerGraph) -> NodeFeatures:
        """The features of ``node`` (a node of ``graph``)."""
        in_bytes = sum(graph[src].out_bytes for src in dict.fromkeys(node.inputs))
        out_elements = math.prod(node.out_shape) if node.out_shape else 0
        reduction = node.matmul_flops / (2.0 * out_elements) if node.matmul_flops and out_elements else 0.0
        return cls(
            op=node.op,
            matmul_flops=float(node.matmul_flops),
            other_flops=float(max(node.flops - node.matmul_flops, 0)),
            in_bytes=float(in_bytes),
            out_bytes=float(node.out_bytes),
            param_bytes=float(node.param_bytes),
            reduction=float(reduction),
        )


def graph_features(graph: LayerGraph) -> dict[str, NodeFeatures]:
    """node name -> features, for every non-input node, in topological order."""
    return {n.name: NodeFeatures.of(n, graph) for n in graph.nodes if not n.is_input}


__all__ = ["CONV_OPS", "FEATURE_NAMES", "GEMM_GROUPS", "OP_GROUPS", "OTHER_GROUP", "NodeFeatures", "graph_features", "op_group"]
