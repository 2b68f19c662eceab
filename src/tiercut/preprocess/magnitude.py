"""Magnitude (unstructured) pruning, stored sparse.

Han, Pool, Tran and Dally, "Learning both Weights and Connections for
Efficient Neural Networks", NeurIPS 2015: in each layer, the weights of the
smallest magnitude are set to zero (here a per-layer ``sparsity``: that
fraction of every Conv2d / Linear weight tensor, ties at the threshold broken
by position, so the count is exact). The architecture does not change; no
fine-tuning is done here (``tiercut compress --digits --finetune-epochs``
retrains all weights and then sets the pruned ones to zero again once,
:func:`reapply_masks`: one prune-retrain-prune pass, not masked training).

What it saves, honestly:

- **bytes**: a compressed model's file stores every tensor with enough zeros
  as a bitmap of its non-zeros (one bit per element) plus the non-zero values
  (:func:`sparse_encode`), so the file and the weights a device must receive
  shrink to about ``(1 - sparsity) + 1/32`` of float32;
- **FLOPs**: torch's CPU conv and linear kernels are dense, they multiply
  the zeros too, so the model runs as fast as before. The layer graph and the
  cost model therefore keep counting dense FLOPs (what the kernels execute);
  :func:`nonzero_flops` reports what a sparse kernel could reach (each
  conv/linear node's FLOPs times its weight's density) beside them, as a
  bound, not as a prediction.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError

#: a tensor is stored sparse when the bitmap + values are at most this fraction of its dense bytes
SPARSE_WORTH = 0.9
#: tensors smaller than this are stored dense (a bitmap of a bias saves nothing)
SPARSE_MIN_ELEMENTS = 64


@dataclass(frozen=True)
class MagnitudeSettings:
    """``sparsity``: the fraction of each Conv2d / Linear weight set to zero (0 <= sparsity < 1)."""

    sparsity: float = 0.5

    def check(self) -> None:
        if not (math.isfinite(float(self.sparsity)) and 0.0 <= float(self.sparsity) < 1.0):
            raise TiercutError(
                f"--ratio {self.sparsity!r} must lie in [0, 1), the fraction of each layer's weights set to zero, e.g. 0.8"
            )


def _prunable(model: Any) -> list[tuple[str, Any]]:
    from torch import nn

    return [(name, m) for name, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Conv1d, nn.Linear)]


def prune_magnitude(model: Any, settings: MagnitudeSettings) -> tuple[Any, list[dict[str, Any]]]:
    """A copy of ``model`` whose Conv/Linear weights have their smallest-magnitude ``sparsity`` set to zero, and, per
    layer, ``{"module", "zeros", "elements"}``."""
    import torch

    settings.check()
    model = copy.deepcopy(model).eval()
    layers = _prunable(model)
    if not layers:
        raise TiercutError("magnitude pruning found no Conv or Linear layer in the model; try int8 or fp16")
    report = []
    with torch.no_grad():
        for name, layer in layers:
            weight = layer.weight
            if weight.dtype != torch.float32:
                raise TiercutError(f"magnitude pruning needs float32 weights; layer {name!r} holds {weight.dtype}")
            n = weight.numel()
            k = round(float(settings.sparsity) * n)
            if k:
                order = torch.argsort(weight.detach().abs().reshape(-1), stable=True)
                flat = weight.view(-1)
                flat[order[:k]] = 0.0
            report.append({"module": name, "zeros": int((weight == 0).sum()), "elements": n})
    return model, report


def masks(model: Any) -> dict[str, Any]:
    """module path -> boolean mask of the non-zero weights of each Conv/Linear layer."""
    return {name: (layer.weight.detach() != 0) for name, layer in _prunable(model)}


def reapply_masks(model: Any, kept: Mapping[str, Any]) -> None:
    """Set to zero again the weights ``kept`` (from :func:`masks`) marks as pruned (after a fine-tuning step)."""
    import torch

    with torch.no_grad():
        for name, layer in _prunable(model):
            mask = kept.get(name)
            if mask is not None and mask.shape == layer.weight.shape:
                layer.weight.mul_(mask.to(layer.weight.dtype))


# ------------------------------------------------------------------------------ sparse storage (bitmap + values)
def sparse_bytes(tensor: Any) -> int:
    """Bytes of ``tensor`` stored as a bitmap of its non-zeros plus their values."""
    nnz = int((tensor != 0).sum())
    return math.ceil(tensor.numel() / 8) + nnz * tensor.element_size()


def worth_sparse(tensor: Any) -> bool:
    """Whether ``tensor`` (a floating tensor) is stored smaller as bitmap + values (:data:`SPARSE_WORTH`)."""
    if not tensor.is_floating_point() or tensor.numel() < SPARSE_MIN_ELEMENTS:
        return False
    return sparse_bytes(tensor) <= SPARSE_WORTH * tensor.numel() * tensor.element_size()


def sparse_encode(tensor: Any) -> tuple[Any, Any]:
    """``(bitmap, values)``: a uint8 tensor of the non-zero positions packed 8 per byte (row-major, low bit
    first) and the non-zero values in that order."""
    import numpy as np
    import torch

    flat = tensor.detach().contiguous().reshape(-1)
    nonzero = (flat != 0).numpy()
    bitmap = torch.from_numpy(np.packbits(nonzero, bitorder="little").copy())
    return bitmap, flat[torch.from_numpy(nonzero)].clone()


def sparse_decode(bitmap: Any, values: Any, shape: Any, where: str) -> Any:
    """The dense tensor of :func:`sparse_encode`'s pair, checked before allocating: the shape's element count
    fits the bitmap (so a file cannot ask for more memory than 8 elements per stored byte) and the values are as
    many as its set bits."""
    import numpy as np
    import torch

    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise TiercutError(f"{where}: a sparse tensor's shape must be a list of whole numbers")
    if bitmap.dtype != torch.uint8 or bitmap.dim() != 1 or values.dim() != 1 or not values.is_floating_point():
        raise TiercutError(f"{where}: a sparse tensor needs a uint8 bitmap and a 1-d floating values tensor")
    numel = math.prod(shape)
    if math.ceil(numel / 8) != bitmap.numel():
        need = math.ceil(numel / 8)
        raise TiercutError(f"{where}: a sparse tensor's bitmap has {bitmap.numel()} bytes, its shape needs {need}")
    nonzero = np.unpackbits(bitmap.numpy(), count=numel, bitorder="little").astype(bool)
    if int(nonzero.sum()) != values.numel():
        raise TiercutError(f"{where}: a sparse tensor has {values.numel()} values for {int(nonzero.sum())} set bits")
    dense = torch.zeros(numel, dtype=values.dtype)
    dense[torch.from_numpy(nonzero)] = values
    return dense.reshape(shape)


def nonzero_flops(graph: Any, model: Any) -> int:
    """FLOPs of ``graph`` if each node's multiply-adds with a zero weight were skipped: a node using one weight
    tensor of ``model`` counts its FLOPs times that weight's density; other nodes count in full."""
    state = dict(model.state_dict())
    total = 0.0
    for node in graph:
        weights = [state[p] for p in node.params if p.endswith("weight") and p in state and hasattr(state[p], "numel")]
        if len(weights) == 1 and weights[0].is_floating_point() and weights[0].numel():
            total += node.flops * float((weights[0] != 0).sum()) / weights[0].numel()
        else:
            total += node.flops
    return round(total)


def sparsity_of(model: Any) -> float:
    """The fraction of zeros among the Conv/Linear weights of ``model``."""
    zeros = elements = 0
    for _, layer in _prunable(model):
        zeros += int((layer.weight == 0).sum())
        elements += layer.weight.numel()
    return zeros / elements if elements else 0.0


__all__ = [
    "SPARSE_MIN_ELEMENTS",
    "SPARSE_WORTH",
    "MagnitudeSettings",
    "masks",
    "nonzero_flops",
    "prune_magnitude",
    "reapply_masks",
    "sparse_bytes",
    "sparse_decode",
    "sparse_encode",
    "sparsity_of",
    "worth_sparse",
]
