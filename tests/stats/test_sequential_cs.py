"""The beta-binomial mixture confidence sequence (``smoothcert.stats.sequential``): the reference
stopping times, the closed form against the mixture integral, the interval against the
martingale, monotonicity, and time-uniform coverage by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import beta

from smoothcert.stats.sequential import (
    PRIOR,
    best_lower_at,
    confidence_sequence,
    log_mixture,
    lower_bound,
    projected_lower_at,
)


def test_all_successes_stop_at_the_reference_sample_counts():
    # third_wave.md 1.1 (computed with the Krichevsky-Trofimov mixture at log(2/alpha) per side,
    # alpha = 1e-3): "robust" after 14 / 46 / 100 / 1165 samples, all of class A. Our lower end
    # at alpha / 2 is that one-sided test.
    n = np.arange(1, 2000)
    lower = lower_bound(n, n, 0.0005)
    stops = [int(n[np.argmax(lower > p)]) for p in (0.5, 0.8, 0.9, 0.99)]
    assert stops == [14, 46, 100, 1165]


CASES = [(3, 10, 0.2), (40, 50, 0.6), (95, 100, 0.9), (0, 7, 0.3)]


@pytest.mark.parametrize(("s", "t", "p"), CASES)
def test_the_closed_form_is_the_mixture_integral(s, t, p):
    a, b = PRIOR

    def integrand(q: float) -> float:
        ratio = (q / p) ** s * ((1 - q) / (1 - p)) ** (t - s)
        return ratio * beta.pdf(q, a, b)

    value = quad(integrand, 0, 1, points=[s / t], limit=200, epsabs=0, epsrel=1e-10)[0]
    assert log_mixture(s, t, p) == pytest.approx(np.log(value), rel=1e-7, abs=1e-9)


@pytest.mark.parametrize(("s", "t"), [(1, 5), (37, 50), (990, 1000), (9999, 10000)])
def test_the_ends_are_where_the_martingale_crosses_one_over_alpha(s, t):
    alpha = 0.001
    lower, upper = confidence_sequence(s, t, alpha)
    level = np.log(1 / alpha)
    assert log_mixture(s, t, lower) >= level > log_mixture(s, t, lower + 1e-9)
    assert log_mixture(s, t, upper) >= level > log_mixture(s, t, upper - 1e-9)
    assert lower < s / t < upper


def test_bounds_grow_with_successes_and_tighten_with_samples():
    t = 400
    lower, upper = confidence_sequence(np.arange(t + 1), t, 0.01)
    assert np.all(np.diff(lower) > 0) and np.all(np.diff(upper) > 0)
    assert lower[0] == 0.0 and upper[-1] == 1.0
    # the same rate from ten times the samples: a narrower interval around it
    (wide_low, narrow_low), (wide_up, narrow_up) = confidence_sequence([30, 300], [40, 400], 0.01)
    assert wide_low < narrow_low < 0.75 < narrow_up < wide_up
    # empty: [0, 1]
    assert confidence_sequence(0, 0, 0.1) == (0.0, 1.0)


def test_best_lower_at_the_cap_is_the_bound_with_every_remaining_success():
    assert best_lower_at(80, 100, 1000, 0.01) == lower_bound(980, 1000, 0.01)
    assert best_lower_at(5, 10, 10, 0.01) == lower_bound(5, 10, 0.01)


@pytest.mark.parametrize("p", [0.3, 0.97])
def test_coverage_is_time_uniform(p):
    # Every run checked at EVERY time up to 2000: the true p leaves the sequence (M_t(p) reaches
    # 1/alpha) in at most an alpha fraction of runs, up to sampling error.
    runs, horizon, alpha = 2000, 2000, 0.1
    rng = np.random.default_rng(23)
    successes = np.cumsum(rng.random((runs, horizon)) < p, axis=1)
    trials = np.arange(1, horizon + 1)
    missed = (log_mixture(successes, trials, p) >= np.log(1 / alpha)).any(axis=1)
    assert missed.mean() <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / runs)
    # the bounds agree with the martingale at a few times
    lower, upper = confidence_sequence(successes[:, 99], 100, alpha)
    inside = log_mixture(successes[:, 99], 100, p) < np.log(1 / alpha)
    assert np.array_equal(inside, (lower <= p) & (p <= upper))


def test_the_projected_lower_bound_is_the_bound_at_the_expected_count():
    s, t, cap = np.array([90, 300, 0]), np.array([100, 310, 0]), 1000
    rate = np.array([0.95, 0.99, 0.5])
    expected = s + np.ceil(rate * (cap - t))
    got = projected_lower_at(s, t, cap, rate, 0.001)
    assert np.array_equal(got, lower_bound(expected, np.full(3, cap), 0.001))
    assert np.all(got <= best_lower_at(s, t, cap, 0.001))  # all-successes is the best case
    assert np.array_equal(
        projected_lower_at(s, t, cap, 1.0, 0.001), best_lower_at(s, t, cap, 0.001)
    )
