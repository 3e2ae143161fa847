"""Rayleigh noise for multiplicative parameters (gamma correction), after Muravev and Petiushko.

Derivation of the certificate (Neyman-Pearson for a scale family). Smooth over a multiplicative
parameter: ``g(x) = argmax_c P(f(psi_zeta(x)) = c)``, ``zeta ~ Rayleigh(s)`` with density
``z / s^2 exp(-z^2 / (2 s^2))``, ``z >= 0``, and ``psi_a . psi_b = psi_(a b)`` (gamma:
``(x^a)^b = x^(a b)``). Write ``h(t) = f(psi_t(x))``. The attack ``x' = psi_gamma(x)`` gives
``g(x') = argmax_c P(h(gamma zeta) = c)`` and ``gamma zeta ~ Rayleigh(gamma s)``: the attack only
rescales the smoothing distribution. So the question is the least mass that a set ``A`` with
``P_Z(A) >= p_A`` under ``Z ~ Rayleigh(s)`` keeps under ``Y ~ Rayleigh(gamma s)``.

The likelihood ratio ``p_Y(z) / p_Z(z) = gamma^-2 exp(z^2 / (2 s^2) (1 - gamma^-2))`` is monotone
in z: increasing for gamma > 1, decreasing for gamma < 1. By Neyman-Pearson the worst ``A`` is the
set where the ratio is smallest: a lower tail ``{z <= t}`` for gamma > 1, an upper tail
``{z >= t}`` for gamma < 1. With the CDF ``F_s(t) = 1 - exp(-t^2 / (2 s^2))``, so that
``1 - F_(gamma s)(t) = (1 - F_s(t))^(1 / gamma^2)``:

- gamma > 1: ``F_s(t) = p_A`` gives ``P_Y(A) = 1 - (1 - p_A)^(1 / gamma^2)``;
- gamma < 1: ``1 - F_s(t) = p_A`` gives ``P_Y(A) = p_A^(1 / gamma^2)``.

Both are free of ``s``. The class keeps probability above 1/2 (so it stays the answer, as the
rest has less than 1/2) iff ``sqrt(log2(1 / p_A)) < gamma < sqrt(log2(1 / (1 - p_A)))``;
p_A = 0.9 gives (0.390, 1.823). With an upper bound p_B on the runner-up, the answer stays while
the worst case of A beats the best case of B: ``1 - (1 - p_A)^u > p_B^u`` (gamma > 1) and
``p_A^u > 1 - (1 - p_B)^u`` (gamma < 1), ``u = 1 / gamma^2``; each side is monotone in u, so
the ends are found by bisection (brentq).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import brentq
from torch import Tensor

from smoothcert.errors import ConfigError
from smoothcert.noise.base import ArrayLike, Noise, _as_probability

# A Rayleigh(s) variable has standard deviation s sqrt((4 - pi) / 2).
_STD_PER_SCALE = math.sqrt((4.0 - math.pi) / 2.0)


class RayleighNoise(Noise):
    """Rayleigh-distributed multiplicative parameters (positive, e.g. a gamma exponent).

    ``sigma`` is the standard deviation, as for every noise; the Rayleigh scale is
    ``s = sigma / sqrt((4 - pi) / 2)`` (mean ``s sqrt(pi / 2)``: sigma = 0.5227 gives mean 1).
    It draws parameters for ``perturbation=gamma``; it is not an additive noise, so ``forward``
    and ``radius`` refuse, and its certificate is the multiplicative range :meth:`scale_range`.
    """

    name = "rayleigh"
    norms = ()

    @staticmethod
    def scale_of(sigma: float) -> float:
        """The Rayleigh scale ``s`` of standard deviation ``sigma``."""
        return sigma / _STD_PER_SCALE

    source = staticmethod(torch.rand)

    @staticmethod
    def standardize(draws: Tensor) -> Tensor:
        """Rayleigh(1) samples ``sqrt(-2 ln(1 - u))`` from uniform u in [0, 1), in place."""
        return draws.neg_().log1p_().mul_(-2.0).sqrt_()

    def check_norm(self, norm: str | None) -> str:
        raise ConfigError(
            "rayleigh noise certifies a multiplicative range (perturbation=gamma), not a radius "
            "in a norm: use perturbation=gamma, or noise=gaussian for additive smoothing"
        )

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise ConfigError(
            "rayleigh noise is not added to inputs: it draws gamma exponents (perturbation=gamma "
            "with regime=transformation)"
        )

    def scale_range(
        self, p_lower: ArrayLike, p_upper: ArrayLike | None = None
    ) -> tuple[ArrayLike, ArrayLike]:
        """The certified multiplicative range ``(low, high)``: if p_A >= p_lower (and p_B <=
        p_upper), the answer is the same at ``psi_gamma(x)`` for every ``low < gamma < high``
        (independent of sigma; see the module docstring). ``(1, 1)`` where nothing is certified
        (p_lower <= 1/2, or <= p_upper). Vectorised over p_lower (and p_upper)."""
        p = _as_probability(p_lower, "p_lower")
        q = 1.0 - p if p_upper is None else _as_probability(p_upper, "p_upper")
        p, q = np.broadcast_arrays(p, q)
        low, high = np.ones(p.shape), np.ones(p.shape)
        for i in np.ndindex(p.shape):
            low[i], high[i] = _range(float(p[i]), float(q[i]), p_upper is None)
        if p.ndim == 0:
            return float(low), float(high)
        return low, high


def _range(p: float, q: float, one_class: bool) -> tuple[float, float]:
    if p <= 0.5 or p <= q:
        return 1.0, 1.0
    if p >= 1.0:
        return 0.0, math.inf
    if one_class:
        return math.sqrt(math.log2(1.0 / p)), math.sqrt(math.log2(1.0 / (1.0 - p)))

    def above(u: float) -> float:  # gamma > 1: worst A minus best B, increasing in u
        return 1.0 - (1.0 - p) ** u - q**u

    def below(u: float) -> float:  # gamma < 1: decreasing in u
        return p**u - 1.0 + (1.0 - q) ** u

    u_high = brentq(above, 1e-300, 1.0) if q > 0 else 0.0
    big = 2.0
    while below(big) > 0 and big < 1e300:
        big *= 2.0
    u_low = brentq(below, 1.0, big) if q > 0 else math.inf
    high = math.inf if u_high == 0 else 1.0 / math.sqrt(u_high)
    return 1.0 / math.sqrt(u_low), high
