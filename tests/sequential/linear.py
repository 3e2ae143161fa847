"""A model whose smoothed answer is known exactly: a 2-class linear classifier on R^2 under
Gaussian noise, p_A = Phi(margin / sigma) for an input at signed distance ``margin`` from the
boundary (class 1 on the positive side)."""

from __future__ import annotations

import torch
from torch import nn


class Linear2(nn.Module):
    """Logits ``[0, x_0]``: class 1 iff x_0 > 0 (the boundary is x_0 = 0, ||w|| = 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x[:, 0]
        return torch.stack([torch.zeros_like(z), z], dim=1)


def at_distance(margin: float) -> torch.Tensor:
    """An input at l2 distance ``margin`` on class 1's side."""
    return torch.tensor([float(margin), 0.0])
