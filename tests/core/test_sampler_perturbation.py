"""A perturbation for every certifier: SegCertify and its baselines smooth over a transformation's
parameters through the same sampler, and the perturbation owns the input check."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import norm
from torch import Tensor, nn

from smoothcert import Smooth
from smoothcert.certifiers.segmentation import (
    ABSTAIN,
    certify_counts,
    indivclass,
    jointclass,
    segcertify,
)
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise, example_generator
from smoothcert.perturbation import ADDITIVE
from smoothcert.transforms import Brightness, Translation

SIGMA = 0.25


class Threshold(nn.Module):
    """Per-pixel logits ``[B, 3, H, W]``: class 2 where the pixel is bright, else 1 (class 0 never
    wins), so a brightness shift moves pixels near the threshold only."""

    def forward(self, x: Tensor) -> Tensor:
        v = x.mean(dim=1, keepdim=True)
        return torch.cat([torch.full_like(v, -5.0), 0.5 - v, v - 0.5], dim=1) * 10


def image() -> Tensor:
    return torch.linspace(0.0, 1.0, 5 * 5).view(1, 5, 5).repeat(2, 1, 1)


def test_segcertify_over_brightness_samples_brightness_and_states_its_radius() -> None:
    x, n0, n, tau, alpha = image(), 20, 200, 0.75, 0.01
    brightness = Brightness(GaussianNoise(SIGMA))
    classes, radius = segcertify(
        Threshold(), x, SIGMA, n0, n, tau, alpha, batch_size=16,
        generator=example_generator(0, 0), perturbation=brightness,
    )  # fmt: skip
    # The oracle: the same draws, applied by hand, counted by hand.
    draws = GaussianNoise(SIGMA).stream((1,), example_generator(0, 0), "cpu")
    first = Threshold()(x + draws.take(n0).view(-1, 1, 1, 1)).argmax(1)
    modes = torch.stack([(first == k).sum(0) for k in range(3)]).argmax(0)
    second = Threshold()(x + draws.take(n).view(-1, 1, 1, 1)).argmax(1)
    counts = (second == modes).sum(0)
    expected, _ = certify_counts(modes, counts, n, SIGMA, tau, alpha)
    assert torch.equal(classes, expected)
    assert (classes != ABSTAIN).any() and (classes == ABSTAIN).any()
    assert radius == pytest.approx(SIGMA * norm.ppf(tau))  # brightness units
    baselines = {"generator": example_generator(0, 1), "perturbation": brightness}
    _, joint_radius = jointclass(Threshold(), x, SIGMA, n0, n, alpha, **baselines)
    _, indiv_radius = indivclass(Threshold(), x, SIGMA, n0, n, alpha, **baselines)
    assert joint_radius == indiv_radius == 0.0  # pixels at the threshold flip: all abstain


def test_a_parameter_perturbation_brings_its_noise() -> None:
    brightness = Brightness(GaussianNoise(SIGMA))
    with pytest.raises(ConfigError, match="brings its own noise"):
        segcertify(Threshold(), image(), SIGMA, 5, 10, 0.75, 0.01, noise="laplace",
                   perturbation=brightness)  # fmt: skip
    with pytest.raises(ConfigError, match="give both the same level"):
        segcertify(Threshold(), image(), 0.5, 5, 10, 0.75, 0.01, perturbation=brightness)


def test_the_perturbation_owns_the_input_check() -> None:
    with pytest.raises(ConfigError, match=r"segcertify expects one example \[C, H, W\]") as info:
        segcertify(Threshold(), image()[0], SIGMA, 5, 10, 0.75, 0.01)
    assert "\n" not in str(info.value)
    translation = Translation(GaussianNoise(1.0))
    with pytest.raises(ConfigError, match="perturbation=translation transforms images"):
        translation.check_example(torch.rand(7), input_range=None)
    ADDITIVE.check_example(torch.rand(7), input_range=None)  # any shape without a range
    smooth = Smooth(nn.Linear(7, 2), 2, 1.0, perturbation=translation, input_range=None)
    with pytest.raises(ConfigError, match="transforms images"):
        smooth.certify(torch.rand(7), 5, 10, 0.01, 8)
