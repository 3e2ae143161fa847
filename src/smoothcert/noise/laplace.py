"""Laplace noise: the l1 certificate of Teng et al. (2020)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from smoothcert.noise.base import Noise


class LaplaceNoise(Noise):
    """Adds i.i.d. Laplace(0, lambda) noise to every coordinate, ``lambda = sigma / sqrt(2)`` (so
    each coordinate has standard deviation ``sigma``), in [0, 1] pixel space without clipping.

    Certificate (Teng et al., "l1 adversarial robustness certificates: a randomized smoothing
    approach", 2020): l1 radius ``-lambda * ln(2 (1 - p_A))`` for p_A > 1/2. It is tight: for the
    half-space {z_1 <= F^-1(p_A)} (F the Laplace CDF) a shift of that length along axis 1 leaves
    mass exactly 1/2.
    """

    name = "laplace"
    norms = ("l1",)

    @staticmethod
    def scale_of(sigma: float) -> float:
        """``lambda = sigma / sqrt(2)`` (a Laplace(0, lambda) variable has variance 2 lambda^2)."""
        return sigma / math.sqrt(2.0)

    source = staticmethod(torch.rand)

    @staticmethod
    def standardize(draws: Tensor) -> Tensor:
        """Laplace(0, 1) samples from uniform u in [0, 1), one each: u gives the sign
        ``u >= 1/2`` and, from v = 2u - [u >= 1/2] (uniform on [0, 1), exact in floating point),
        the magnitude ``-ln(1 - v)``, an Exp(1) variable that is always finite."""
        u = draws
        positive = u >= 0.5
        u.mul_(2).sub_(positive.to(u.dtype))
        u.clamp_(max=1.0 - torch.finfo(u.dtype).eps)  # a generator that returned 1 stays finite
        u.neg_().log1p_().neg_()
        return u.mul_(positive.to(u.dtype).mul_(2).sub_(1))

    def _radius(
        self, p: np.ndarray, norm: str, dim: int | None, q: np.ndarray | None, sigma: float
    ) -> np.ndarray:
        return -self.scale_of(sigma) * np.log(2 * (1 - p))

    def _radius_torch(
        self, p: Tensor, norm: str, dim: int | None, q: Tensor | None, sigma: float
    ) -> Tensor:
        return -self.scale_of(sigma) * torch.log(2 * (1 - p))
