"""What a brightness(+contrast) certificate covers: a radius of 0 abstains (the worst-case
contrast classifier), the in-range part of a certificate, and TSS's contrast spelling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm
from torch import Tensor, nn

from callbacks.certification.cohen import CohenCertification
from smoothcert import ConfigError, Smooth
from smoothcert.certifiers.classification import ABSTAIN
from smoothcert.certifiers.in_range import certify_group_in_range
from smoothcert.noise import GaussianNoise, RayleighNoise
from smoothcert.records.in_range import IN_RANGE_SCHEMA, clean_accuracy, in_range_curve
from smoothcert.transforms import Brightness, BrightnessContrast, Gamma, Translation
from tests.transforms.test_brightness import MeanAbove

SIGMA, SIGMA_K, K, P_A = 0.5, 0.075, 0.1, 0.8
X = torch.tensor([[[0.2, 0.6]]])  # two pixels: e^k' (x + b') gives back (k', b')
NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
WEIGHTS = WEIGHTS / WEIGHTS.sum()


def _class0_mass(tau: float, k_attack: float) -> float:
    """P(class 0) of the smoothed worst-case classifier at ``e^k_attack x`` (see below): the
    parameters seen from ``x`` are ``(k_attack + k', e^-k_attack b')``; class 0 is
    ``K k / SIGMA_K^2 - c b^2 <= tau``, i.e. ``k' <= ...``, exact over k', quadrature over b'."""
    c = (math.exp(2 * K) - 1) / (2 * SIGMA**2)
    b = SIGMA * math.exp(-k_attack) * NODES
    z = ((tau + c * b**2) * SIGMA_K**2 / K - k_attack) / SIGMA_K
    return float((WEIGHTS * norm.cdf(z)).sum())


TAU = brentq(lambda tau: _class0_mass(tau, 0.0) - P_A, -50, 50)


class WorstContrast(nn.Module):
    """The Neyman-Pearson worst case for the contrast change ``k = K``: it reads the smoothing
    parameters ``(k', b')`` off the image ``e^k' (X + b')`` and says class 0 where the likelihood
    ratio of the attacked parameters ``N((K, 0), diag(SIGMA_K^2, e^-2K SIGMA^2))`` to the clean
    ones is smallest (mass P_A at X), class 1 elsewhere."""

    def forward(self, z: Tensor) -> Tensor:
        z = z.double().flatten(1)
        x1, x2 = float(X[0, 0, 0]), float(X[0, 0, 1])
        k = torch.log((z[:, 1] - z[:, 0]) / (x2 - x1))
        b = z[:, 0] * torch.exp(-k) - x1
        stat = K * k / SIGMA_K**2 - b**2 * (math.exp(2 * K) - 1) / (2 * SIGMA**2)
        one = (stat > TAU).double()
        return torch.stack([1 - one, one], 1).float()


def test_a_radius_of_zero_abstains_on_the_worst_case_contrast_classifier() -> None:
    """p_A = 0.8 at x, yet the pure contrast change e^0.1 x (inside |k| <= 0.1) leaves class 0
    only 0.31 of the mass, so the smoothed answer flips: CERTIFY must not return (0, 0.0)."""
    assert _class0_mass(TAU, 0.0) == pytest.approx(P_A)
    assert _class0_mass(TAU, K) == pytest.approx(0.31, abs=0.005)  # the worst-case mass
    bc = BrightnessContrast(GaussianNoise(SIGMA), sigma_k=SIGMA_K, contrast=K)
    smooth = Smooth(WorstContrast(), 2, SIGMA, perturbation=bc)
    gen = torch.Generator().manual_seed
    # the sampler agrees with the analytic masses, at x and at the contrast change
    flipped = smooth.predict(X * math.exp(K), 4000, 0.001, 4096, gen(1))
    assert flipped == 1
    results, predictions, counts = smooth.certify_many_with_predictions(
        [X], 100, 4000, 0.001, 4096, [gen(2)]
    )
    assert abs(counts[0, 0].item() / 4000 - P_A) < 0.03
    assert predictions == [0]  # the smoothed answer at x (what clean_acc counts) ...
    assert results == [(ABSTAIN, 0.0)]  # ... but nothing is certified with the contrast
    assert smooth.certify(X, 100, 4000, 0.001, 4096, gen(2)) == (ABSTAIN, 0.0)


def test_other_parametric_radii_are_positive_whenever_pA_exceeds_half() -> None:
    """Brightness, gamma (both noises) and translation certify a positive radius for every
    p_A > 1/2, so abstaining on a radius of 0 changes nothing for them."""
    p = np.array([0.5 + 1e-9, 0.51, 0.9, 0.999999])
    for perturbation in [
        Brightness(GaussianNoise(0.3)),
        Gamma(RayleighNoise(0.5)),
        Gamma(GaussianNoise(0.5)),
        Translation(GaussianNoise(2.0)),
    ]:
        assert np.all(np.asarray(perturbation.radius(p)) > 0), perturbation


def test_in_range_radius_on_a_constructed_image() -> None:
    """An image spanning [0.2, 0.7] stays in [0, 1] for shifts b in [-0.2, 0.3]: the certified
    shifts |b| < R are cut to that interval; its symmetric part is min(R, 0.2, 0.3)."""
    x = torch.tensor([[[0.2, 0.5], [0.7, 0.4]]])
    brightness = Brightness(GaussianNoise(0.5))
    assert brightness.in_range(x, 0.5) == pytest.approx((-0.2, 0.3, 0.2))
    assert brightness.in_range(x, 0.1) == pytest.approx((-0.1, 0.1, 0.1))
    assert brightness.in_range(x, 0.0) == (0.0, 0.0, 0.0)
    for b in np.linspace(-0.2, 0.3, 11):  # in range inside, out of range just beyond
        assert float((x + b).min()) >= 0 and float((x + b).max()) <= 1 + 1e-7
    assert float((x - 0.21).min()) < 0 and float((x + 0.31).max()) > 1
    # with contrast: e^k (x + b) <= 1 for every k <= 0.1 needs b <= e^-0.1 - 0.7
    bc = BrightnessContrast(GaussianNoise(0.5), contrast=0.1)
    low, high, r = bc.in_range(x, 0.5)
    assert (low, high, r) == pytest.approx((-0.2, math.exp(-0.1) - 0.7, 0.2))
    assert float((math.exp(0.1) * (x + high)).max()) == pytest.approx(1.0)
    # a digit spanning [0, 1]: nothing but b = 0 is in range
    assert brightness.in_range(torch.tensor([[[0.0, 1.0]]]), 1.2) == (0.0, 0.0, 0.0)


def test_in_range_records_through_the_certifier() -> None:
    """The in-range records the callback writes: same certificate as certify.tsv, the in-range
    interval of each image, and the clean accuracy from the smoothed prediction."""
    brightness = Brightness(GaussianNoise(0.2))
    smooth = Smooth(MeanAbove(0.0), 2, 0.2, perturbation=brightness)
    xs = [torch.full((1, 2, 2), 0.6), torch.tensor([[[0.0, 1.0], [0.5, 0.9]]])]
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    pairs = certify_group_in_range(smooth, [0, 1], xs, [1, 1], gens, (100, 2000, 0.001, 4096))
    (first, first_range), (second, second_range) = pairs
    assert first.predict == 1 and first.radius > 0.4 and first_range.radius == first.radius
    assert first_range.in_range_radius == pytest.approx(0.4)  # 1 - 0.6 < 0.6 = min x
    assert second.radius > 0 and second_range.in_range_radius == 0.0
    records = [r for _, r in pairs]
    assert in_range_curve(records, [0.0, 0.3]).tolist() == [1.0, 0.5]
    assert clean_accuracy(records) == 1.0
    text = IN_RANGE_SCHEMA.pack(records)
    assert IN_RANGE_SCHEMA.unpack(text, {}) == records


def test_tss_contrast_factor_against_log_contrast() -> None:
    """TSS's --bright_scale s certifies factors [1 - s, 1 + s] (k in [ln 0.9, ln 1.1] for 0.1):
    at p_A 0.99, sigma 1, sigma_k 0.05 it certifies nothing (k = ln 0.9 = -0.105 is beyond the
    contrast the margin allows), where contrast=0.1 (k in [-0.1, 0.1]) certifies 0.487."""
    tss = BrightnessContrast(GaussianNoise(1.0), sigma_k=0.05, contrast_factor=0.1)
    ours = BrightnessContrast(GaussianNoise(1.0), sigma_k=0.05, contrast=0.1)
    assert (tss.k_low, tss.k_high) == pytest.approx((math.log(0.9), math.log(1.1)))
    assert float(tss.radius(0.99)) == 0.0
    assert float(ours.radius(0.99)) == pytest.approx(0.487, abs=5e-4)
    assert "contrast factor in [0.9, 1.1]" in tss.axis_label
    assert BrightnessContrast(GaussianNoise(1.0)).contrast == 0.1  # neither given
    with pytest.raises(ConfigError, match="both give the contrast range") as info:
        BrightnessContrast(GaussianNoise(1.0), contrast=0.1, contrast_factor=0.1)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"contrast_factor=1.0 must be a number in \[0, 1\)"):
        BrightnessContrast(GaussianNoise(1.0), contrast_factor=1.0)


def test_the_header_and_axis_say_what_is_covered(tmp_path) -> None:
    """Brightness certificates cover the shift before clipping: the record header and the plot
    axis say so, and the callback writes in_range.tsv beside certify.tsv."""
    wording = "brightness shift before clipping (TSS's threat model); a clipped brightness"
    for perturbation in [
        Brightness(GaussianNoise(0.5)),
        BrightnessContrast(GaussianNoise(0.5), contrast_factor=0.2),
    ]:
        callback = CohenCertification(0.5, str(tmp_path), perturbation=perturbation)
        label = " ".join(perturbation.axis_label.split())  # on several lines in the figure
        assert wording in callback.settings["threat_model"] and wording in label
        assert callback.in_range and set(callback.schemas()) == {"cohen", "in_range"}
    assert callback.settings["log_contrast_range"] == pytest.approx([math.log(0.8), math.log(1.2)])
    gamma = CohenCertification(0.5, str(tmp_path), perturbation=Gamma(RayleighNoise(0.5)))
    assert not gamma.in_range and "threat_model" not in gamma.settings  # x^g stays in [0, 1]
