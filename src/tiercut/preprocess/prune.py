"""Structured channel pruning: a smaller network, not a mask.

Li, Kadav, Durdanovic, Samet and Graf, "Pruning Filters for Efficient
ConvNets", ICLR 2017: rank a convolution's filters (output channels) by the
L1 norm of their weights -- a magnitude criterion -- and remove the smallest
``ratio`` of them together with the matching input channels of the layer
that reads them. Fully connected hidden units are pruned the same way (L1
norm of their weight rows). The result is a new ``nn.Module`` with smaller
``Conv2d`` / ``BatchNorm`` / ``Linear`` layers, so FLOPs, weight bytes and
activation bytes all drop. No fine-tuning is done here (the report says
what accuracy is left).

A layer is pruned only when its output reaches exactly one consumer through
channel-wise layers, so removing channels is well defined:

    producer (Conv2d groups=1 | Linear)
      -> [BatchNorm, ReLU-like activations, Dropout, max/avg pooling, Identity]*
      -> consumer (Conv2d groups=1 | Linear | Flatten -> Linear)

Residual adds, concatenations and depthwise convolutions end a chain there
(their channels are tied to other layers), so those producers are kept.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError

_PASS_MODULES = ("BatchNorm1d", "BatchNorm2d", "ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "Hardswish", "Sigmoid",
                 "Tanh", "Dropout", "Dropout2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Identity")


@dataclass(frozen=True)
class PruneSettings:
    """``ratio``: the fraction of each prunable layer's channels removed (0 <= ratio < 1).
    ``min_channels``: keep at least this many channels per layer."""

    ratio: float = 0.5
    min_channels: int = 1

    def check(self) -> None:
        if not 0.0 <= float(self.ratio) < 1.0:
            raise TiercutError(f"--ratio {self.ratio!r} must lie in [0, 1), the fraction of channels removed, e.g. 0.5")


@dataclass(frozen=True)
class _Chain:
    producer: str
    passes: tuple[str, ...]  # module paths of BatchNorms on the way
    consumer: str
    spatial: int  # 1, or H*W when the consumer is a Linear after Flatten


def _chains(model: Any, example_inputs: tuple[Any, ...]) -> list[_Chain]:
    import torch
    from torch import fx, nn
    from torch.fx.passes.shape_prop import ShapeProp

    gm = fx.symbolic_trace(model)
    ShapeProp(gm).propagate(*example_inputs)
    modules = dict(gm.named_modules())
    flatten_fns = (torch.flatten,)
    passing_fns = (torch.relu, nn.functional.relu, torch.sigmoid, torch.tanh, nn.functional.gelu,
                   nn.functional.silu, nn.functional.dropout, nn.functional.max_pool2d, nn.functional.avg_pool2d)
    chains: list[_Chain] = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        producer = modules[node.target]
        if not ((type(producer) is nn.Conv2d and producer.groups == 1) or type(producer) is nn.Linear):
            continue
        passes: list[str] = []
        current = node
        spatial = 1
        consumer: str | None = None
        while True:
            users = list(current.users)
            if len(users) != 1:
                break
            user = users[0]
            if user.op == "call_module":
                mod = modules[user.target]
                kind = type(mod).__name__
                if kind in _PASS_MODULES and type(mod).__module__.startswith("torch.nn"):
                    if kind.startswith("BatchNorm"):
                        passes.append(str(user.target))
                    current = user
                    continue
                if kind == "Flatten" and spatial == 1 and type(producer) is nn.Conv2d:
                    shape = current.meta["tensor_meta"].shape
                    if len(shape) == 4 and mod.start_dim == 1:
                        spatial = int(shape[2] * shape[3])
                        current = user
                        continue
                    break
                if (type(mod) is nn.Conv2d and mod.groups == 1 and spatial == 1 and type(producer) is nn.Conv2d) or (
                    type(mod) is nn.Linear and (spatial > 1 or type(producer) is nn.Linear)
                ):
                    consumer = str(user.target)
                break
            if user.op == "call_function" and user.target in passing_fns and user.args[0] is current:
                current = user
                continue
            if user.op == "call_function" and user.target in flatten_fns and spatial == 1 and type(producer) is nn.Conv2d:
                shape = current.meta["tensor_meta"].shape
                start = user.args[1] if len(user.args) > 1 else user.kwargs.get("start_dim", 0)
                if len(shape) == 4 and start == 1:
                    spatial = int(shape[2] * shape[3])
                    current = user
                    continue
            if user.op == "call_method" and user.target in ("relu", "sigmoid", "tanh"):
                current = user
                continue
            if user.op == "call_function" and user.target is operator.getitem:
                break
            break
        if consumer is not None:
            chains.append(_Chain(str(node.target), tuple(passes), consumer, spatial))
    return chains


def resized(module: Any, *, in_size: int | None = None, out_size: int | None = None) -> Any:
    """A new layer like ``module`` with other input / output sizes (Conv2d, Linear, BatchNorm): architecture only."""
    from torch import nn

    if type(module) is nn.Conv2d:
        return nn.Conv2d(in_size or module.in_channels, out_size or module.out_channels, module.kernel_size,
                         stride=module.stride, padding=module.padding, dilation=module.dilation, groups=module.groups,
                         bias=module.bias is not None, padding_mode=module.padding_mode)
    if type(module) is nn.Linear:
        return nn.Linear(in_size or module.in_features, out_size or module.out_features, bias=module.bias is not None)
    if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):
        return type(module)(out_size or module.num_features, eps=module.eps, momentum=module.momentum,
                            affine=module.affine, track_running_stats=module.track_running_stats)
    raise TiercutError(f"cannot resize a {type(module).__name__}; only Conv2d, Linear and BatchNorm layers")


def prune_channels(model: Any, example_inputs: tuple[Any, ...], settings: PruneSettings) -> tuple[Any, list[dict[str, Any]]]:
    """A smaller copy of ``model`` with the smallest-L1 channels of each prunable layer removed, and the edits."""
    import torch

    from tiercut.preprocess.lowrank import set_submodule

    settings.check()
    model = copy.deepcopy(model).eval()
    try:
        chains = _chains(model, example_inputs)
    except Exception as exc:  # torch.fx cannot trace every model; say which and why, in one line
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise TiercutError(f"cannot trace the model for channel pruning ({reason}); try lowrank, int8 or fp16") from None
    edits: list[dict[str, Any]] = []
    sizes: dict[str, dict[str, int]] = {}
    with torch.no_grad():
        for chain in chains:
            producer = model.get_submodule(chain.producer)
            weight = producer.weight.detach()
            n_out = weight.shape[0]
            keep_n = max(settings.min_channels, n_out - round(settings.ratio * n_out))
            if keep_n >= n_out:
                continue
            norms = weight.abs().reshape(n_out, -1).sum(1)
            keep = torch.sort(torch.topk(norms, keep_n).indices).values
            new = resized(producer, in_size=sizes.get(chain.producer, {}).get("in"), out_size=keep_n)
            new.weight.copy_(weight[keep])
            if producer.bias is not None:
                new.bias.copy_(producer.bias.detach()[keep])
            set_submodule(model, chain.producer, new)
            sizes.setdefault(chain.producer, {})["out"] = keep_n
            for bn_path in chain.passes:
                bn = model.get_submodule(bn_path)
                new_bn = resized(bn, out_size=keep_n)
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    value = getattr(bn, attr, None)
                    if value is not None:
                        getattr(new_bn, attr).copy_(value.detach()[keep])
                if bn.num_batches_tracked is not None:
                    new_bn.num_batches_tracked.copy_(bn.num_batches_tracked)
                set_submodule(model, bn_path, new_bn.eval())
                sizes.setdefault(bn_path, {})["out"] = keep_n
            consumer = model.get_submodule(chain.consumer)
            columns = keep if chain.spatial == 1 else (keep[:, None] * chain.spatial + torch.arange(chain.spatial)).reshape(-1)
            new_c = resized(consumer, in_size=len(columns), out_size=sizes.get(chain.consumer, {}).get("out"))
            new_c.weight.copy_(consumer.weight.detach()[:, columns])
            if consumer.bias is not None:
                new_c.bias.copy_(consumer.bias.detach())
            set_submodule(model, chain.consumer, new_c)
            sizes.setdefault(chain.consumer, {})["in"] = len(columns)
    for path, size in sizes.items():
        edits.append({"op": "resize", "module": path, "in": size.get("in"), "out": size.get("out")})
    return model.eval(), edits


__all__ = ["PruneSettings", "prune_channels", "resized"]
