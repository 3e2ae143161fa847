"""Order-statistic ranks: a direct search over scipy's binomial CDF, and the reference's numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, norm

from smoothcert.errors import ConfigError
from smoothcert.stats.order_statistics import lower_rank, quantile_ranks, smallest_n, upper_rank


def direct_upper(n: int, p: float, alpha: float) -> int | None:
    q = np.arange(1, n + 1)
    ok = q[binom.cdf(q - 1, n, p) >= 1 - alpha]
    return int(ok[0]) if len(ok) else None


def direct_lower(n: int, p: float, alpha: float) -> int | None:
    q = np.arange(1, n + 1)
    ok = q[1 - binom.cdf(q - 1, n, p) >= 1 - alpha]
    return int(ok[-1]) if len(ok) else None


@pytest.mark.parametrize("n", [1, 5, 20, 97, 500, 2000])
@pytest.mark.parametrize("alpha", [0.3, 0.05, 1e-3])
def test_ranks_equal_a_direct_search(n: int, alpha: float) -> None:
    for p in (0.01, 0.1, 0.2718, 0.5, 0.77, 0.93, 0.9987):
        assert upper_rank(n, p, alpha) == direct_upper(n, p, alpha), (n, p, alpha)
        assert lower_rank(n, p, alpha) == direct_lower(n, p, alpha), (n, p, alpha)


@pytest.mark.parametrize(
    ("eps", "n", "q_u", "q_l"),
    [
        (0.36, 2000, 1899, 102),
        (0.25, 2000, 1751, 250),
        (0.5, 2000, 1981, 20),
        (0.36, 10000, 9361, 640),
    ],
)
def test_reference_ranks(eps: float, n: int, q_u: int, q_l: int) -> None:
    """Chiang et al.'s ranks (1-based) at sigma 0.25, confidence 0.99999 per bound."""
    ranks = quantile_ranks(n, norm.cdf(-eps / 0.25), norm.cdf(eps / 0.25), 1e-5)
    assert (ranks.upper, ranks.lower) == (q_u, q_l)


def test_infinite_bounds_and_smallest_n() -> None:
    p_lo, p_hi, alpha = norm.cdf(-1.44), norm.cdf(1.44), 1e-5
    need = smallest_n(p_lo, p_hi, alpha)
    assert quantile_ranks(need, p_lo, p_hi, alpha).finite
    short = quantile_ranks(need - 1, p_lo, p_hi, alpha)
    assert short.upper is None and short.lower is None
    assert upper_rank(3, 0.9, 0.75) == 3 and upper_rank(3, 0.9, 0.7) is None  # 0.9^3 = 0.729


def test_bad_levels() -> None:
    with pytest.raises(ConfigError, match=r"p=1.0 must lie in \(0, 1\)"):
        upper_rank(10, 1.0, 0.1)
    with pytest.raises(ConfigError, match="alpha"):
        lower_rank(10, 0.5, 0.0)
