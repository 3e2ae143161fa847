"""Normalization as a model's first layer: noise is added in [0, 1] pixel space, so every model
(classifier, segmenter, autoencoder, box regressor, detector) takes pixels and normalizes inside,
with the statistics as buffers saved in every checkpoint. One wrapper for every task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError

__all__ = ["Normalize", "NormalizedNet"]


class Normalize(nn.Module):
    """(x - mean) / std per channel, with mean and std as buffers (saved in every checkpoint)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ConfigError(f"normalization mean={list(mean)} std={list(std)} is invalid")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class NormalizedNet(nn.Module):
    """``net(normalize(x))`` for inputs in [0, 1] pixel space (noise is added there, so the
    normalization, with its statistics as buffers, is the model's first layer)."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x))
