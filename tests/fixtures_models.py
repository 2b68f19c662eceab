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


class MLPBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class LoopThenBlock(nn.Module):
    """fx cannot iterate over a traced size (torch.export can); then a block to keep whole with --leaf-module."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.block = MLPBlock()
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = torch.stack([self.fc(x[i]) for i in range(x.shape[0])])
        return self.head(torch.relu(self.block(rows)))


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


class TinyTransformer(nn.Module):
    """Token ids (int64) and a padding mask (bool) -> class logits: embedding, 2 encoder layers, pooled head."""

    def __init__(self, vocab: int = 50, width: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, 3)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embed(ids), src_key_padding_mask=mask)
        return self.head(hidden.mean(dim=1))


class TwoInputs(nn.Module):
    """An image and a float feature vector, fused late."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.side = nn.Linear(5, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.relu(self.conv(image)).mean(dim=(2, 3))
        return self.fc(pooled + self.side(features))


def tiny_transformer() -> nn.Module:
    return TinyTransformer()


def tiny_transformer_with_inputs() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A factory returning (model, example_inputs) as a dict keyed by forward argument."""
    ids = torch.randint(0, 50, (1, 12))
    mask = torch.zeros(1, 12, dtype=torch.bool)
    mask[0, 9:] = True  # the last three tokens are padding
    return TinyTransformer(), {"mask": mask, "ids": ids}


def two_inputs() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    return TwoInputs(), (torch.randn(1, 3, 8, 8), torch.randn(1, 5))
