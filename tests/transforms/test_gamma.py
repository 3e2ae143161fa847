"""Gamma correction with Rayleigh smoothing: the noise against scipy, the Neyman-Pearson range
checked numerically, and the false-certificate rate on a constant image whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import kstest, rayleigh

from smoothcert import ConfigError, Smooth
from smoothcert.noise import GaussianNoise, RayleighNoise
from smoothcert.transforms import Gamma
from tests.transforms.soundness import allowed_failures, simulate
from tests.transforms.test_brightness import MeanAbove

TRIALS, ALPHA = 4000, 0.1
MEDIAN = math.sqrt(2 * math.log(2))  # of Rayleigh(1)


def test_rayleigh_noise_draws_the_rayleigh_distribution() -> None:
    noise = RayleighNoise(0.5)
    draws = noise.sample((20_000,), torch.Generator().manual_seed(0)).double().numpy()
    assert kstest(draws, rayleigh(scale=noise.scale).cdf).pvalue > 1e-3
    assert draws.std() == pytest.approx(0.5, rel=0.03) and draws.min() > 0
    with pytest.raises(ConfigError, match="not a radius in a norm"):
        noise.radius(0.9)
    with pytest.raises(ConfigError, match="not added to inputs"):
        noise(torch.zeros(2))


@pytest.mark.parametrize(
    ("p", "low", "high"),
    [(0.6, 0.859, 1.150), (0.75, 0.644, 1.414), (0.9, 0.390, 1.823), (0.99, 0.120, 2.578)],
)
def test_certified_range_matches_the_derivation_table(p: float, low: float, high: float) -> None:
    got = RayleighNoise(0.3).scale_range(p)
    assert got == pytest.approx((low, high), abs=1e-3)
    assert RayleighNoise(2.0).scale_range(p) == pytest.approx(got)  # independent of sigma
    two_class = RayleighNoise(0.3).scale_range(p, 1 - p)
    assert two_class == pytest.approx(got)  # p_B = 1 - p_A is the one-class case


def test_the_range_ends_are_the_neyman_pearson_worst_case() -> None:
    """At the ends, the worst set of mass p_A (a tail, by the monotone likelihood ratio) keeps
    exactly 1/2 under the rescaled Rayleigh; every other set of mass p_A (intervals) keeps more;
    inside the range the worst case stays above 1/2. scipy's Rayleigh is the oracle."""
    rng = np.random.default_rng(0)
    s = 0.7
    base = rayleigh(scale=s)
    for p in rng.uniform(0.55, 0.999, 50):
        low, high = RayleighNoise(0.4).scale_range(p)
        assert rayleigh(scale=high * s).cdf(base.ppf(p)) == pytest.approx(0.5, abs=1e-9)
        assert rayleigh(scale=low * s).sf(base.isf(p)) == pytest.approx(0.5, abs=1e-9)
        for gamma in (high, low, math.sqrt(high), math.sqrt(low)):
            moved = rayleigh(scale=gamma * s)
            worst = min(moved.cdf(base.ppf(p)), moved.sf(base.isf(p)))
            starts = rng.uniform(0, 1 - p, 200)  # intervals [F^-1(a), F^-1(a + p)] of mass p
            masses = moved.cdf(base.ppf(starts + p)) - moved.cdf(base.ppf(starts))
            assert masses.min() >= worst - 1e-12
            assert worst >= 0.5 - 1e-9
    q = 0.05  # two-class: with p_B small the range is wider than with p_B = 1 - p_A
    low2, high2 = RayleighNoise(0.4).scale_range(0.9, q)
    low1, high1 = RayleighNoise(0.4).scale_range(0.9)
    assert low2 < low1 and high2 > high1
    u = 1 / high2**2
    assert 1 - (1 - 0.9) ** u == pytest.approx(q**u)


def gamma_false_rate(shrink: float = 1.0) -> tuple[int, float]:
    """Constant image c, classifier [mean > t]: x^zeta is class 1 iff zeta < z* = ln t / ln c,
    so p1 = F_s(z*), and the smoothed classifier at x^gamma is class 1 iff z* / gamma > median:
    the true range is (0, z* / median) for class 1, (z* / median, inf) for class 0."""
    rng = np.random.default_rng(0)
    s = 1.0
    p1 = np.concatenate(
        [rng.uniform(0.5, 0.9999, TRIALS // 2), rng.uniform(1e-4, 0.5, TRIALS // 2)]
    )
    z_star = s * np.sqrt(-2 * np.log1p(-p1))
    boundary = z_star / (s * MEDIAN)
    c_hat, lower = simulate(p1, 100, 1000, ALPHA, rng)
    low, high = Gamma(RayleighNoise(0.5)).certified_range(np.clip(lower, 0, 1))
    low, high = low * shrink, high / shrink
    certified = lower > 0.5
    wrong = c_hat != (p1 > 0.5)
    too_wide = np.where(c_hat == 1, high > boundary, low < boundary)
    return int((certified & (wrong | too_wide)).sum()), allowed_failures(TRIALS, ALPHA)


def test_gamma_false_certificates_stay_within_alpha() -> None:
    false, allowed = gamma_false_rate()
    assert 0 < false <= allowed
    false, allowed = gamma_false_rate(shrink=0.9)  # a range 10% too wide at each end is caught
    assert false > allowed


def test_gamma_through_the_sampler_on_a_constant_image() -> None:
    c, t, sigma = 0.5, 0.4, 0.5
    noise = RayleighNoise(sigma)
    smooth = Smooth(MeanAbove(t), 2, sigma, perturbation=Gamma(noise))
    x = torch.full((1, 3, 3), c)
    stream, n = smooth._stream(x, torch.Generator().manual_seed(0)), 20_000
    counts = smooth._counts([x], [n], 4096, [stream])[0]
    p1 = rayleigh(scale=noise.scale).cdf(math.log(t) / math.log(c))
    assert abs(counts[1].item() / n - p1) < 4 * math.sqrt(p1 * (1 - p1) / n)


def test_log_normal_smoothing_and_the_radius_in_log_units() -> None:
    lognormal = Gamma(GaussianNoise(0.5))
    low, high = lognormal.certified_range(0.9)
    assert (low, high) == pytest.approx((0.527, 1.898), abs=1e-3)  # |ln gamma| < 0.5 Phi^-1(0.9)
    assert lognormal.radius(0.9) == pytest.approx(math.log(high))
    ray = Gamma(RayleighNoise(0.5))
    low, high = ray.certified_range(0.9)
    assert ray.radius(0.9) == pytest.approx(min(math.log(high), -math.log(low)))
    assert ray.radius(0.4) == 0.0
    draws = torch.tensor([[0.0], [1.0]])
    assert torch.allclose(
        lognormal.apply(torch.full((1, 1, 1), 0.5), draws).flatten(),
        torch.tensor([0.5, 0.5**math.e]),
    )
