"""Gaussian noise N(0, sigma^2 I): Cohen et al.'s certificates (l2, and l1 / linf through it)."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import norm as normal
from torch import Tensor

from smoothcert.errors import ConfigError
from smoothcert.noise.base import ArrayLike, Noise, _as_probability, _output
from smoothcert.noise.stream import NoiseStream


class GaussianNoise(Noise):
    """Adds N(0, sigma^2 I) to inputs in [0, 1] pixel space (no clipping, as in Cohen et al.).

    ``sigma`` may be a list of noise levels (training for certification at several levels, as
    ``certify=center`` does with a list): each example of a batch then gets a level drawn
    uniformly from the list. ``self.sigma`` is the number, or the sorted list of levels.

    Certificates (Cohen et al. 2019), with ``Phi`` the standard normal CDF:

    - l2: ``sigma * Phi^-1(p_A)``; with an upper bound p_B on the runner-up, the two-class radius
      ``sigma / 2 * (Phi^-1(p_A) - Phi^-1(p_B))``.
    - l1: the l2 radius, since ``||delta||_2 <= ||delta||_1`` (tight: the worst l1 shift is along
      one axis).
    - linf: the l2 radius over ``sqrt(d)``, since ``||delta||_2 <= sqrt(d) ||delta||_inf``; it
      shrinks with the dimension d (the curse of dimensionality of Kumar et al. 2020).
    """

    name = "gaussian"
    norms = ("l2", "l1", "linf")
    two_class = True
    worst_case_mass = True

    @staticmethod
    def scale_of(sigma: float) -> float:
        """The Gaussian's scale is its standard deviation: ``sigma`` itself."""
        return sigma

    @staticmethod
    def standardize(draws: Tensor) -> Tensor:
        """``torch.randn`` draws are already N(0, 1)."""
        return draws

    def _radius(
        self, p: np.ndarray, norm: str, dim: int | None, q: np.ndarray | None, sigma: float
    ) -> np.ndarray:
        # Cohen et al.'s Theorem 1; without an upper bound on p_B it uses p_B <= 1 - p_A.
        l2 = sigma * normal.ppf(p) if q is None else sigma / 2 * (normal.ppf(p) - normal.ppf(q))
        if norm == "linf":
            return l2 / np.sqrt(dim)
        return l2  # l2, and l1 through ||delta||_2 <= ||delta||_1

    def _radius_torch(
        self, p: Tensor, norm: str, dim: int | None, q: Tensor | None, sigma: float
    ) -> Tensor:
        # the same formula with Phi^-1 = torch.special.ndtri (differentiable)
        quantile = torch.special.ndtri(p)
        l2 = sigma * quantile if q is None else sigma / 2 * (quantile - torch.special.ndtri(q))
        return l2 / math.sqrt(dim) if norm == "linf" else l2

    def _mass_arguments(self, p: ArrayLike, r: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        probability = _as_probability(p, "p")
        shift = np.asarray(r, dtype=np.float64)
        if not np.all(shift >= 0):
            raise ConfigError(f"r must be >= 0 (an l2 distance), got {r}")
        return normal.ppf(probability), shift / self.certified_sigma

    def worst_case_mass_lower(self, p: ArrayLike, r: ArrayLike) -> ArrayLike:
        """``Phi(Phi^-1(p) - r / sigma)``: the least mass that a set of mass ``p`` under x + noise
        keeps under x + delta + noise for any ``||delta||_2 <= r`` (Neyman-Pearson; a half-space is
        the worst set)."""
        quantile, shift = self._mass_arguments(p, r)
        return _output(normal.cdf(quantile - shift), p, r)

    def worst_case_mass_upper(self, p: ArrayLike, r: ArrayLike) -> ArrayLike:
        """``Phi(Phi^-1(p) + r / sigma)``: the most mass that a set of mass ``p`` under x + noise
        can have under x + delta + noise for any ``||delta||_2 <= r`` (Neyman-Pearson)."""
        quantile, shift = self._mass_arguments(p, r)
        return _output(normal.cdf(quantile + shift), p, r)


def radius_from_lower_bound(p_lower: float, sigma: float) -> float:
    """Cohen et al.'s l2 radius sigma * Phi^-1(p_lower) for p_lower > 1/2 (0 otherwise); the
    formula is :meth:`GaussianNoise.radius` (this shorthand used to live in ``stats.binomial``)."""
    return float(GaussianNoise(sigma).radius(p_lower, "l2"))


class GaussianNoiseStream(NoiseStream):
    """An endless stream of N(0, sigma^2 I) samples of a fixed shape, drawn from one generator.

    ``take(m)`` returns the next ``m`` samples. Noise is generated in fixed-size chunks (a function
    of the sample shape only), so concatenating ``take`` calls of any sizes gives the same sequence.
    Same as ``GaussianNoise(sigma).stream(shape, generator, device, dtype)``.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        sigma: float,
        generator: torch.Generator,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(shape, GaussianNoise.draw_standard, sigma, generator, device, dtype)
        self.sigma = float(sigma)
