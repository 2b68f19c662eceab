"""Candidates for the worker's ATen allow-list: every overload the exporter produces for a corpus.

Exports, with the path ``tiercut run`` takes (:func:`tiercut.runtime.artifact.export_aten`:
``torch.export`` then functionalization), the whole torchvision zoo of
:mod:`tiercut.graph.models` and a corpus of common layers (convolutions of
every rank and their transposes, every normalisation, the usual activations,
pooling incl. adaptive, linear, bilinear, embedding, attention and
``scaled_dot_product_attention``, LSTM/GRU/RNN, upsampling and
interpolation, pixel shuffle, padding, cat/stack/split/chunk/unbind,
reshape/permute/transpose/flatten/squeeze, softmax/log_softmax, reductions,
elementwise arithmetic, comparisons, where, clamp, dropout in eval, indexing,
creation of constants), and lists each ATen overload the programs call with
the layers that produced it.

This is the *candidate* list. The allow-list itself
(:mod:`tiercut.runtime.allowlist`) is written and reviewed by hand from it:
a new torch version or a new layer in the corpus shows up here first.
With ``--onnx`` it lists the ONNX op types of the TorchScript-based ONNX
exporter instead (the candidates of ``ONNX_ALLOWED_OPS``).

    PYTHONPATH=src python tools/aten_op_candidates.py [--out candidates.json] [--no-zoo] [--onnx]

Prints one line per overload (``aten.conv2d.default  conv2d, resnet18, ...``)
and, with ``--out``, writes the same as JSON. Overloads not yet on the
allow-list are marked ``NEW``; a layer the exporter cannot handle is listed
with its error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def corpus() -> dict[str, tuple[Callable[[], Any], Callable[[], tuple[Any, ...]]]]:
    """Name -> (module factory, example inputs factory) of the layer corpus."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - the usual name
    from torch import nn

    def x(*shape: int) -> Callable[[], tuple[Any, ...]]:
        return lambda: (torch.randn(*shape),)

    class Fn(nn.Module):
        """Wraps a function of the inputs as a module."""

        def __init__(self, function: Callable[..., Any]) -> None:
            super().__init__()
            self.function = function

        def forward(self, *args: Any) -> Any:
            return self.function(*args)

    def fn(function: Callable[..., Any]) -> Callable[[], nn.Module]:
        return lambda: Fn(function)

    class Recurrent(nn.Module):
        def __init__(self, kind: type) -> None:
            super().__init__()
            self.rnn = kind(8, 16, num_layers=2, batch_first=True, bidirectional=True)

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.rnn(inputs)[0]

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = nn.MultiheadAttention(16, 4, batch_first=True)

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.attention(inputs, inputs, inputs, need_weights=False)[0]

    class Embedding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(50, 16)
            self.positions = nn.Embedding(10, 16)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            positions = torch.arange(tokens.shape[1]).unsqueeze(0)
            return self.embedding(tokens) + self.positions(positions)

    tokens = lambda: (torch.randint(0, 50, (2, 10)),)  # noqa: E731 - a short factory

    layers: dict[str, tuple[Callable[[], Any], Callable[[], tuple[Any, ...]]]] = {
        # convolutions
        "conv1d": (lambda: nn.Conv1d(4, 8, 3, padding=1), x(2, 4, 16)),
        "conv2d": (lambda: nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), x(2, 4, 16, 16)),
        "conv2d_same": (lambda: nn.Conv2d(4, 8, 3, padding="same", dilation=2), x(2, 4, 16, 16)),
        "conv3d": (lambda: nn.Conv3d(4, 8, 3, padding=1), x(1, 4, 6, 8, 8)),
        "conv_transpose1d": (lambda: nn.ConvTranspose1d(4, 8, 3, stride=2), x(2, 4, 16)),
        "conv_transpose2d": (lambda: nn.ConvTranspose2d(4, 8, 3, stride=2, output_padding=1), x(2, 4, 8, 8)),
        "conv_transpose3d": (lambda: nn.ConvTranspose3d(4, 8, 3, stride=2), x(1, 4, 4, 4, 4)),
        # normalisation
        "batch_norm1d": (lambda: nn.BatchNorm1d(8), x(4, 8, 16)),
        "batch_norm2d": (lambda: nn.BatchNorm2d(8), x(4, 8, 6, 6)),
        "batch_norm3d": (lambda: nn.BatchNorm3d(8), x(2, 8, 4, 4, 4)),
        "layer_norm": (lambda: nn.LayerNorm(16), x(2, 5, 16)),
        "group_norm": (lambda: nn.GroupNorm(4, 8), x(2, 8, 6, 6)),
        "instance_norm2d": (lambda: nn.InstanceNorm2d(8, affine=True), x(2, 8, 6, 6)),
        "instance_norm1d": (lambda: nn.InstanceNorm1d(8), x(2, 8, 6)),
        "local_response_norm": (lambda: nn.LocalResponseNorm(3), x(2, 8, 6, 6)),
        "rms_norm": (lambda: nn.RMSNorm(16), x(2, 5, 16)),
        "normalize": (fn(lambda t: F.normalize(t, dim=1)), x(2, 16)),
        # activations
        **{
            f"act_{type(m).__name__.lower()}": ((lambda m=m: m), x(2, 16, 4))
            for m in (
                nn.ReLU(),
                nn.ReLU(inplace=True),
                nn.ReLU6(),
                nn.LeakyReLU(0.1),
                nn.PReLU(),
                nn.ELU(),
                nn.SELU(),
                nn.CELU(),
                nn.GELU(),
                nn.GELU(approximate="tanh"),
                nn.SiLU(),
                nn.Mish(),
                nn.Hardswish(),
                nn.Hardsigmoid(),
                nn.Hardtanh(),
                nn.Sigmoid(),
                nn.Tanh(),
                nn.Softplus(),
                nn.Softsign(),
                nn.LogSigmoid(),
                nn.Tanhshrink(),
                nn.Softshrink(),
                nn.Hardshrink(),
                nn.Threshold(0.1, 0.0),
                nn.GLU(dim=1),
                nn.Softmax(dim=-1),
                nn.LogSoftmax(dim=-1),
                nn.Softmin(dim=-1),
            )
        },
        "gelu_tanh": (lambda: nn.GELU(approximate="tanh"), x(2, 16)),
        "relu6_inplace": (lambda: nn.ReLU6(inplace=True), x(2, 16)),
        "silu_inplace": (lambda: nn.SiLU(inplace=True), x(2, 16)),
        "hardswish_inplace": (lambda: nn.Hardswish(inplace=True), x(2, 16)),
        # pooling
        "max_pool1d": (lambda: nn.MaxPool1d(2), x(2, 4, 16)),
        "max_pool2d": (lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), x(2, 4, 16, 16)),
        "max_pool3d": (lambda: nn.MaxPool3d(2), x(1, 4, 4, 4, 4)),
        "avg_pool1d": (lambda: nn.AvgPool1d(2), x(2, 4, 16)),
        "avg_pool2d": (lambda: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), x(2, 4, 16, 16)),
        "avg_pool3d": (lambda: nn.AvgPool3d(2), x(1, 4, 4, 4, 4)),
        "adaptive_avg_pool1d": (lambda: nn.AdaptiveAvgPool1d(3), x(2, 4, 16)),
        "adaptive_avg_pool2d": (lambda: nn.AdaptiveAvgPool2d((3, 5)), x(2, 4, 16, 16)),
        "adaptive_avg_pool3d": (lambda: nn.AdaptiveAvgPool3d(2), x(1, 4, 4, 4, 4)),
        "adaptive_max_pool1d": (lambda: nn.AdaptiveMaxPool1d(3), x(2, 4, 16)),
        "adaptive_max_pool2d": (lambda: nn.AdaptiveMaxPool2d(3), x(2, 4, 16, 16)),
        "adaptive_max_pool3d": (lambda: nn.AdaptiveMaxPool3d(2), x(1, 4, 4, 4, 4)),
        "lp_pool2d": (lambda: nn.LPPool2d(2, 2), x(2, 4, 8, 8)),
        # linear layers, embedding, attention, recurrence
        "linear": (lambda: nn.Linear(16, 8), x(2, 5, 16)),
        "linear_no_bias": (lambda: nn.Linear(16, 8, bias=False), x(2, 16)),
        "bilinear": (lambda: nn.Bilinear(8, 8, 4), lambda: (torch.randn(2, 8), torch.randn(2, 8))),
        "embedding": (Embedding, tokens),
        "multihead_attention": (Attention, x(2, 5, 16)),
        "transformer_encoder_layer": (
            lambda: nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, dropout=0.1),
            x(2, 5, 16),
        ),
        "sdpa": (
            fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v)),
            lambda: tuple(torch.randn(2, 4, 5, 8) for _ in "qkv"),
        ),
        "sdpa_causal": (
            fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
            lambda: tuple(torch.randn(2, 4, 5, 8) for _ in "qkv"),
        ),
        "lstm": ((lambda: Recurrent(nn.LSTM)), x(2, 5, 8)),
        "gru": ((lambda: Recurrent(nn.GRU)), x(2, 5, 8)),
        "rnn": ((lambda: Recurrent(nn.RNN)), x(2, 5, 8)),
        # resampling, shuffling, padding
        "upsample_nearest": (lambda: nn.Upsample(scale_factor=2, mode="nearest"), x(1, 4, 8, 8)),
        "upsample_bilinear": (lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), x(1, 4, 8, 8)),
        "interpolate_bicubic": (fn(lambda t: F.interpolate(t, size=(11, 13), mode="bicubic")), x(1, 4, 8, 8)),
        "interpolate_linear": (fn(lambda t: F.interpolate(t, scale_factor=2, mode="linear")), x(1, 4, 8)),
        "interpolate_trilinear": (fn(lambda t: F.interpolate(t, scale_factor=2, mode="trilinear")), x(1, 2, 4, 4, 4)),
        "interpolate_nearest_exact": (fn(lambda t: F.interpolate(t, size=(5, 7), mode="nearest-exact")), x(1, 4, 8, 8)),
        "interpolate_area": (fn(lambda t: F.interpolate(t, size=(4, 4), mode="area")), x(1, 4, 8, 8)),
        "pixel_shuffle": (lambda: nn.PixelShuffle(2), x(1, 8, 4, 4)),
        "pixel_unshuffle": (lambda: nn.PixelUnshuffle(2), x(1, 2, 8, 8)),
        "channel_shuffle": (lambda: nn.ChannelShuffle(2), x(1, 4, 4, 4)),
        "pad_constant": (fn(lambda t: F.pad(t, (1, 2, 0, 1), value=0.5)), x(1, 4, 8, 8)),
        "pad_reflect": (fn(lambda t: F.pad(t, (1, 2, 2, 1), mode="reflect")), x(1, 4, 8, 8)),
        "pad_replicate": (fn(lambda t: F.pad(t, (1, 2, 2, 1), mode="replicate")), x(1, 4, 8, 8)),
        "pad_circular": (fn(lambda t: F.pad(t, (1, 2, 2, 1), mode="circular")), x(1, 4, 8, 8)),
        "zero_pad2d": (lambda: nn.ZeroPad2d(2), x(1, 4, 8, 8)),
        "unfold": (lambda: nn.Unfold(3, padding=1), x(1, 4, 8, 8)),
        "fold": (lambda: nn.Fold((4, 4), 2), x(1, 16, 9)),
        # shape manipulation (functional, non-aliasing where possible)
        "cat": (fn(lambda a, b: torch.cat([a, b], dim=1)), lambda: (torch.randn(2, 3, 4), torch.randn(2, 5, 4))),
        "stack": (fn(lambda a, b: torch.stack([a, b], dim=0)), lambda: (torch.randn(2, 3), torch.randn(2, 3))),
        "split": (fn(lambda t: torch.split(t, 3, dim=1)), x(2, 8, 4)),
        "split_sizes": (fn(lambda t: torch.split(t, [2, 6], dim=1)), x(2, 8, 4)),
        "chunk": (fn(lambda t: torch.chunk(t, 4, dim=-1)), x(2, 8)),
        "unbind": (fn(lambda t: torch.unbind(t, dim=1)), x(2, 3, 4)),
        "reshape": (fn(lambda t: t.reshape(4, -1)), x(2, 8, 4)),
        "reshape_noncontiguous": (fn(lambda t: t.transpose(0, 1).reshape(-1)), x(2, 8, 4)),
        "view": (fn(lambda t: t.view(-1, 4)), x(2, 8, 4)),
        "flatten": (lambda: nn.Flatten(), x(2, 8, 4)),
        "unflatten": (lambda: nn.Unflatten(1, (2, 4)), x(2, 8)),
        "permute": (fn(lambda t: t.permute(2, 0, 1).contiguous()), x(2, 8, 4)),
        "transpose": (fn(lambda t: t.transpose(1, 2)), x(2, 8, 4)),
        "t": (fn(lambda t: t.t()), x(8, 4)),
        "squeeze": (fn(lambda t: t.squeeze(1).squeeze()), x(2, 1, 4)),
        "unsqueeze": (fn(lambda t: t.unsqueeze(-1)), x(2, 4)),
        "expand": (fn(lambda t: t.expand(3, -1, -1) + 1), x(1, 2, 4)),
        "repeat": (fn(lambda t: t.repeat(2, 3)), x(2, 4)),
        "tile": (fn(lambda t: t.tile(2)), x(2, 4)),
        "flip": (fn(lambda t: t.flip(1)), x(2, 4)),
        "roll": (fn(lambda t: t.roll(1, 1)), x(2, 4)),
        "narrow_slice": (fn(lambda t: t[:, 1:3, ::2] * 2), x(2, 4, 6)),
        "select_index": (fn(lambda t: t[:, 0] + t[1]), x(2, 2, 4)),
        "index_select": (fn(lambda t: t.index_select(1, torch.tensor([0, 2]))), x(2, 4)),
        "gather": (fn(lambda t: t.gather(1, torch.tensor([[0, 1], [1, 0]]))), x(2, 4)),
        "tensor_index": (fn(lambda t: t[:, torch.tensor([3, 0])]), x(2, 4)),
        "masked_fill": (fn(lambda t: t.masked_fill(t > 0, 0.0)), x(2, 4)),
        "where": (fn(lambda t: torch.where(t > 0, t, t * 0.1)), x(2, 4)),
        "clamp": (fn(lambda t: t.clamp(-0.5, 0.5) + t.clamp(min=0.1)), x(2, 4)),
        "clamp_tensor": (fn(lambda t, lo: torch.clamp(t, min=lo)), lambda: (torch.randn(2, 4), torch.randn(2, 4))),
        "dropout_eval": (lambda: nn.Dropout(0.5), x(2, 4)),
        "dropout2d_eval": (lambda: nn.Dropout2d(0.5), x(2, 4, 3, 3)),
        "alpha_dropout_eval": (lambda: nn.AlphaDropout(0.5), x(2, 4)),
        "identity": (lambda: nn.Identity(), x(2, 4)),
        "contiguous": (fn(lambda t: t.t().contiguous()), x(4, 2)),
        "to_dtype": (fn(lambda t: t.to(torch.float64).sum().to(torch.float32)), x(2, 4)),
        "type_as": (fn(lambda t, i: t.type_as(i) + i), lambda: (torch.randn(2, 4), torch.randint(0, 3, (2, 4)))),
        "one_hot": (fn(lambda i: F.one_hot(i, 5)), lambda: (torch.randint(0, 5, (2, 4)),)),
        "arange_zeros_ones_full": (
            fn(lambda t: t + torch.arange(4) + torch.zeros(4) + torch.ones(4) + torch.full((4,), 2.0)),
            x(2, 4),
        ),
        "zeros_like_ones_like": (fn(lambda t: torch.zeros_like(t) + torch.ones_like(t) + torch.full_like(t, 3.0)), x(2, 4)),
        "new_zeros_ones": (fn(lambda t: t.new_zeros(2, 4) + t.new_ones(2, 4) + t.new_full((2, 4), 1.0)), x(2, 4)),
        "cumsum_cumprod": (fn(lambda t: t.cumsum(1) + t.cumprod(1)), x(2, 4)),
        "tril_triu": (fn(lambda t: t.tril() + t.triu(1)), x(4, 4)),
        # reductions
        "sum_mean": (fn(lambda t: t.sum(1) + t.mean(1, keepdim=True).squeeze(1) + t.sum()), x(2, 4)),
        "amax_amin": (fn(lambda t: t.amax(1) + t.amin(1)), x(2, 4)),
        "max_min_dim": (fn(lambda t: t.max(1).values + t.min(1)[0] + t.max() + t.min()), x(2, 4)),
        "argmax_argmin": (fn(lambda t: t.argmax(1) + t.argmin(1)), x(2, 4)),
        "std_var": (fn(lambda t: t.std(1) + t.var(1, unbiased=False)), x(2, 4)),
        "norm": (fn(lambda t: t.norm(dim=1) + torch.linalg.vector_norm(t, 1, dim=1)), x(2, 4)),
        "prod": (fn(lambda t: t.prod(1)), x(2, 4)),
        "logsumexp": (fn(lambda t: t.logsumexp(1)), x(2, 4)),
        "all_any": (fn(lambda t: (t > 0).all(1) | (t < 0).any(1)), x(2, 4)),
        "topk_sort": (fn(lambda t: t.topk(2, 1).values + t.sort(1).values[:, :2]), x(2, 4)),
        # elementwise arithmetic and maths
        "arithmetic": (
            fn(lambda a, b: (a + b) * (a - b) / (b.abs() + 1) - a * 2 + 1 - b / 3 + a**2 + (2 - a) + (1 / (b.abs() + 1))),
            lambda: (torch.randn(2, 4), torch.randn(2, 4)),
        ),
        "integer_arithmetic": (
            fn(lambda a: (a // 2) + (a % 3) + torch.div(a, 2, rounding_mode="floor") + torch.remainder(a, 2)),
            lambda: (torch.randint(1, 9, (2, 4)),),
        ),
        "pow_sqrt": (fn(lambda t: t.abs().pow(1.5) + t.abs().sqrt() + t.abs().rsqrt() + torch.pow(t, t.abs())), x(2, 4)),
        "exp_log": (fn(lambda t: t.exp() + (t.abs() + 1).log() + t.expm1() + t.abs().log1p() + t.exp2()), x(2, 4)),
        "trigonometry": (
            fn(lambda t: t.sin() + t.cos() + t.tan() + t.atan() + t.tanh() + t.sinh() + torch.atan2(t, t + 1)),
            x(2, 4),
        ),
        "rounding": (
            fn(lambda t: t.floor() + t.ceil() + t.round() + t.trunc() + t.frac() + t.sign() + t.round(decimals=1)),
            x(2, 4),
        ),
        "min_max_elementwise": (
            fn(lambda a, b: torch.maximum(a, b) + torch.minimum(a, b) + torch.fmax(a, b)),
            lambda: (torch.randn(2, 4), torch.randn(2, 4)),
        ),
        "reciprocal_neg": (fn(lambda t: (t.abs() + 1).reciprocal() - t.neg() + t.square()), x(2, 4)),
        "erf_lerp": (
            fn(lambda a, b: torch.erf(a) + torch.lerp(a, b, 0.3) + torch.addcmul(a, a, b, value=0.5)),
            lambda: (torch.randn(2, 4), torch.randn(2, 4)),
        ),
        "comparisons": (
            fn(
                lambda a, b: (
                    (a > b).float()
                    + (a >= b).float()
                    + (a < b).float()
                    + (a <= b).float()
                    + (a == b).float()
                    + (a != b).float()
                    + (a > 0.5).float()
                )
            ),
            lambda: (torch.randn(2, 4), torch.randn(2, 4)),
        ),
        "logical": (
            fn(
                lambda a, b: (
                    torch.logical_and(a > 0, b > 0) | torch.logical_or(a > 0, b < 0) ^ torch.logical_not(a > 0) & ~(b > 0)
                )
            ),
            lambda: (torch.randn(2, 4), torch.randn(2, 4)),
        ),
        "isnan_isinf": (fn(lambda t: t.isnan() | t.isinf() | t.isfinite()), x(2, 4)),
        "nan_to_num": (fn(lambda t: torch.nan_to_num(t, 0.0)), x(2, 4)),
        # matrix products
        "matmul": (fn(lambda a, b: a @ b), lambda: (torch.randn(2, 3, 4), torch.randn(2, 4, 5))),
        "matmul_broadcast": (fn(lambda a, b: a @ b), lambda: (torch.randn(2, 3, 4), torch.randn(4, 5))),
        "bmm_mm_mv": (
            fn(lambda a, b, v: torch.bmm(a, b).sum(0) + torch.mm(a[0], b[0]) + torch.mv(a[0], v).unsqueeze(1)),
            lambda: (torch.randn(2, 3, 4), torch.randn(2, 4, 1), torch.randn(4)),
        ),
        "einsum": (fn(lambda a, b: torch.einsum("bij,bjk->bik", a, b)), lambda: (torch.randn(2, 3, 4), torch.randn(2, 4, 5))),
        "outer_dot": (fn(lambda a, b: torch.outer(a, b).sum() + torch.dot(a, b)), lambda: (torch.randn(4), torch.randn(4))),
        "cosine_pairwise": (
            fn(lambda a, b: F.cosine_similarity(a, b) + F.pairwise_distance(a, b)),
            lambda: (torch.randn(2, 8), torch.randn(2, 8)),
        ),
    }
    return layers


def _ops_of(module: Any, inputs: tuple[Any, ...]) -> list[str]:
    from tiercut.runtime.artifact import export_aten, operator_name

    module = module.eval()
    exported = export_aten(module, inputs)
    return [operator_name(node.target) for node in exported.graph.nodes if node.op == "call_function"]


def _onnx_ops_of(module: Any, inputs: tuple[Any, ...]) -> list[str]:
    """Op types (``domain.Op``, default domain written bare) of the TorchScript-based ONNX export, sub-graphs included."""
    import io
    import warnings

    import onnx
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), inputs, buffer, dynamo=False, do_constant_folding=False, opset_version=17)
    model = onnx.load_from_string(buffer.getvalue())
    ops: list[str] = []

    def walk(graph: Any) -> None:
        for node in graph.node:
            ops.append(f"{node.domain}.{node.op_type}" if node.domain else node.op_type)
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    walk(attribute.g)
                for sub in attribute.graphs:
                    walk(sub)

    walk(model.graph)
    return ops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the candidates as JSON here")
    parser.add_argument("--no-zoo", action="store_true", help="only the layer corpus (faster)")
    parser.add_argument("--onnx", action="store_true", help="ONNX op types of the ONNX exporter instead of ATen overloads")
    args = parser.parse_args()

    import torch

    from tiercut.graph.models import ZOO, build_zoo_model
    from tiercut.runtime.allowlist import ALLOWED_OPERATORS, ONNX_ALLOWED_OPS

    listed = ONNX_ALLOWED_OPS if args.onnx else ALLOWED_OPERATORS
    ops_of = _onnx_ops_of if args.onnx else _ops_of

    torch.manual_seed(0)
    sources: dict[str, list[str]] = {}
    failures: dict[str, str] = {}
    cases: list[tuple[str, Callable[[], Any], Callable[[], tuple[Any, ...]]]] = []
    if not args.no_zoo:
        for name, entry in ZOO.items():
            cases.append(
                (name, lambda name=name: build_zoo_model(name), lambda entry=entry: (torch.randn(*entry.input_shape()),))
            )
    cases += [(name, make, inputs) for name, (make, inputs) in corpus().items()]
    for name, make, inputs in cases:
        try:
            ops = ops_of(make(), inputs())
        except Exception as exc:  # a layer the exporter cannot handle is reported, not fatal
            failures[name] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            print(f"  cannot export {name}: {failures[name]}", file=sys.stderr)
            continue
        for op in dict.fromkeys(ops):
            sources.setdefault(op, []).append(name)
    for op in sorted(sources):
        mark = "    " if op in listed else "NEW "
        print(f"{mark}{op:<56} {', '.join(sources[op][:6])}{' ...' if len(sources[op]) > 6 else ''}")
    unused = sorted(listed - set(sources))
    if unused:
        print(f"on the allow-list but not produced by this corpus: {', '.join(unused)}")
    if args.out is not None:
        args.out.write_text(json.dumps({"torch": torch.__version__, "candidates": sources, "failures": failures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
