"""Soundness of the expectation bound (paper 000, Corollary 1) on an analytic model.

f(x) = l + (u - l) 1[w.x + b > 0] with ||w|| = 1 has g(x) = l + (u - l) Phi((w.x + b) / sigma),
so eta(x) = w.x + b and the worst delta of norm eps (along -/+ w) reaches the corollary's bounds
exactly: the certified interval misses g(x + delta) for some ||delta|| <= eps iff the confidence
interval on g(x) misses g(x). The samples f(x + G) are Bernoulli draws, simulated directly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from smoothcert.certifiers.median_expectation import expectation_bounds, mean_interval
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise

SIGMA, LOW, HIGH = 0.25, -1.0, 3.0
ETA = 0.1  # w.x + b


def worst_values(eps: float) -> tuple[float, float]:
    """min and max of g(x + delta) over ||delta||_2 <= eps."""
    scale = HIGH - LOW
    return (
        LOW + scale * norm.cdf((ETA - eps) / SIGMA),
        LOW + scale * norm.cdf((ETA + eps) / SIGMA),
    )


def samples(trials: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    hits = torch.rand(trials, n, generator=g, dtype=torch.float64) < norm.cdf(ETA / SIGMA)
    return LOW + (HIGH - LOW) * hits.double()


@pytest.mark.parametrize("method", ["clopper_pearson", "hoeffding"])
def test_false_certificate_rate_within_alpha(method: str) -> None:
    alpha, trials, n, eps = 0.2, 2000, 100, [0.0, 0.2]
    values = samples(trials, n, 0)
    lo, hi = mean_interval(values, LOW, HIGH, alpha, method, torch.Generator().manual_seed(1))
    lower, upper = expectation_bounds(lo, hi, LOW, HIGH, GaussianNoise(SIGMA), eps)
    assert lower.shape == (trials, 2)
    for k, radius in enumerate(eps):
        least, most = worst_values(radius)
        # alpha / 2 on each side, so each side fails at most alpha / 2 of the time
        for rate in (np.mean(lower[:, k] > least), np.mean(upper[:, k] < most)):
            assert rate <= alpha / 2 + 4 * math.sqrt(alpha / 2 / trials), (method, rate)
            if method == "clopper_pearson":  # exact for a binary f: the rate is near alpha / 2
                assert rate > alpha / 6, rate


def test_randomized_rounding_covers_a_continuous_mean() -> None:
    """f uniform on [l, u] (mean (l + u) / 2): Clopper-Pearson after randomized rounding."""
    alpha, trials, n = 0.2, 2000, 50
    g = torch.Generator().manual_seed(2)
    values = LOW + (HIGH - LOW) * torch.rand(trials, n, generator=g, dtype=torch.float64)
    lo, hi = mean_interval(values, LOW, HIGH, alpha, generator=g)
    rate = np.mean((lo > (LOW + HIGH) / 2) | (hi < (LOW + HIGH) / 2))
    assert rate <= alpha + 4 * math.sqrt(alpha * (1 - alpha) / trials), rate
    # A plain normal interval with the same alpha is no guarantee but similar; ours is not vacuous.
    assert np.median(hi - lo) < 0.5 * (HIGH - LOW)


def test_bad_inputs() -> None:
    values = torch.full((10,), 5.0)
    with pytest.raises(ConfigError, match=r"outputs in \[-1.0, 3.0\]"):
        mean_interval(values, LOW, HIGH, 0.1)
    with pytest.raises(ConfigError, match="low < high"):
        mean_interval(values, 2.0, 1.0, 0.1)
    with pytest.raises(ConfigError, match="certify.method"):
        mean_interval(torch.zeros(10), LOW, HIGH, 0.1, "normal")
