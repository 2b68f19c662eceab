"""Networks that train on scikit-learn's digits in seconds: the models early-exit tests and benchmarks use.

- :func:`digits_cnn`: a small LeNet-like CNN for 1x8x8 digits (BranchyNet's
  B-LeNet is LeNet on MNIST with one branch after the first conv layer;
  Teerapittayanon et al., "BranchyNet: Fast Inference via Early Exiting from
  Deep Neural Networks", ICPR 2016);
- :func:`digits_resnet`: torchvision's own ``ResNet`` class (the zoo's
  ResNet-18 architecture) scaled in depth to one BasicBlock per stage, for
  3x32x32 digits (the 8x8 images upsampled), with 10 classes.

Both are factories (``tiercut.exits.models:digits_cnn``), so every command
that takes ``package.module:factory`` takes them.
"""

from __future__ import annotations

from typing import Any

#: the input shape each factory expects (batch 1)
INPUT_SHAPES = {"digits_cnn": (1, 1, 8, 8), "digits_resnet": (1, 3, 32, 32)}
NUM_CLASSES = 10


def digits_cnn() -> Any:
    """A three-conv CNN for 1x8x8 digits, 10 logits."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 2 * 2, 64),
        nn.ReLU(),
        nn.Linear(64, NUM_CLASSES),
    )


def digits_resnet() -> Any:
    """torchvision's ResNet (BasicBlock, one block per stage: the ResNet-18 layout at depth 10) for 3x32x32, 10 logits."""
    from torchvision.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=NUM_CLASSES)


__all__ = ["INPUT_SHAPES", "NUM_CLASSES", "digits_cnn", "digits_resnet"]
