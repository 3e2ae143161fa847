"""Soundness of percentile smoothing on a linear regression f(x) = W x + b, whose outputs under
Gaussian noise are Gaussian: coordinate j of f(x + G) is N(w_j.x + b_j, sigma^2 ||w_j||^2), so
h_p(x + delta)_j = w_j.(x + delta) + b_j + sigma ||w_j|| Phi^-1(p), and the worst delta of norm eps
(along +/- w_j) reaches exactly the p_hi / p_lo quantiles at x. The bounds are therefore tight:
an interval misses h_p(x + delta) for some ||delta|| <= eps iff lower > Q_{p_lo} or
upper < Q_{p_hi}.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm

from smoothcert.certifiers.median import (
    PercentileSmooth,
    order_statistic_bounds,
    percentile_levels,
)
from smoothcert.independence import PROBE_CALLS
from smoothcert.noise import GaussianNoise
from smoothcert.stats.order_statistics import QuantileRanks

SIGMA, EPS, P = 0.25, 0.1, 0.5
W = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.3, 0.3, 0.3, 0.3], [-1.0, 0.0, 2.0, 1.0]])
B = torch.tensor([0.2, -1.0, 3.0])
X = torch.tensor([0.4, 0.1, 0.9, 0.5])


def true_quantiles(p: float) -> torch.Tensor:
    """The p-quantile of each coordinate of f(X + G)."""
    return X @ W.T + B + SIGMA * W.norm(dim=1) * float(norm.ppf(p))


def sorted_linear_outputs(trials: int, n: int, seed: int) -> torch.Tensor:
    """``[trials, n, m]`` sorted outputs of f on X + G, drawn directly (vectorized trials)."""
    g = torch.Generator().manual_seed(seed)
    noise = SIGMA * torch.randn(trials, n, W.shape[1], generator=g, dtype=torch.float64)
    return ((X + noise) @ W.T.double() + B.double()).sort(dim=1).values


def misses(smoother: PercentileSmooth, values: torch.Tensor) -> torch.Tensor:
    """``[trials, m]`` True where the certified interval at EPS misses h_p(X + delta) for the
    worst delta (see the module docstring)."""
    (ranks,) = smoother.ranks(values.shape[-1])
    lower, upper = order_statistic_bounds(values, ranks, dim=1)
    p_lo, p_hi = percentile_levels(smoother.noise, P, EPS)
    return (lower > true_quantiles(p_lo).double()) | (upper < true_quantiles(p_hi).double())


def smoother(guarantee: str, n: int, alpha: float) -> PercentileSmooth:
    return PercentileSmooth(
        lambda b: b @ W.T + B, GaussianNoise(SIGMA), EPS, n, alpha, P, guarantee
    )


def tolerance(rate: float, trials: int) -> float:
    return 4 * math.sqrt(rate * (1 - rate) / trials) + 1e-9


def test_per_coordinate_rate_within_alpha() -> None:
    alpha, trials, n = 0.2, 4000, 60
    certifier = smoother("per_coordinate", n, alpha)
    rate = misses(certifier, sorted_linear_outputs(trials, n, 0)).double().mean(0)
    (ranks,) = certifier.ranks(3)
    # The exact failure probability: both tails of the binomial (disjoint events, the lower bound
    # lies below the upper one), at most alpha.
    exact = binom.cdf(ranks.lower - 1, n, ranks.p_lower) + binom.sf(
        ranks.upper - 1, n, ranks.p_upper
    )
    assert exact <= alpha
    assert torch.all((rate - exact).abs() <= tolerance(exact, trials)), (rate, exact)
    # Per coordinate is not simultaneous: some coordinate misses far more often than alpha.
    joint = misses(certifier, sorted_linear_outputs(trials, n, 1)).any(dim=1).double().mean()
    assert joint > alpha + tolerance(alpha, trials)


def test_simultaneous_rate_within_alpha() -> None:
    alpha, trials, n = 0.2, 4000, 60
    rate = misses(smoother("simultaneous", n, alpha), sorted_linear_outputs(trials, n, 2))
    joint = rate.any(dim=1).double().mean()
    assert joint <= alpha + tolerance(alpha, trials), joint


def test_zero_based_index_is_anti_conservative() -> None:
    """Taking sorted[q_l] (0-based) for the 1-based rank q_l: exactly, and in simulation."""
    alpha, trials, n = 0.2, 4000, 40
    certifier = smoother("per_coordinate", n, alpha)
    (ranks,) = certifier.ranks(3)
    shifted = QuantileRanks(n, ranks.p_lower, ranks.p_upper, ranks.alpha, ranks.lower + 1, None)
    exact = binom.cdf(shifted.lower - 1, n, ranks.p_lower)  # P(lower bound fails), one-based view
    assert exact > 1.3 * ranks.alpha, exact  # the one-rank error matters at this n
    values = sorted_linear_outputs(trials, n, 3)
    lower, _ = order_statistic_bounds(values, shifted, dim=1)
    p_lo, _ = percentile_levels(certifier.noise, P, EPS)
    rate = (lower > true_quantiles(p_lo).double()).double().mean(0)
    assert torch.all(rate > ranks.alpha + tolerance(ranks.alpha, trials)), (rate, ranks.alpha)


def test_certify_end_to_end_on_the_sampler() -> None:
    """The whole path (noise stream, sampler batches with a short last one, sorting, ranks):
    300 certificates of the linear model (the vectorized tests above run 4000 trials), miss
    rate per coordinate within alpha."""
    alpha, trials, n = 0.3, 300, 50
    certifier = PercentileSmooth(
        lambda b: b @ W.T + B, GaussianNoise(SIGMA), [0.0, EPS], n, alpha, P, batch_size=32
    )
    missed = torch.zeros(3)
    p_lo, p_hi = percentile_levels(certifier.noise, P, EPS)
    for seed in range(trials):
        result = certifier.certify(X, torch.Generator().manual_seed(seed))
        assert result.lower.shape == (2, 3) and result.guarantee == "per_coordinate"
        missed += (result.lower[1] > true_quantiles(p_lo)) | (
            result.upper[1] < true_quantiles(p_hi)
        )
    rate = missed / trials
    assert torch.all(rate <= alpha + tolerance(alpha, trials)), rate
    assert torch.all(rate > 0.05), rate  # the interval is tight, not vacuous


@pytest.mark.parametrize("guarantee", ["per_coordinate", "simultaneous"])
def test_all_samples_are_used(guarantee: str) -> None:
    """n = 37 with batch size 10: the ranks are for 37 samples and all 37 are drawn."""
    seen = []
    certifier = PercentileSmooth(
        lambda b: seen.append(len(b)) or b @ W.T,
        GaussianNoise(SIGMA),
        0.0,
        37,
        0.5,
        guarantee=guarantee,
        batch_size=10,
    )
    certifier.certify(X, torch.Generator().manual_seed(0))
    seen = seen[PROBE_CALLS:]  # the independence probe's calls
    assert sum(seen) == 37 and np.all(np.array(seen) <= 10)


def test_box_failure_rate_per_box_within_alpha_per_coordinate_not() -> None:
    """Issue 20 item 4: two boxes of 4 independent coordinates (f(x) = x on 8 inputs: each
    coordinate of f(x + G) is N(x_j, sigma^2), the worst delta of norm eps moves one at a time).
    A box fails when any of its 4 intervals misses h_p(x + delta) for some ||delta|| <= eps. Under
    per_box (alpha / 8 per one-sided bound) each box fails with probability <= alpha; under
    per_coordinate (alpha / 2 per bound) a box fails far more often than alpha."""
    alpha, trials, n, m = 0.2, 4000, 60, 8
    x = torch.linspace(0.1, 0.8, m, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    noise = SIGMA * torch.randn(trials, n, m, generator=g, dtype=torch.float64)
    values = (x + noise).sort(dim=1).values
    p_lo, p_hi = percentile_levels(GaussianNoise(SIGMA), P, EPS)
    q_lo = x + SIGMA * float(norm.ppf(p_lo))
    q_hi = x + SIGMA * float(norm.ppf(p_hi))

    def box_failures(guarantee: str) -> torch.Tensor:
        certifier = PercentileSmooth(
            lambda b: b, GaussianNoise(SIGMA), EPS, n, alpha, P, guarantee, box_size=4
        )
        (ranks,) = certifier.ranks(m)
        lower, upper = order_statistic_bounds(values, ranks, dim=1)
        miss = (lower > q_lo) | (upper < q_hi)  # [trials, m]
        return miss.view(trials, 2, 4).any(-1).double().mean(0)  # per box

    assert PercentileSmooth(lambda b: b, GaussianNoise(SIGMA), EPS, n, box_size=4).guarantee == (
        "per_box"
    )  # the default for boxes
    per_box = box_failures("per_box")
    assert torch.all(per_box <= alpha + tolerance(alpha, trials)), per_box
    per_coordinate = box_failures("per_coordinate")
    assert torch.all(per_coordinate > alpha + tolerance(alpha, trials)), per_coordinate
