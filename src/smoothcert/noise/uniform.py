"""Uniform noise on a cube: the l1 and linf certificates of Yang et al. (2020)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from smoothcert.noise.base import Noise


class UniformNoise(Noise):
    """Adds noise uniform on ``[-lambda, lambda]^d``, ``lambda = sqrt(3) * sigma`` (so each
    coordinate has standard deviation ``sigma``), in [0, 1] pixel space without clipping.

    Certificates (Yang et al., "Randomized smoothing of all shapes and sizes", 2020): a shift delta
    moves a fraction ``1 - prod_i (1 - |delta_i| / (2 lambda))`` of the cube's mass outside the
    shifted cube, the most mass any set can lose, so the answer stands while p_A minus that
    fraction is > 1/2:

    - l1: ``2 lambda (p_A - 1/2)`` (the lost fraction is at most ``||delta||_1 / (2 lambda)``).
    - linf: ``2 lambda (1 - (3/2 - p_A)^(1/d))`` (the worst shift moves every coordinate by r).
    """

    name = "uniform"
    norms = ("l1", "linf")

    @staticmethod
    def scale_of(sigma: float) -> float:
        """``lambda = sqrt(3) sigma`` (uniform on [-lambda, lambda] has variance lambda^2 / 3)."""
        return math.sqrt(3.0) * sigma

    source = staticmethod(torch.rand)

    @staticmethod
    def standardize(draws: Tensor) -> Tensor:
        """Samples uniform on [-1, 1): ``2u - 1`` for u uniform on [0, 1)."""
        return draws.mul_(2).sub_(1)

    def _radius(
        self, p: np.ndarray, norm: str, dim: int | None, q: np.ndarray | None, sigma: float
    ) -> np.ndarray:
        lam = self.scale_of(sigma)
        if norm == "linf":
            return 2 * lam * (1 - np.power(1.5 - p, 1.0 / dim))
        return 2 * lam * (p - 0.5)

    def _radius_torch(
        self, p: Tensor, norm: str, dim: int | None, q: Tensor | None, sigma: float
    ) -> Tensor:
        lam = self.scale_of(sigma)
        if norm == "linf":
            return 2 * lam * (1 - torch.pow(1.5 - p, 1.0 / dim))
        return 2 * lam * (p - 0.5)
