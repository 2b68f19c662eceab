"""Joint training of exit branches on scikit-learn's digits (BranchyNet's weighted loss).

BranchyNet (Teerapittayanon, McDanel, Kung, "BranchyNet: Fast Inference via
Early Exiting from Deep Neural Networks", ICPR 2016, Sec. III-A) trains the
network and its branches jointly on ``L = sum_k w_k * CE(exit_k logits, y)``.
The data is scikit-learn's bundled ``load_digits`` (1,797 8x8 grey images,
no download), split 75/25 stratified with the seed; for 32x32 models the
images are upsampled bilinearly (and repeated over 3 channels when the model
takes RGB).

Everything is seeded (data split, weights, batch order) and runs on the CPU
in one thread, so a seed gives the same accuracies on every run of this
torch build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError

#: where the data comes from (recorded in every exits file)
DATA_SOURCE = "scikit-learn load_digits (UCI optical handwritten digits, 1,797 8x8 images), bundled with the package"


@dataclass(frozen=True)
class DigitsData:
    """The digits split: tensors shaped like the model's input (N, C, H, W) and int64 labels."""

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    input_shape: tuple[int, ...]


def load_digits_split(input_shape: Sequence[int], seed: int = 0, test_fraction: float = 0.25) -> DigitsData:
    """Digits shaped for a model whose input is ``input_shape`` (batch, 1 or 3 channels, 8 or 32 square)."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or shape[1] not in (1, 3) or shape[2] != shape[3] or shape[2] not in (8, 32):
        raise TiercutError(
            f"input shape {','.join(map(str, shape))} cannot take the digits data; exits train on 1x8x8, 1x32x32, 3x8x8 "
            "or 3x32x32 images (e.g. --input-shape 1,1,8,8)"
        )
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )

    def shaped(a: Any) -> Any:
        t = torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(1)
        if shape[2] != 8:
            t = torch.nn.functional.interpolate(t, size=(shape[2], shape[3]), mode="bilinear", align_corners=False)
        if shape[1] == 3:
            t = t.repeat(1, 3, 1, 1)
        return (t - 0.5) / 0.5

    return DigitsData(
        shaped(x_tr), torch.from_numpy(y_tr).long(), shaped(x_te), torch.from_numpy(y_te).long(), (1, *shape[1:])
    )


@dataclass(frozen=True)
class TrainingSettings:
    """How a network is trained: Adam, mini-batches, seeded.

    Attributes:
        epochs: passes over the training split.
        batch_size: mini-batch size.
        learning_rate: Adam's step size.
        seed: seeds the weights of new branches, the batch order and the split.
        exit_weights: BranchyNet's loss weights, one per exit (side exits in
            depth order, then the final exit); None: 1 each.
        trunk_gradient: per side exit (depth order), the fraction of its
            branch's loss gradient that flows back into the shared trunk
            (1: BranchyNet's joint training; 0: the branch trains on the
            trunk's features as they are, a detached side classifier; the
            forward values are the same either way); None: 1 each.
    """

    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0
    exit_weights: tuple[float, ...] | None = None
    trunk_gradient: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "exit_weights": None if self.exit_weights is None else list(self.exit_weights),
            "trunk_gradient": None if self.trunk_gradient is None else list(self.trunk_gradient),
        }


def _logits_tuple(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _scaled_gradient(x: Any, fraction: float) -> Any:
    """``x`` in the forward pass; ``fraction`` of the gradient flows back through it."""
    if fraction == 1.0:
        return x
    if fraction == 0.0:
        return x.detach()
    return x * fraction + x.detach() * (1.0 - fraction)


def _training_outputs(net: Any, x: Any, trunk_gradient: Sequence[float] | None) -> tuple[Any, ...]:
    """The logits of every exit, each side branch fed its trunk features with ``trunk_gradient`` applied."""
    if trunk_gradient is None:
        return _logits_tuple(net(x))
    *features, final = net.backbone(x)
    return (*(head(_scaled_gradient(f, g)) for head, f, g in zip(net.heads, features, trunk_gradient, strict=True)), final)


def train_jointly(net: Any, data: DigitsData, settings: TrainingSettings) -> list[float]:
    """Train ``net`` (one or several logits outputs) on ``sum_k w_k * CE_k``; returns the loss per epoch.

    With ``settings.trunk_gradient`` (a multi-exit net only) each side branch's
    loss reaches the shared trunk scaled by its fraction.
    """
    import math

    import torch

    n_out = len(_logits_tuple(net(data.x_train[:1])))
    weights = settings.exit_weights or (1.0,) * n_out
    if len(weights) != n_out:
        raise TiercutError(f"{len(weights)} exit weights for {n_out} exits; give one weight per exit, the final last")
    if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise TiercutError("exit weights must be >= 0 with at least one > 0")
    trunk_gradient = settings.trunk_gradient
    if trunk_gradient is not None:
        if not hasattr(net, "heads") or len(trunk_gradient) != n_out - 1:
            raise TiercutError(f"{len(trunk_gradient)} trunk-gradient fractions for {n_out - 1} side exits; give one "
                               "per side exit (a network with exits only)")
        if not all(math.isfinite(g) and 0.0 <= g <= 1.0 for g in trunk_gradient):
            raise TiercutError("trunk-gradient fractions must lie within 0..1 (1: joint training, 0: detached branch)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(settings.seed)
        generator = torch.Generator().manual_seed(settings.seed)
        optimizer = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
        n = len(data.y_train)
        losses = []
        net.train()
        for _ in range(settings.epochs):
            order = torch.randperm(n, generator=generator)
            total = 0.0
            for start in range(0, n, settings.batch_size):
                idx = order[start : start + settings.batch_size]
                optimizer.zero_grad()
                outs = _training_outputs(net, data.x_train[idx], trunk_gradient)
                loss = sum(w * torch.nn.functional.cross_entropy(o, data.y_train[idx]) for w, o in zip(weights, outs))
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / n)
        net.eval()
    finally:
        torch.set_num_threads(threads)
    return losses


def exit_logits(net: Any, x: Any) -> list[Any]:
    """Every exit's logits on ``x`` (eval mode, no gradients), side exits first, the final last."""
    import torch

    net.eval()
    with torch.no_grad():
        return [o.detach() for o in _logits_tuple(net(x))]


def accuracy(net: Any, x: Any, y: Any) -> list[float]:
    """Each exit's accuracy on ``(x, y)`` when every sample is classified there."""
    return [float((logits.argmax(1) == y).float().mean()) for logits in exit_logits(net, x)]


__all__ = ["DATA_SOURCE", "DigitsData", "TrainingSettings", "accuracy", "exit_logits", "load_digits_split", "train_jointly"]
