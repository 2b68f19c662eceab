"""The ATen operators a worker runs: an explicit allow-list, reviewed by hand.

A partition program names its operators as data (``"aten.conv2d.default"``);
a worker calls only the overloads listed here (never "anything but a
deny-list"). Everything else, whatever it does, is refused at load with a
status naming the operator.

How the list was made
---------------------
``tools/aten_op_candidates.py`` exports, on the path ``tiercut run`` takes
(:func:`tiercut.runtime.artifact.export_aten`: ``torch.export`` in
non-strict mode, then ``run_decompositions({})``, which functionalizes
without decomposing), the ten torchvision models of the zoo and a corpus of
about 170 common layers (convolutions of every rank and their transposes,
every normalisation, 28 activations, max/average/adaptive/LP pooling,
linear, bilinear, embedding, multi-head attention, transformer encoder
layers, ``scaled_dot_product_attention``, LSTM/GRU/RNN, upsampling and
interpolation in every mode, pixel (un)shuffle, padding in every mode,
unfold/fold, cat/stack/split/chunk/unbind, reshape/view/permute/transpose/
flatten/squeeze/expand, indexing, softmax, reductions, elementwise
arithmetic and maths, comparisons, logic, where, clamp, dropout in eval,
constants, matrix products), and lists every overload the programs call:
201 with torch 2.14.1. Each was then reviewed by hand against these rules:

* **functional only**: no overload that writes into an argument (an
  in-place ``op_`` or an ``out=`` variant; a test checks that no listed
  schema has a mutable argument). Functionalization leaves none in the
  exported programs, so a program can never write into a weight, an input
  or another user's tensor;
* **no storage-level or stride-level aliasing**: no ``as_strided*``,
  ``_reshape_alias``, ``set_``, ``resize_``, ``_unsafe_*`` (the exporter's
  ``_unsafe_view``, made by ``reshape`` of a fresh copy, is rewritten to
  ``view`` at export), ``from_file``, ``_index_put_impl_``;
* **views only through bounds-checked kernels**: ``view``, ``permute``,
  ``expand``, ``slice``, ``select``, ``t``, ``transpose``, ``unsqueeze``,
  ``squeeze``, ``split``, ``unbind``; each checks its arguments against
  the tensor it views, and the worker's load-time propagation on the meta
  device refuses any view whose extent leaves its base's storage;
* **no uninitialised memory**: no ``empty*``, ``new_empty*``;
* **deterministic**: no random operator; where an operator takes a dropout
  or training switch, :data:`ARGUMENT_CONSTRAINTS` pins it off;
* **shapes follow from the input shapes**: operators whose output shape
  depends on data (``nonzero``, ``masked_select``, ``unique``, ``one_hot``
  with ``num_classes=-1``, boolean ``index``) have no meta kernel and are
  refused at load by the propagation, listed or not;
* dropped: ``_assert_tensor_metadata`` (a check the exporter adds around
  dtype conversions; nothing reads its result, so the exporter leaves it
  out of the program).

Re-run the tool after upgrading torch or adding a layer: overloads not
listed are marked ``NEW`` and need the same review before they are added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: the ATen overloads a program may call, by group (``getitem`` picks an item of a tuple result)
ALLOWED_OPERATORS: frozenset[str] = frozenset(
    {
        "getitem",
        # convolution, linear algebra
        "aten.conv1d.default",
        "aten.conv2d.default",
        "aten.conv2d.padding",
        "aten.conv3d.default",
        "aten.conv_transpose1d.default",
        "aten.conv_transpose2d.input",
        "aten.conv_transpose3d.input",
        "aten.linear.default",
        "aten.bilinear.default",
        "aten.matmul.default",
        "aten.mm.default",
        "aten.bmm.default",
        "aten.mv.default",
        "aten.dot.default",
        "aten.outer.default",
        "aten.einsum.default",
        "aten.im2col.default",
        "aten.col2im.default",
        # normalisation
        "aten._native_batch_norm_legit_no_training.default",
        "aten.layer_norm.default",
        "aten.group_norm.default",
        "aten.instance_norm.default",
        "aten.rms_norm.default",
        "aten.linalg_vector_norm.default",
        "aten.cosine_similarity.default",
        "aten.pairwise_distance.default",
        # activations
        "aten.relu.default",
        "aten.hardtanh.default",
        "aten.leaky_relu.default",
        "aten.prelu.default",
        "aten.elu.default",
        "aten.selu.default",
        "aten.celu.default",
        "aten.gelu.default",
        "aten.silu.default",
        "aten.mish.default",
        "aten.hardswish.default",
        "aten.hardsigmoid.default",
        "aten.sigmoid.default",
        "aten.tanh.default",
        "aten.softplus.default",
        "aten.log_sigmoid.default",
        "aten.threshold.default",
        "aten.glu.default",
        "aten.softmax.int",
        "aten.log_softmax.int",
        # pooling, resampling, padding
        "aten.max_pool1d.default",
        "aten.max_pool2d.default",
        "aten.max_pool3d.default",
        "aten.avg_pool1d.default",
        "aten.avg_pool2d.default",
        "aten.avg_pool3d.default",
        "aten.adaptive_avg_pool1d.default",
        "aten.adaptive_avg_pool2d.default",
        "aten.adaptive_avg_pool3d.default",
        "aten.adaptive_max_pool1d.default",
        "aten.adaptive_max_pool2d.default",
        "aten.adaptive_max_pool3d.default",
        "aten.upsample_nearest2d.vec",
        "aten._upsample_nearest_exact2d.vec",
        "aten.upsample_linear1d.vec",
        "aten.upsample_bilinear2d.vec",
        "aten.upsample_bicubic2d.vec",
        "aten.upsample_trilinear3d.vec",
        "aten.pixel_shuffle.default",
        "aten.pixel_unshuffle.default",
        "aten.channel_shuffle.default",
        "aten.pad.default",
        # attention, recurrence, embedding
        "aten.scaled_dot_product_attention.default",
        "aten.lstm.input",
        "aten.gru.input",
        "aten.rnn_tanh.input",
        "aten.embedding.default",
        # views (bounds-checked kernels; extents checked again at load)
        "aten.view.default",
        "aten.permute.default",
        "aten.expand.default",
        "aten.slice.Tensor",
        "aten.select.int",
        "aten.t.default",
        "aten.transpose.int",
        "aten.unsqueeze.default",
        "aten.squeeze.default",
        "aten.squeeze.dim",
        "aten.split.Tensor",
        "aten.split_with_sizes.default",
        "aten.unbind.int",
        # copies, joins, rearrangements, indexing
        "aten.clone.default",
        "aten._to_copy.default",
        "aten.type_as.default",
        "aten.cat.default",
        "aten.stack.default",
        "aten.repeat.default",
        "aten.tile.default",
        "aten.flip.default",
        "aten.roll.default",
        "aten.tril.default",
        "aten.triu.default",
        "aten.index.Tensor",
        "aten.index_select.default",
        "aten.gather.default",
        "aten.masked_fill.Scalar",
        "aten.where.self",
        "aten.where.ScalarSelf",
        "aten.one_hot.default",
        # constants (initialised memory only)
        "aten.zeros.default",
        "aten.ones.default",
        "aten.full.default",
        "aten.arange.default",
        "aten.zeros_like.default",
        "aten.ones_like.default",
        "aten.full_like.default",
        "aten.new_zeros.default",
        "aten.new_ones.default",
        "aten.new_full.default",
        # reductions, scans, ordering
        "aten.sum.default",
        "aten.sum.dim_IntList",
        "aten.mean.dim",
        "aten.prod.dim_int",
        "aten.amax.default",
        "aten.amin.default",
        "aten.max.default",
        "aten.max.dim",
        "aten.min.default",
        "aten.min.dim",
        "aten.argmax.default",
        "aten.argmin.default",
        "aten.std.dim",
        "aten.var.dim",
        "aten.logsumexp.default",
        "aten.all.dim",
        "aten.any.dim",
        "aten.cumsum.default",
        "aten.cumprod.default",
        "aten.sort.default",
        "aten.topk.default",
        # elementwise arithmetic and maths
        "aten.add.Tensor",
        "aten.sub.Tensor",
        "aten.rsub.Scalar",
        "aten.mul.Tensor",
        "aten.div.Tensor",
        "aten.div.Tensor_mode",
        "aten.floor_divide.default",
        "aten.remainder.Scalar",
        "aten.pow.Tensor_Scalar",
        "aten.pow.Tensor_Tensor",
        "aten.addcmul.default",
        "aten.lerp.Scalar",
        "aten.neg.default",
        "aten.abs.default",
        "aten.sign.default",
        "aten.reciprocal.default",
        "aten.square.default",
        "aten.sqrt.default",
        "aten.rsqrt.default",
        "aten.exp.default",
        "aten.exp2.default",
        "aten.expm1.default",
        "aten.log.default",
        "aten.log1p.default",
        "aten.erf.default",
        "aten.sin.default",
        "aten.cos.default",
        "aten.tan.default",
        "aten.atan.default",
        "aten.atan2.default",
        "aten.sinh.default",
        "aten.floor.default",
        "aten.ceil.default",
        "aten.round.default",
        "aten.round.decimals",
        "aten.trunc.default",
        "aten.frac.default",
        "aten.clamp.default",
        "aten.clamp.Tensor",
        "aten.clamp_min.default",
        "aten.maximum.default",
        "aten.minimum.default",
        "aten.fmax.default",
        "aten.nan_to_num.default",
        # comparisons and logic
        "aten.eq.Tensor",
        "aten.ne.Tensor",
        "aten.lt.Tensor",
        "aten.le.Tensor",
        "aten.gt.Tensor",
        "aten.ge.Tensor",
        "aten.lt.Scalar",
        "aten.le.Scalar",
        "aten.gt.Scalar",
        "aten.isnan.default",
        "aten.isinf.default",
        "aten.isfinite.default",
        "aten.logical_and.default",
        "aten.logical_or.default",
        "aten.logical_not.default",
        "aten.bitwise_not.default",
        "aten.__and__.Tensor",
        "aten.__or__.Tensor",
        "aten.__xor__.Tensor",
    }
)

#: argument values an allowed operator must be called with (a dropout or a training switch stays off)
ARGUMENT_CONSTRAINTS: Mapping[str, Mapping[str, Any]] = {
    "aten.scaled_dot_product_attention.default": {"dropout_p": 0.0},
    "aten.lstm.input": {"train": False},
    "aten.gru.input": {"train": False},
    "aten.rnn_tanh.input": {"train": False},
}
#: arguments of any operator that must be off if given (pinned host memory needs a GPU driver)
COMMON_CONSTRAINTS: Mapping[str, Any] = {"pin_memory": (None, False)}

#: string arguments an allowed operator may take (options, never paths or code)
SAFE_STRING_ARGUMENTS = frozenset({"approximate", "rounding_mode", "padding", "equation", "mode", "reduce", "indexing"})

#: rewrites the exporter applies before checking (same semantics, listed operator)
EXPORT_REWRITES: Mapping[str, str] = {"aten._unsafe_view.default": "aten.view.default"}
#: operators the exporter leaves out of a program (checks whose result nothing reads)
EXPORT_DROPPED = frozenset({"aten._assert_tensor_metadata.default"})

#: ONNX operator types (default domain) an ``onnx`` program may use, on workers started with ``--allow-onnx``.
#: Made like the ATen list: ``tools/aten_op_candidates.py --onnx`` exports the zoo and the corpus with
#: the TorchScript-based ONNX exporter (opset 17) and lists the op types; reviewed by hand. Left out:
#: ``If``, ``Loop``, ``Scan`` (sub-graphs), random operators, and anything outside the default domain.
#: An ONNX program must also have every intermediate shape known statically (ONNX shape inference with
#: data propagation), so its memory is bounded before it runs.
ONNX_ALLOWED_OPS: frozenset[str] = frozenset(
    {
        "Abs", "Add", "And", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Cast", "Celu", "Clip",
        "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "DepthToSpace", "Div", "Einsum", "Elu",
        "Equal", "Erf", "Expand", "Flatten", "GRU", "Gather", "GatherElements", "Gemm", "GlobalAveragePool",
        "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity", "InstanceNormalization", "IsInf",
        "IsNaN", "LSTM", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "MatMul",
        "Max", "MaxPool", "Mod", "Mul", "Neg", "Not", "OneHot", "Or", "PRelu", "Pad", "Pow", "RNN", "Range",
        "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
        "ReduceProd", "ReduceSum", "Relu", "Reshape", "Resize", "Selu", "Shape", "Sigmoid", "Sign", "Size",
        "Slice", "Softmax", "Softplus", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Tile", "TopK", "Transpose",
        "Trilu", "Unsqueeze", "Where", "Xor",
    }
)  # fmt: skip

__all__ = [
    "ALLOWED_OPERATORS",
    "ARGUMENT_CONSTRAINTS",
    "COMMON_CONSTRAINTS",
    "EXPORT_DROPPED",
    "EXPORT_REWRITES",
    "ONNX_ALLOWED_OPS",
    "SAFE_STRING_ARGUMENTS",
]
