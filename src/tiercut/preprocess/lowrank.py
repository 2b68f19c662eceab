"""Low-rank decomposition of convolution kernels and fully connected weights.

- A ``k_h x k_w`` convolution (``C -> N`` channels, ``groups == 1``) becomes
  two: a vertical ``k_h x 1`` convolution to ``r`` channels, then a
  horizontal ``1 x k_w`` one to ``N`` (Jaderberg, Vedaldi and Zisserman,
  "Speeding up Convolutional Neural Networks with Low Rank Expansions",
  BMVC 2014, scheme 2). The two kernels are the closed-form optimum of Tai,
  Xiao, Zhang, Wang and E, "Convolutional neural networks with low-rank
  regularization", ICLR 2016: the SVD of the kernel reshaped to a
  ``(C k_h) x (N k_w)`` matrix, truncated to rank ``r``.
- A ``1 x 1`` convolution or a linear layer ``W`` (``N x C``) becomes two
  of rank ``r`` (``C -> r -> N``) by the truncated SVD of ``W`` (Zhang, Zou,
  He and Sun, "Accelerating Very Deep Convolutional Networks for
  Classification and Detection", TPAMI 2016; Denton et al., NIPS 2014 for
  fully connected layers).

The rank is the smallest keeping ``energy`` of the squared singular values,
or a given ``rank``; a layer is replaced only when the two factors hold
fewer weights and do fewer multiply-adds than the original (a strided
convolution's vertical factor runs at the input's width, which counts).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError


@dataclass(frozen=True)
class LowRankSettings:
    """How ranks are chosen.

    Attributes:
        energy: keep the smallest rank whose squared singular values sum to at
            least this fraction of the total (0 < energy <= 1).
        rank: a fixed rank instead (capped at the full rank).
        min_weights: leave layers with fewer weights alone.
    """

    energy: float = 0.9
    rank: int | None = None
    min_weights: int = 1024

    def check(self) -> None:
        if not 0.0 < float(self.energy) <= 1.0:
            raise TiercutError(f"--energy {self.energy!r} must lie in (0, 1], e.g. 0.9")
        if self.rank is not None and (isinstance(self.rank, bool) or int(self.rank) < 1):
            raise TiercutError(f"--rank {self.rank!r} must be a whole number >= 1")


def choose_rank(singular: Any, settings: LowRankSettings) -> int:
    """The rank ``settings`` asks for, given the singular values (descending)."""
    import torch

    full = int(singular.numel())
    if settings.rank is not None:
        return max(1, min(int(settings.rank), full))
    energy = torch.cumsum(singular.double() ** 2, 0)
    total = float(energy[-1]) if full else 0.0
    if total <= 0:
        return 1
    return int(torch.searchsorted(energy / total, torch.tensor(float(settings.energy), dtype=torch.float64)).item()) + 1


def _svd(matrix: Any) -> tuple[Any, Any, Any]:
    import torch

    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return u, s, vh


def _pair(value: Any) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value), int(value))


def decomposable(module: Any) -> str | None:
    """``"conv_vh"``, ``"conv_1x1"``, ``"linear"`` for a layer this module can decompose, else None."""
    from torch import nn

    if type(module) is nn.Linear:
        return "linear"
    if type(module) is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros" and not isinstance(
        module.padding, str
    ):
        return "conv_1x1" if tuple(module.kernel_size) == (1, 1) else "conv_vh"
    return None


def factor_module(module: Any, kind: str, rank: int) -> Any:
    """The (randomly initialised) two-layer replacement of ``module`` at ``rank``: the architecture only."""
    from torch import nn

    bias = module.bias is not None
    if kind == "linear":
        return nn.Sequential(nn.Linear(module.in_features, rank, bias=False), nn.Linear(rank, module.out_features, bias=bias))
    if kind == "conv_1x1":
        return nn.Sequential(
            nn.Conv2d(module.in_channels, rank, 1, stride=module.stride, padding=module.padding, bias=False),
            nn.Conv2d(rank, module.out_channels, 1, bias=bias),
        )
    (kh, kw), (sh, sw) = _pair(module.kernel_size), _pair(module.stride)
    (ph, pw), (dh, dw) = _pair(module.padding), _pair(module.dilation)
    return nn.Sequential(
        nn.Conv2d(module.in_channels, rank, (kh, 1), stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), bias=False),
        nn.Conv2d(rank, module.out_channels, (1, kw), stride=(1, sw), padding=(0, pw), dilation=(1, dw), bias=bias),
    )


def factor_weights(module: Any, kind: str, rank: int | None, settings: LowRankSettings) -> tuple[int, Any, Any]:
    """(rank, first weight, second weight) of the truncated decomposition."""
    import torch

    w = module.weight.detach()
    if kind in ("linear", "conv_1x1"):
        matrix = w.reshape(w.shape[0], w.shape[1])  # N x C
        u, s, vh = _svd(matrix)
        r = rank or choose_rank(s, settings)
        root = torch.sqrt(s[:r])
        first = (root[:, None] * vh[:r]).float()  # r x C
        second = (u[:, :r] * root[None, :]).float()  # N x r
        if kind == "conv_1x1":
            first, second = first[:, :, None, None], second[:, :, None, None]
        return r, first, second
    n, c, kh, kw = w.shape
    matrix = w.permute(1, 2, 0, 3).reshape(c * kh, n * kw)  # M[(c, i), (n, j)] = W[n, c, i, j]
    u, s, vh = _svd(matrix)
    r = rank or choose_rank(s, settings)
    root = torch.sqrt(s[:r])
    vertical = (u[:, :r] * root[None, :]).T.reshape(r, c, kh, 1).float()
    horizontal = (root[:, None] * vh[:r]).reshape(r, n, kw).permute(1, 0, 2).reshape(n, r, 1, kw).float()
    return r, vertical, horizontal


def factor_weight_count(module: Any, kind: str, rank: int) -> int:
    if kind == "linear":
        return rank * (module.in_features + module.out_features)
    if kind == "conv_1x1":
        return rank * (module.in_channels + module.out_channels)
    kh, kw = _pair(module.kernel_size)
    return rank * (module.in_channels * kh + module.out_channels * kw)


def factor_flops_per_output(module: Any, kind: str, rank: int) -> float:
    """Multiply-adds per output element of the two factors relative to the output grid.

    The vertical ``k_h x 1`` convolution keeps the input's full width (its
    column stride is 1), so a column stride ``s_w`` makes it ``s_w`` times
    as wide as the output: ``r (C k_h s_w + N k_w)`` against ``N C k_h k_w``.
    """
    if kind != "conv_vh":
        return float(factor_weight_count(module, kind, rank))
    kh, kw = _pair(module.kernel_size)
    _, sw = _pair(module.stride)
    return float(rank * (module.in_channels * kh * sw + module.out_channels * kw))


def named_layers(model: Any) -> Iterator[tuple[str, Any, str]]:
    for name, module in model.named_modules():
        kind = decomposable(module)
        if kind is not None and name:
            yield name, module, kind


def decompose(model: Any, settings: LowRankSettings) -> tuple[Any, list[dict[str, Any]]]:
    """A copy of ``model`` with every layer worth it decomposed, and the edits that rebuild the architecture."""
    import copy

    import torch

    settings.check()
    model = copy.deepcopy(model).eval()
    edits: list[dict[str, Any]] = []
    for name, module, kind in list(named_layers(model)):
        original = module.weight.numel()
        if original < settings.min_weights:
            continue
        rank, first, second = factor_weights(module, kind, None, settings)
        if factor_weight_count(module, kind, rank) >= original or factor_flops_per_output(module, kind, rank) >= original:
            continue  # the factors must save both weights and multiply-adds
        replacement = factor_module(module, kind, rank)
        with torch.no_grad():
            replacement[0].weight.copy_(first)
            replacement[1].weight.copy_(second)
            if module.bias is not None:
                replacement[1].bias.copy_(module.bias.detach())
        set_submodule(model, name, replacement)
        edits.append({"op": "lowrank", "module": name, "kind": kind, "rank": rank})
    return model, edits


def set_submodule(model: Any, path: str, module: Any) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, module)


__all__ = ["LowRankSettings", "choose_rank", "decompose", "factor_module", "set_submodule"]
