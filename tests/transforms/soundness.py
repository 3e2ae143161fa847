"""Simulated CERTIFY on base classifiers whose class probabilities are known exactly: the counts
are drawn from those probabilities (no network), so thousands of certificates take milliseconds.
Two classes; class 1 has probability ``p1`` under the smoothing distribution at the input."""

from __future__ import annotations

import numpy as np
from scipy.stats import beta


def simulate(
    p1: np.ndarray, n0: int, n: int, alpha: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(c_hat, p_lower)`` per trial, as CERTIFY computes them: the class with the most of ``n0``
    selection samples (ties: class 0, as ``argmax``), then the Clopper-Pearson lower bound at
    level ``alpha`` on its probability from ``n`` independent samples (0 for no successes)."""
    ones = rng.binomial(n0, p1)
    c_hat = (ones > n0 - ones).astype(int)
    p_hat = np.where(c_hat == 1, p1, 1 - p1)
    count = rng.binomial(n, p_hat)
    with np.errstate(invalid="ignore"):
        lower = np.where(count > 0, beta.ppf(alpha, count, n - count + 1), 0.0)
    return c_hat, lower


def allowed_failures(trials: int, alpha: float) -> float:
    """alpha plus four standard errors of a rate over ``trials``, as a count."""
    return trials * (alpha + 4 * np.sqrt(alpha * (1 - alpha) / trials))
