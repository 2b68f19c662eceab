"""FLOP counting for one graph node.

Convolutions, matrix products and attention are counted by
``torch.utils.flop_counter.FlopCounterMode`` on the node's real execution
(one multiply-add = 2 FLOPs, bias not counted, as torchvision's documented
figures). The ops that counter reports as 0 get the project's own formulas
below, so a graph's total FLOPs include normalisation, activations, pooling
and element-wise arithmetic (reported apart from the matmul-class FLOPs).
"""

from __future__ import annotations

import math
from typing import Any

# Ops whose FLOPs the counter measures (matrix-multiply class).
MATMUL_CLASS_OPS = frozenset(
    {
        "conv1d", "conv2d", "conv3d", "convolution", "conv_transpose1d", "conv_transpose2d",
        "convtranspose1d", "convtranspose2d", "linear", "matmul", "mm", "bmm", "addmm", "baddbmm",
        "einsum", "multiheadattention", "scaled_dot_product_attention",
    }
)

# FLOPs per output element of element-wise ops.
_PER_OUTPUT_ELEMENT = {
    "relu": 1, "relu_": 1, "relu6": 1, "leakyrelu": 1, "leaky_relu": 1, "hardtanh": 1, "clamp": 1,
    "add": 1, "add_": 1, "iadd": 1, "sub": 1, "rsub": 1, "mul": 1, "mul_": 1, "imul": 1, "truediv": 1,
    "div": 1, "neg": 1, "abs": 1,
    "sigmoid": 4, "silu": 5, "hardswish": 4, "hardsigmoid": 3, "tanh": 5, "gelu": 8, "elu": 5,
    "exp": 1, "sqrt": 1, "rsqrt": 1, "pow": 1,
    "batchnorm1d": 2, "batchnorm2d": 2, "batchnorm3d": 2, "batch_norm": 2,
    "layernorm": 5, "layer_norm": 5, "groupnorm": 5, "group_norm": 5, "instancenorm2d": 5,
    "softmax": 5, "log_softmax": 5,
}

# FLOPs per input element of reductions.
_PER_INPUT_ELEMENT = {
    "adaptiveavgpool1d": 1, "adaptiveavgpool2d": 1, "adaptive_avg_pool2d": 1, "adaptive_avg_pool1d": 1,
    "adaptivemaxpool2d": 1, "adaptive_max_pool2d": 1, "mean": 1, "sum": 1, "amax": 1, "max": 1,
}

_POOL_OPS = {"maxpool1d", "maxpool2d", "maxpool3d", "avgpool1d", "avgpool2d", "avgpool3d",
             "max_pool2d", "avg_pool2d", "max_pool2d_with_indices"}


def tensor_numel(value: Any) -> int:
    """Total elements of the tensors in ``value`` (tensor, tuple, list, dict)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (tuple, list)):
        return sum(tensor_numel(v) for v in value)
    if isinstance(value, dict):
        return sum(tensor_numel(v) for v in value.values())
    return 0


def _kernel_area(module: Any, args: tuple[Any, ...]) -> int:
    kernel = getattr(module, "kernel_size", None)
    if kernel is None and len(args) > 1:
        kernel = args[1]
    if kernel is None:
        return 1
    if isinstance(kernel, int):
        out = args[0] if args else None
        dims = (out.dim() - 2) if out is not None and hasattr(out, "dim") else 2
        return kernel ** max(dims, 1)
    return math.prod(kernel)


def formula_flops(op: str, args: tuple[Any, ...], output: Any, module: Any = None) -> int:
    """FLOPs of an op the counter reports as 0, from its inputs and output."""
    if op in _PER_OUTPUT_ELEMENT:
        return _PER_OUTPUT_ELEMENT[op] * tensor_numel(output)
    if op in _PER_INPUT_ELEMENT:
        return _PER_INPUT_ELEMENT[op] * tensor_numel(args[:1])
    if op in _POOL_OPS:
        return _kernel_area(module, args) * tensor_numel(output)
    return 0


def is_quantized_module(module: Any) -> bool:
    """A module of torch.ao's quantized kernels (``torch.ao.nn.quantized``, ``torch.ao.nn.intrinsic.quantized``...)."""
    name = type(module).__module__
    return name.startswith("torch.ao.nn.") and ".quantized" in name


def quantized_module_flops(module: Any, output: Any) -> int:
    """FLOPs of a quantized convolution or linear module (``torch.ao.nn.quantized``), which the counter does not see.

    The same multiply-adds as the float layer (one multiply-add = 2), counted
    from the unpacked weight's shape: ``2 * output elements * weight elements
    per output channel``. 0 for any other module.
    """
    if module is None or not is_quantized_module(module):
        return 0
    weight_fn = getattr(module, "weight", None)
    if not callable(weight_fn):
        return 0
    weight = weight_fn()
    per_output = math.prod(weight.shape[1:]) if weight.dim() > 1 else 1
    return 2 * tensor_numel(output) * int(per_output)


# ----------------------------------------------------------------------------------------------
# Shape-only forms, for graphs known by tensor shapes rather than by execution (ONNX files).
# They follow the conventions of ``torch.utils.flop_counter`` (one multiply-add = 2, bias not
# counted) so a model counted from its shapes and by executing it gives the same figures.


def size_formula_flops(op: str, input_numel: int, output_numel: int, kernel_area: int = 1) -> int:
    """:func:`formula_flops` from element counts: ``op`` is the op kind, ``input_numel`` the
    elements of its first input, ``output_numel`` of its output, ``kernel_area`` the pooling
    window's elements (pooling ops only)."""
    if op in _PER_OUTPUT_ELEMENT:
        return _PER_OUTPUT_ELEMENT[op] * output_numel
    if op in _PER_INPUT_ELEMENT:
        return _PER_INPUT_ELEMENT[op] * input_numel
    if op in _POOL_OPS:
        return kernel_area * output_numel
    return 0


def conv_flops(
    input_shape: tuple[int, ...], weight_shape: tuple[int, ...], output_shape: tuple[int, ...], transposed: bool = False
) -> int:
    """FLOPs of a (transposed) convolution, as ``torch.utils.flop_counter.conv_flop_count``:
    ``2 * batch * prod(spatial) * prod(weight_shape)``, where ``spatial`` is the output's spatial
    size (the input's for a transposed convolution) and the weight's shape already carries the
    per-group channel count."""
    spatial = (input_shape if transposed else output_shape)[2:]
    return 2 * input_shape[0] * math.prod(spatial) * math.prod(weight_shape)


def contraction_flops(output_numel: int, inner_size: int) -> int:
    """FLOPs of a matrix product (``mm``/``bmm``/``matmul``/``linear``): ``2 * out elements * K``."""
    return 2 * output_numel * inner_size


def attention_flops(batch_heads: int, query_len: int, key_len: int, head_dim: int, value_dim: int) -> int:
    """FLOPs of scaled dot-product attention, as ``torch.utils.flop_counter.sdpa_flop_count``:
    the two products ``Q K^T`` and ``softmax(.) V`` (the softmax itself not counted)."""
    return 2 * batch_heads * query_len * key_len * (head_dim + value_dim)
