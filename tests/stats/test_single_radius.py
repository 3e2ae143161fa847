"""Voráček 2024 single-radius thresholds, reimplemented from the paper
(``smoothcert.stats.single_radius``): test vectors, scipy as the oracle of the statistic and of
the thresholds, and the false-decision rate under optional stopping (vectorized)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import betabinom, binom, norm

from smoothcert.errors import ConfigError
from smoothcert.stats.single_radius import (
    NOT_ROBUST,
    ROBUST,
    UNDECIDED,
    SingleRadiusThresholds,
    kt_log_ratio,
    log_level,
    lower_thresholds,
    target_probability,
    upper_thresholds,
)

# All draws correct, alpha = 0.001 (third_wave.md section 1.1): stops "robust" after N draws.
VECTORS = {0.5: (14, 12), 0.8: (46, 39), 0.9: (100, 86), 0.99: (1165, 1020)}


@pytest.mark.parametrize("p_star", sorted(VECTORS))
@pytest.mark.parametrize("level", ["correct", "reference"])
def test_all_correct_stops_robust_after_the_pinned_number_of_draws(p_star, level):
    expected = VECTORS[p_star][0 if level == "correct" else 1]
    thresholds = SingleRadiusThresholds.build(p_star, 0.001, 2000, level)
    decision, draws = thresholds.decide(np.ones(2000, dtype=bool))
    assert (int(decision), int(draws)) == (ROBUST, expected)


def test_levels_per_side():
    assert log_level(0.001) == pytest.approx(math.log(2000.0))
    assert log_level(0.001, "reference") == pytest.approx(math.log(500.0))


def test_target_is_the_normal_cdf_not_its_inverse():
    assert target_probability(0.25, 0.25) == pytest.approx(norm.cdf(1.0))
    assert target_probability(0.0, 0.5) == 0.5


def test_kt_log_ratio_is_the_beta_binomial_over_binomial_likelihood():
    n = np.arange(1, 60)[:, None]
    a = np.arange(0, 60)[None, :]
    a, n = np.broadcast_arrays(a, n)
    keep = a <= n
    a, n = a[keep], n[keep]
    for p_star in (0.3, 0.8):
        oracle = betabinom.logpmf(a, n, 0.5, 0.5) - binom.logpmf(a, n, p_star)
        np.testing.assert_allclose(kt_log_ratio(a, n, p_star), oracle, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("p_star", [0.55, 0.8, 0.97])
def test_thresholds_equal_a_search_over_every_count(p_star):
    n_max, alpha = 400, 0.01
    level = math.log(2 / alpha)
    brute = []
    for n in range(n_max + 1):
        a = np.arange(math.ceil(p_star * n), n + 1)
        ratio = betabinom.logpmf(a, n, 0.5, 0.5) - binom.logpmf(a, n, p_star)
        above = a[ratio >= level]
        brute.append(above[0] if above.size else n + 1)
    brute = np.minimum.accumulate(np.array(brute)[::-1])[::-1]
    np.testing.assert_array_equal(upper_thresholds(p_star, n_max, alpha), brute)
    failures = upper_thresholds(1 - p_star, n_max, alpha)
    lower = np.maximum.accumulate(np.arange(n_max + 1) - failures)
    np.testing.assert_array_equal(lower_thresholds(p_star, n_max, alpha), lower)
    assert np.all(np.diff(brute) >= 0) and np.all(np.diff(lower) >= 0)


def _rates(p_star, p, alpha, level, trials=4000, cap=1000, seed=0):
    thresholds = SingleRadiusThresholds.build(p_star, alpha, cap, level)
    draws = np.random.default_rng(seed).random((trials, cap)) < p
    decision, _ = thresholds.decide(draws)
    return (decision == ROBUST).mean(), (decision == NOT_ROBUST).mean(), (decision == UNDECIDED)


@pytest.mark.parametrize("p_star", [0.5, 0.8])
def test_false_decision_rate_at_the_null_is_within_alpha(p_star):
    # At p = p* both decisions are wrong; each side errs w.p. <= alpha / 2 under optional stopping.
    alpha, trials = 0.2, 4000
    robust, not_robust, _ = _rates(p_star, p_star, alpha, "correct", trials)
    slack = 3 * math.sqrt(alpha / 2 * (1 - alpha / 2) / trials)
    assert robust <= alpha / 2 + slack
    assert not_robust <= alpha / 2 + slack
    below, _, _ = _rates(p_star, p_star - 0.05, alpha, "correct", trials, seed=1)
    assert below <= alpha / 2 + slack  # "robust" at p < p*


def test_reference_level_errs_beyond_alpha():
    # log(1 / (2 alpha)) per side: at p* = 0.5 the two sides together err about 0.36 > alpha.
    alpha, trials = 0.2, 4000
    robust, not_robust, _ = _rates(0.5, 0.5, alpha, "reference", trials)
    slack = 3 * math.sqrt(alpha * (1 - alpha) / trials)
    assert robust + not_robust > alpha + slack


def test_clear_cases_are_decided_fast():
    thresholds = SingleRadiusThresholds.build(0.8, 0.001, 5000)
    rng = np.random.default_rng(2)
    decision, draws = thresholds.decide(rng.random((200, 5000)) < 0.99)
    assert np.all(decision == ROBUST) and np.median(draws) < 100
    decision, draws = thresholds.decide(rng.random((200, 5000)) < 0.5)
    assert np.all(decision == NOT_ROBUST) and np.median(draws) < 100
    decision, draws = thresholds.decide(np.ones((3, 10), dtype=bool))
    assert np.all(decision == UNDECIDED) and np.all(draws == 10)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="p_star"):
        upper_thresholds(1.0, 10, 0.001)
    with pytest.raises(ConfigError, match="alpha"):
        upper_thresholds(0.8, 10, 0.0)
    with pytest.raises(ConfigError, match="level"):
        upper_thresholds(0.8, 10, 0.001, level="buggy")
    with pytest.raises(ConfigError, match="cap"):
        SingleRadiusThresholds.build(0.8, 0.001, 10).decide(np.ones(11, dtype=bool))
