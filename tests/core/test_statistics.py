"""Confidence bounds and tests against library oracles (statsmodels, scipy) and exact coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, binomtest, norm
from statsmodels.stats.proportion import proportion_confint

from smoothcert import binom_test_two_sided, clopper_pearson_lower
from smoothcert.noise.gaussian import radius_from_lower_bound
from smoothcert.stats.binomial import clopper_pearson_upper

ALPHAS = [1e-3, 0.01, 0.05, 0.1, 0.25]
SIZES = [1, 2, 7, 50, 100, 1000, 100_000]


def _k_grid(n: int) -> list[int]:
    """Counts from 0 to n, always including both ends and the middle."""
    ks = {0, 1, n // 2, n - 1, n, (9 * n) // 10, (99 * n) // 100}
    return sorted(k for k in ks if 0 <= k <= n)


GRID = [(k, n, a) for n in SIZES for k in _k_grid(n) for a in ALPHAS]


@pytest.mark.parametrize(("k", "n", "alpha"), GRID)
def test_clopper_pearson_matches_statsmodels(k: int, n: int, alpha: float) -> None:
    # One-sided level alpha == one side of the two-sided interval at level 2 * alpha.
    lower, upper = proportion_confint(k, n, alpha=2 * alpha, method="beta")
    assert clopper_pearson_lower(k, n, alpha) == pytest.approx(lower, abs=1e-12)
    assert clopper_pearson_upper(k, n, alpha) == pytest.approx(upper, abs=1e-12)


@pytest.mark.parametrize("n", [1, 10, 1000])
def test_clopper_pearson_edges(n: int) -> None:
    alpha = 0.05
    assert clopper_pearson_lower(0, n, alpha) == 0.0
    assert clopper_pearson_upper(n, n, alpha) == 1.0
    # All successes: the lower bound solves p^n = alpha.
    assert clopper_pearson_lower(n, n, alpha) == pytest.approx(alpha ** (1 / n), abs=1e-12)
    # No successes: the upper bound solves (1 - p)^n = alpha.
    assert clopper_pearson_upper(0, n, alpha) == pytest.approx(1 - alpha ** (1 / n), abs=1e-12)


@pytest.mark.parametrize("n", [20, 200])
def test_clopper_pearson_monotone_in_k_and_alpha(n: int) -> None:
    lowers = [clopper_pearson_lower(k, n, 0.05) for k in range(n + 1)]
    uppers = [clopper_pearson_upper(k, n, 0.05) for k in range(n + 1)]
    assert all(np.diff(lowers) > 0)
    assert all(np.diff(uppers) > 0)
    assert all(lo < up for lo, up in zip(lowers, uppers, strict=True))
    # Asking for more confidence (smaller alpha) gives a smaller lower bound.
    for k in range(1, n + 1):
        assert clopper_pearson_lower(k, n, 0.001) < clopper_pearson_lower(k, n, 0.1)


@pytest.mark.parametrize(("k", "n"), [(-1, 10), (11, 10), (0, 0), (1, 0)])
def test_clopper_pearson_rejects_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        clopper_pearson_lower(k, n, 0.05)
    with pytest.raises(ValueError):
        clopper_pearson_upper(k, n, 0.05)


def _miscoverage_lower(n: int, p: float, alpha: float) -> float:
    """Exact P_{k ~ Bin(n, p)}(lower bound > p)."""
    ks = np.arange(n + 1)
    bad = np.array([clopper_pearson_lower(int(k), n, alpha) > p for k in ks])
    return float(binom.pmf(ks, n, p)[bad].sum())


def _miscoverage_upper(n: int, p: float, alpha: float) -> float:
    """Exact P_{k ~ Bin(n, p)}(upper bound < p)."""
    ks = np.arange(n + 1)
    bad = np.array([clopper_pearson_upper(int(k), n, alpha) < p for k in ks])
    return float(binom.pmf(ks, n, p)[bad].sum())


@pytest.mark.parametrize("n", [10, 50, 200])
@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.3])
def test_clopper_pearson_exact_coverage(n: int, alpha: float) -> None:
    ps = [0.01, 0.1, 0.3, 0.5, 0.6180339887, 0.75, 0.9, 0.99, 0.999]
    for p in ps:
        assert _miscoverage_lower(n, p, alpha) <= alpha + 1e-12, p
        assert _miscoverage_upper(n, p, alpha) <= alpha + 1e-12, p


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_clopper_pearson_is_nearly_tight_just_below_a_bound(alpha: float) -> None:
    # For p just below the bound of some count k, miscoverage is P(K >= k) which is ~alpha: the
    # bound is not needlessly conservative (a wrong quantile would show up here).
    n = 200
    for k in (120, 160, 190):
        p = clopper_pearson_lower(k, n, alpha) - 1e-9
        miscoverage = _miscoverage_lower(n, p, alpha)
        assert alpha - 1e-6 <= miscoverage <= alpha + 1e-12


BINOM_GRID = [(k, n) for n in [1, 2, 5, 20, 101, 1000] for k in sorted({0, 1, n // 3, n // 2, n})]


@pytest.mark.parametrize(("k", "n"), BINOM_GRID)
@pytest.mark.parametrize("p", [0.5, 0.3])
def test_binom_test_matches_scipy(k: int, n: int, p: float) -> None:
    expected = binomtest(k, n, p, alternative="two-sided").pvalue
    assert binom_test_two_sided(k, n, p) == pytest.approx(expected, abs=1e-12)
    if p == 0.5:
        assert binom_test_two_sided(k, n) == pytest.approx(expected, abs=1e-12)


def test_binom_test_level() -> None:
    # Exact type-I error of "reject when p-value <= alpha" under H0 is at most alpha.
    n, alpha = 60, 0.05
    ks = np.arange(n + 1)
    reject = np.array([binom_test_two_sided(int(k), n, 0.5) <= alpha for k in ks])
    assert 0 < binom.pmf(ks, n, 0.5)[reject].sum() <= alpha


@pytest.mark.parametrize("p_lower", [0.5, 0.6, 0.9, 0.999])
@pytest.mark.parametrize("sigma", [0.12, 0.25, 1.0])
def test_radius_from_lower_bound(p_lower: float, sigma: float) -> None:
    radius = radius_from_lower_bound(p_lower, sigma)
    # Inverse check: a Gaussian of std sigma puts mass p_lower below the radius.
    assert norm.cdf(radius / sigma) == pytest.approx(p_lower, abs=1e-12)
