"""Small models used by the tests through ``package.module:factory`` specs."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv -> relu -> two branches -> add -> linear, with a shared weight."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.left = nn.Conv2d(4, 4, 1)
        self.right = nn.Conv2d(4, 4, 1)
        self.right.weight = self.left.weight  # shared parameter: counted once
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        y = self.left(y) + self.right(y)
        return self.fc(torch.flatten(y, 1))


class LoopsOverBatch(nn.Module):
    """fx cannot iterate over a traced size; torch.export specialises it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = [self.fc(x[i]) for i in range(x.shape[0])]
        return torch.stack(rows)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        if y.sum() > 0:  # data-dependent control flow: neither fx nor export can capture it
            return y * 2
        return y


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(6, 6)
        self.inner = DataDependent()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.stem(x))


def tiny_net() -> nn.Module:
    return TinyNet()


def not_a_module() -> str:
    return "a string"


def raises() -> nn.Module:
    raise RuntimeError("factory exploded")


def exits() -> nn.Module:
    """A factory that tries to end the process (tiercut must turn it into a one-line error)."""
    raise SystemExit(0)
