"""The randomized Clopper-Pearson lower bound: the reference values, U = 1 is Clopper-Pearson,
and its coverage is exactly 1 - alpha (by simulation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from smoothcert.stats.binomial import clopper_pearson_lower
from smoothcert.stats.randomized import randomized_cp_lower


def test_the_reference_values():
    # third_wave.md 1.1: x = 990, n = 1000, alpha = 1e-3
    assert clopper_pearson_lower(990, 1000, 1e-3) == pytest.approx(0.97604, abs=5e-6)
    assert randomized_cp_lower(990, 1000, 1e-3, 1.0) == pytest.approx(0.97604, abs=5e-6)
    assert randomized_cp_lower(990, 1000, 1e-3, 0.5) == pytest.approx(0.97662, abs=5e-6)
    assert randomized_cp_lower(990, 1000, 1e-3, 0.0) == pytest.approx(0.97750, abs=5e-6)


@pytest.mark.parametrize(("x", "n"), [(0, 10), (3, 10), (10, 10), (57, 80)])
def test_u_one_is_clopper_pearson_and_smaller_u_is_larger(x, n):
    assert randomized_cp_lower(x, n, 0.01, 1.0) == pytest.approx(
        clopper_pearson_lower(x, n, 0.01), abs=1e-10
    )
    assert randomized_cp_lower(x, n, 0.01, 0.3) >= randomized_cp_lower(x, n, 0.01, 0.9)


def test_coverage_is_exactly_one_minus_alpha():
    # n = 20, p = 0.7: Clopper-Pearson over-covers (a discrete test), the randomized bound does
    # not: its miss rate is alpha up to sampling error. The bound exceeds p exactly where the
    # randomized p-value at p is below alpha (checked on the first 40 runs), so all 20,000 runs
    # are counted from that p-value, vectorized.
    rng = np.random.default_rng(7)
    n, p, alpha, runs = 20, 0.7, 0.1, 20_000
    xs, us = rng.binomial(n, p, runs), rng.random(runs)
    p_value = binom.sf(xs, n, p) + us * binom.pmf(xs, n, p)
    for x, u, value in zip(xs[:40], us[:40], p_value[:40], strict=True):
        assert (randomized_cp_lower(int(x), n, alpha, float(u)) > p) == (value < alpha)
    cp = np.array([clopper_pearson_lower(x, n, alpha) for x in range(n + 1)])
    se = np.sqrt(alpha * (1 - alpha) / runs)
    assert abs(np.mean(p_value < alpha) - alpha) <= 3 * se
    assert np.mean(cp[xs] > p) < alpha - 3 * se
