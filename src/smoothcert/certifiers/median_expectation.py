"""The expectation bound for bounded regression (paper 000, Corollary 1, the regression slide).

For f with values in [l, u] and g(x) = E f(x + G), G ~ N(0, sigma^2 I), the map
``eta(x) = sigma Phi^-1((g(x) - l) / (u - l))`` is 1-Lipschitz, so for ||delta||_2 <= eps

    l + (u - l) Phi((eta(x) - eps) / sigma) <= g(x + delta)
                                             <= l + (u - l) Phi((eta(x) + eps) / sigma),

that is ``l + (u - l) P_lower(z, eps)`` and ``l + (u - l) P_upper(z, eps)`` with
``z = (g(x) - l) / (u - l)``: the noise's worst-case masses, no other formula. Both maps are
increasing in z, so a lower confidence bound on g(x) in the lower one and an upper bound in the
upper one give bounds that hold whenever the confidence interval does. alpha is split in halves
between the two sides, so the interval holds with probability at least 1 - alpha.

Confidence intervals for the mean of n i.i.d. values in [l, u] (``method``):

- ``hoeffding``: mean -/+ (u - l) sqrt(ln(2 / alpha) / (2 n)); valid for any bounded variable.
- ``clopper_pearson`` (default): randomized rounding. With U_i ~ Uniform(0, 1) independent of
  the samples, B_i = 1[U_i < (f_i - l) / (u - l)] are i.i.d. Bernoulli with mean exactly
  (g(x) - l) / (u - l) (E B_i = E[(f_i - l) / (u - l)]), so Clopper-Pearson on sum B_i is an exact
  binomial interval for it, valid for any [l, u]-valued f. For an f with values in {l, u} only
  (an indicator), B_i = (f_i - l) / (u - l) and no randomness is added. It is usually much tighter
  than Hoeffding, whose slack ignores the variance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from smoothcert.certifiers.median import PercentileSmooth, bound_alpha
from smoothcert.errors import ConfigError, check_alpha
from smoothcert.noise import Noise
from smoothcert.stats.binomial import clopper_pearson_lower, clopper_pearson_upper

METHODS = ("clopper_pearson", "hoeffding")


def check_range(low: float, high: float) -> tuple[float, float]:
    """(l, u) as floats with l < u, both finite; a one-line ConfigError otherwise."""
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"the output range [{low}, {high}] must be finite with low < high")
    return low, high


def mean_interval(
    values: Tensor,
    low: float,
    high: float,
    alpha: float,
    method: str = "clopper_pearson",
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A (1 - alpha) confidence interval on E f from the samples ``values`` ``[..., n]`` (last
    dimension: the n i.i.d. samples; leading dimensions: independent problems), alpha / 2 on
    each side; values outside [low, high] are a ConfigError (the bound needs a bounded f)."""
    low, high = check_range(low, high)
    alpha = check_alpha(alpha, "certify.alpha")
    if bool((values < low).any()) or bool((values > high).any()):
        raise ConfigError(f"the expectation bound needs outputs in [{low}, {high}]")
    n = values.shape[-1]
    scaled = ((values.double() - low) / (high - low)).cpu()
    if method == "hoeffding":
        slack = math.sqrt(math.log(2.0 / alpha) / (2.0 * n))
        mean = scaled.mean(-1).numpy()
        lower, upper = np.clip(mean - slack, 0, 1), np.clip(mean + slack, 0, 1)
    elif method == "clopper_pearson":
        uniforms = torch.rand(scaled.shape, generator=generator, dtype=torch.float64)
        counts = (uniforms < scaled).sum(-1).numpy().reshape(-1)
        lower = np.array([clopper_pearson_lower(int(k), n, alpha / 2) for k in counts])
        upper = np.array([clopper_pearson_upper(int(k), n, alpha / 2) for k in counts])
        lower, upper = lower.reshape(scaled.shape[:-1]), upper.reshape(scaled.shape[:-1])
    else:
        raise ConfigError(f"certify.method={method!r}: use one of {', '.join(METHODS)}")
    return low + (high - low) * lower, low + (high - low) * upper


def expectation_bounds(
    mean_lower: np.ndarray | float,
    mean_upper: np.ndarray | float,
    low: float,
    high: float,
    noise: Noise,
    eps: float | Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``[..., len(eps)]`` on g(x + delta) for all ||delta||_2 <= eps, given g(x) in
    [mean_lower, mean_upper]: ``l + (u - l) P_lower(z_lo, eps)`` and ``l + (u - l)
    P_upper(z_hi, eps)`` (they hold whenever the interval on g(x) does)."""
    low, high = check_range(low, high)
    radii = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    z_lo = np.clip((np.asarray(mean_lower, dtype=np.float64) - low) / (high - low), 0, 1)
    z_hi = np.clip((np.asarray(mean_upper, dtype=np.float64) - low) / (high - low), 0, 1)
    lower = noise.worst_case_mass_lower(z_lo[..., None], radii)
    upper = noise.worst_case_mass_upper(z_hi[..., None], radii)
    return low + (high - low) * np.asarray(lower), low + (high - low) * np.asarray(upper)


def expectation_certificate(
    smoother: PercentileSmooth,
    values: Tensor,
    low: float,
    high: float,
    method: str = "clopper_pearson",
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The expectation bound from median smoothing's n outputs ``values`` ``[n, m]`` (its
    samples, noise and eps): ``(mean [m], lower [m, len(eps)], upper [m, len(eps)])``. Each
    coordinate's interval on g(x) takes twice the per-bound alpha of ``smoother``'s guarantee
    (alpha / 2 per side), so the intervals hold as the smoother's guarantee states;
    ``generator`` is the randomized rounding's (``MedianExample.rounding``)."""
    m = values.shape[1]
    alpha = 2 * bound_alpha(smoother.alpha, m, smoother.guarantee, smoother.box_size)
    mean_lo, mean_hi = mean_interval(values.T, low, high, alpha, method, generator)
    lower, upper = expectation_bounds(mean_lo, mean_hi, low, high, smoother.noise, smoother.eps)
    return values.double().mean(0).cpu().numpy(), lower, upper
