"""Confidence bounds and hypothesis tests used by the certifiers.

``clopper_pearson_lower`` equals statsmodels' ``proportion_confint(k, n, alpha=2 * alpha,
method="beta")[0]`` (the one-sided bound of Cohen et al.); the tests keep statsmodels as the oracle.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta, binom, binomtest


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower confidence bound on p, given k ~ Bin(n, p).

    Guarantees P(bound <= p) >= 1 - alpha for every p. Returns 0.0 for k == 0.
    """
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if k == 0:
        return 0.0
    return float(beta.ppf(alpha, k, n - k + 1))


def clopper_pearson_upper(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson upper confidence bound on p. Returns 1.0 for k == n."""
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if k == n:
        return 1.0
    return float(beta.ppf(1 - alpha, k + 1, n - k))


def binom_test_two_sided(k: int, n: int, p: float = 0.5) -> float:
    """P-value of the two-sided exact binomial test of H0: k ~ Bin(n, p) (scipy's binomtest)."""
    return float(binomtest(int(k), int(n), p, alternative="two-sided").pvalue)


def clopper_pearson_lower_table(n: int, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper-Pearson lower bounds for k = 0..n successes (0 at k = 0)."""
    k = np.arange(n + 1)
    with np.errstate(invalid="ignore"):
        bounds = beta.ppf(alpha, k, n - k + 1)
    return np.where(k == 0, 0.0, bounds)


def half_sample_failure(n: int, delta: float) -> float:
    """P[Bin(n, 1/2 + delta) < ceil(n / 2)]: the largest chance that a ball of mass >= 1/2 +
    delta holds fewer than half (the lower median's share) of n independent samples."""
    return float(binom.cdf((n + 1) // 2 - 1, n, 0.5 + delta))
