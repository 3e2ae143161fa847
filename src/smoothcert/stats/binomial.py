"""Confidence bounds and hypothesis tests used by the certifiers.

``clopper_pearson_lower`` equals statsmodels' ``proportion_confint(k, n, alpha=2 * alpha,
method="beta")[0]`` (the one-sided bound of Cohen et al.); the tests keep statsmodels as the oracle.
"""

from __future__ import annotations

from scipy.stats import beta, binomtest

from smoothcert.noise import GaussianNoise


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


def radius_from_lower_bound(p_lower: float, sigma: float) -> float:
    """Cohen et al.'s l2 radius sigma * Phi^-1(p_lower) for p_lower > 1/2 (0 otherwise); the
    formula is :meth:`GaussianNoise.radius`, kept here for callers of the old name."""
    return float(GaussianNoise(sigma).radius(p_lower, "l2"))
