"""Brightness x + b and TSS brightness-contrast e^k (x + b): certificates against classifiers
whose smoothed answer is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import Tensor, nn

from smoothcert import ConfigError, Smooth
from smoothcert.noise import GaussianNoise
from smoothcert.transforms import Brightness, BrightnessContrast
from tests.transforms.soundness import allowed_failures, simulate

TRIALS, ALPHA = 4000, 0.1


class MeanAbove(nn.Module):
    """Logits ``(t - mean(x), mean(x) - t)``: the classifier ``[mean(x) > t]``."""

    def __init__(self, t: float) -> None:
        super().__init__()
        self.t = t

    def forward(self, x: Tensor) -> Tensor:
        s = x.flatten(1).double().mean(1) - self.t
        return torch.stack([-s, s], 1).float()


def brightness_false_rate(inflate: float = 1.0) -> tuple[int, float]:
    """Under x + b, [mean(x + b) > t] is class 1 with p1 = Phi((m - t) / sigma), the smoothed
    classifier at x + a is [m + a > t], so its true radius is |m - t|."""
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.05, 0.5, TRIALS)
    p_true = rng.uniform(0.52, 0.9999, TRIALS)
    sign = rng.choice([-1.0, 1.0], TRIALS)
    gap = sign * sigma * norm.ppf(p_true)  # m - t
    c_hat, lower = simulate(norm.cdf(gap / sigma), 100, 1000, ALPHA, rng)
    false = 0
    for s in np.unique(np.round(sigma, 2)):
        pick = np.round(sigma, 2) == s
        radius = inflate * np.asarray(Brightness(GaussianNoise(s)).radius(lower[pick]))
        sigma[pick] = s
        certified = lower[pick] > 0.5
        wrong = c_hat[pick] != (gap[pick] > 0)
        truth = np.abs(sign[pick] * s * norm.ppf(p_true[pick]))
        false += int((certified & (wrong | (radius > truth))).sum())
    return false, allowed_failures(TRIALS, ALPHA)


def test_brightness_false_certificates_stay_within_alpha() -> None:
    false, allowed = brightness_false_rate()
    assert 0 < false <= allowed  # tight model: some false ones at this alpha, never too many
    false, allowed = brightness_false_rate(inflate=1.15)
    assert false > allowed  # a radius 15% too large is caught


def test_brightness_through_the_sampler_matches_the_analytic_probability() -> None:
    sigma, t = 0.2, 0.45
    x = torch.full((1, 4, 4), 0.5)
    smooth = Smooth(MeanAbove(t), 2, sigma, perturbation=Brightness(GaussianNoise(sigma)))
    n = 20_000
    stream = smooth._stream(x, torch.Generator().manual_seed(1))
    counts = smooth._counts([x], [n], 4096, [stream])[0]
    p1 = norm.cdf((0.5 - t) / sigma)
    assert abs(counts[1].item() / n - p1) < 4 * np.sqrt(p1 * (1 - p1) / n)
    label, radius = smooth.certify(x, 100, n, 0.001, 4096, torch.Generator().manual_seed(2))
    assert label == 1 and 0.8 * (0.5 - t) < radius < 0.5 - t
    # the inputs are not clipped: brightening past 1 must survive (it keeps the composition)
    copies = Brightness(GaussianNoise(sigma)).apply(torch.ones(1, 2, 2), torch.full((3, 1), 0.5))
    assert torch.all(copies == 1.5)


def smoothed_bc(u, v, t, k, b, sigma_k, sigma_b):
    """P(class 1) of the smoothed ``[w.z > t]`` at ``e^k (x + b)``, u = w.x, v = w.1: the
    smoothing gives e^k' (e^k (u + b v) + b' v) with k' ~ N(0, sigma_k^2), b' ~ N(0, sigma_b^2);
    exact up to Gauss-Hermite quadrature over k'. Broadcasts over k and b."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    kp = sigma_k * nodes
    threshold = t * np.exp(-kp) - np.exp(k)[..., None] * (u + b[..., None] * v)
    return (weights / weights.sum() * norm.sf(threshold / (v * sigma_b))).sum(-1)


def bc_violations(factor) -> int:
    """Configurations (random linear classifiers, exact p_A) where some attack inside the
    certified set (|k| <= contrast, |b| < radius, on a grid) changes the smoothed answer."""
    rng = np.random.default_rng(1)
    bad = 0
    for _ in range(200):
        sigma_k, sigma_b, contrast = rng.uniform(0.05, 0.5, 3)
        u, t = rng.uniform(-1, 1, 2)
        v = rng.choice([-1, 1]) * rng.uniform(0.2, 2)
        p1 = smoothed_bc(u, v, t, np.zeros(()), np.zeros(()), sigma_k, sigma_b)
        p_a = min(max(p1, 1 - p1), 1 - 1e-6)
        perturbation = BrightnessContrast(GaussianNoise(sigma_b), sigma_k, contrast)
        radius = factor * perturbation.radius(p_a)
        if radius <= 0:
            continue
        k, b = np.meshgrid(np.linspace(-contrast, contrast, 11), np.linspace(-1, 1, 31) * radius)
        p = smoothed_bc(u, v, t, k, b * 0.9999, sigma_k, sigma_b)
        bad += bool(np.any((p if p1 > 0.5 else 1 - p) <= 0.5))
    return bad


def test_brightness_contrast_radius_is_sound_on_linear_classifiers() -> None:
    assert bc_violations(1.0) == 0
    assert bc_violations(1.1) > 0  # 10% more is refuted by these classifiers


def test_brightness_contrast_formula() -> None:
    p = 0.9
    bc = BrightnessContrast(GaussianNoise(0.3), sigma_k=0.2, contrast=0.0)
    assert bc.radius(p) == pytest.approx(0.3 * norm.ppf(p))  # no contrast: Cohen's radius
    k = 0.1
    p_bar = 2 - 2 * norm.cdf(np.exp(k) * norm.ppf(1 - p / 2))
    expected = 0.3 * np.exp(-k) * np.sqrt(norm.ppf(p_bar) ** 2 - (k / 0.2) ** 2)
    assert bc.brightness_radius(p, k) == pytest.approx(expected)
    p_bar = 2 * norm.cdf(np.exp(-k) * norm.ppf(0.5 + p / 2)) - 1
    expected = 0.3 * 1.0 * np.sqrt(norm.ppf(p_bar) ** 2 - (k / 0.2) ** 2)  # min(e^-k, 1) = 1
    assert bc.brightness_radius(p, -k) == pytest.approx(expected)
    wide = BrightnessContrast(GaussianNoise(0.3), sigma_k=0.2, contrast=k)
    assert wide.radius(p) == pytest.approx(min(bc.brightness_radius(p, k), expected))
    assert wide.radius(0.5) == 0.0
    x, params = torch.rand(2, 1, 3, 3), torch.tensor([[0.2, 0.1], [-0.3, -0.05]])
    expected_images = torch.stack([(x[i] + params[i, 1]) * params[i, 0].exp() for i in range(2)])
    assert torch.allclose(wide.transform(x, params), expected_images)


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="contrast=-0.1 must be a number >= 0"):
        BrightnessContrast(GaussianNoise(0.3), 0.1, -0.1)
    with pytest.raises(ConfigError, match="sigma_k=0.0 must be > 0"):
        BrightnessContrast(GaussianNoise(0.3), 0.0)
    with pytest.raises(ConfigError, match="sigma=0.0 cannot certify"):
        Brightness(GaussianNoise(0.0))
    with pytest.raises(ConfigError, match="sigma=-0.1 must be >= 0"):
        Brightness(GaussianNoise(-0.1))
    with pytest.raises(ConfigError, match="cannot certify"):
        Brightness(GaussianNoise([0.1, 0.2]))
    from smoothcert.noise import LaplaceNoise

    with pytest.raises(ConfigError, match="draws its parameters from gaussian noise, not laplace"):
        Brightness(LaplaceNoise(0.2))
