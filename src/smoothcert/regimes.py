"""Training objectives ("regimes"): pluggable losses for the classification module.

An objective is called as ``objective(model, x, y) -> loss`` with ``x`` in [0, 1] pixel space; the
module calls ``objective.on_epoch_start(epoch)`` so schedules (warm-ups) need no module changes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from smoothcert.noise import GaussianNoise


class TrainingObjective(nn.Module):
    """Base class: subclasses implement ``forward(model, x, y) -> scalar loss``."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called at the start of every training epoch; no-op by default."""

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class GaussianAugmentation(TrainingObjective):
    """Cohen et al.'s training: cross-entropy of the base model on x + N(0, sigma^2 I)."""

    def __init__(self, noise: GaussianNoise) -> None:
        super().__init__()
        self.noise = noise

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(model(self.noise(x)), y)
