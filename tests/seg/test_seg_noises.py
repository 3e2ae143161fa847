"""SegCertify, IndivClass and JointClass with every (noise, norm) pair of ``smoothcert.noise``.

The base model thresholds each pixel on its own (class 1 iff the noisy pixel exceeds 1/2), so the
smoothed class of pixel i depends on ``x_i`` alone and its true robust radius is its distance
``d_i = |x_i - 1/2|`` to the threshold, in every norm. A certified pixel whose reported radius
exceeds its ``d_i`` is a false certificate; family-wise over the image, that happens at rate
<= alpha.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from smoothcert import ABSTAIN
from smoothcert.certifiers.segmentation import (
    indivclass,
    jointclass,
    segcertify,
    segmentation_radius,
)
from smoothcert.errors import ConfigError
from smoothcert.noise import Certificate, GaussianNoise, LaplaceNoise, UniformNoise

SIGMA, TAU = 0.1, 0.75
PAIRS = [
    (GaussianNoise, "l2"),
    (GaussianNoise, "l1"),
    (GaussianNoise, "linf"),
    (LaplaceNoise, "l1"),
    (UniformNoise, "l1"),
    (UniformNoise, "linf"),
]
IDS = [f"{cls.name}-{norm}" for cls, norm in PAIRS]


class PixelThreshold(nn.Module):
    """Pixel i is class 1 iff its (noisy) value exceeds 1/2: logits ``[B, 2, H, W]``."""

    def forward(self, x: Tensor) -> Tensor:
        above = (x[:, 0] > 0.5).float()
        return torch.stack([1 - above, above], dim=1)


def image(radius: float) -> tuple[Tensor, Tensor]:
    """A 1 x 4 x 4 image with pixels at distances 0.8R ... 3R from the threshold (some below the
    radius, so a radius formula that is too large gets caught) and the rest far away."""
    factors = [0.8, 1.0, 1.1, 1.3, 1.6, 2.0, 3.0]
    d = torch.full((16,), 0.45)
    d[: len(factors)] = torch.tensor(factors) * radius
    return (0.5 + d).view(1, 4, 4), d.view(4, 4)


@pytest.mark.parametrize(("cls", "norm"), PAIRS, ids=IDS)
def test_segcertify_radius_is_the_noise_radius_at_tau(cls, norm: str) -> None:
    x = torch.full((3, 5, 7), 0.5)
    noise = cls(SIGMA)
    expected = noise.radius(TAU, norm, x.numel())
    _, radius = segcertify(PixelThreshold(), x, SIGMA, 5, 20, TAU, 0.1, noise=noise, norm=norm)
    assert radius == pytest.approx(expected, rel=1e-12)
    certificate = Certificate(noise, norm, x.numel())
    assert segmentation_radius(certificate, TAU) == pytest.approx(expected, rel=1e-12)
    if cls is not GaussianNoise:  # not the Gaussian formula
        assert abs(expected - GaussianNoise(SIGMA).radius(TAU, norm, x.numel())) > 1e-3


@pytest.mark.slow  # 6 x 200 certifications, several seconds
@pytest.mark.parametrize(("cls", "norm"), PAIRS, ids=IDS)
def test_segcertify_false_certificates_stay_within_alpha(cls, norm: str) -> None:
    """Over many images, P(some certified pixel has d_i < radius) <= alpha (+ 3 standard errors);
    and the pixels comfortably beyond the radius do get certified (the check is not vacuous)."""
    noise, alpha, trials = cls(SIGMA), 0.2, 200
    radius = noise.radius(TAU, norm, 16)
    x, d = image(radius)
    wrong, certified_far = 0, 0
    for trial in range(trials):
        generator = torch.Generator().manual_seed(trial)
        classes, reported = segcertify(
            PixelThreshold(), x, SIGMA, 20, 1000, TAU, alpha, generator=generator, noise=noise,
            norm=norm, batch_size=1020,
        )  # fmt: skip
        issued = classes != ABSTAIN
        assert torch.all(classes[issued] == 1)
        wrong += bool((issued & (d < reported)).any())
        certified_far += int(issued[d >= 2 * radius].sum())
    bound = alpha + 3 * float(np.sqrt(alpha * (1 - alpha) / trials))
    far = int((d >= 2 * radius).sum())
    print(
        f"{cls.name} {norm}: R={radius:.4f}, false-certificate rate {wrong / trials:.3f}, "
        f"{certified_far / trials:.2f} of the {far} pixels beyond 2R certified per image"
    )
    assert wrong / trials <= bound
    # Not vacuous: in the noise's own norms the pixels beyond 2R are certified; an linf radius
    # is about 1/sqrt(d) of the others, so there only the far pixels are.
    assert certified_far / trials > 0.9 * (far if norm != "linf" else 9)


@pytest.mark.parametrize(("cls", "norm"), PAIRS, ids=IDS)
def test_indivclass_and_jointclass_use_the_noise_radius(cls, norm: str) -> None:
    """Far-away pixels: both baselines certify, and their radius is the noise's radius of the
    Clopper-Pearson bound in that norm (the exact value checked against ``Noise.radius``)."""
    x = torch.full((1, 2, 2), 1.0)  # every pixel 10 sigma from the threshold: p ~ 1
    sigma = 0.05
    noise = cls(sigma)
    for certify in (indivclass, jointclass):
        generator = torch.Generator().manual_seed(0)
        classes, radius = certify(
            PixelThreshold(), x, sigma, 10, 200, 0.01, generator=generator, noise=noise, norm=norm
        )
        assert torch.all(classes == 1)
        # all 200 samples agree: p_lower is the Clopper-Pearson bound of 200 / 200 at its level
        level = 0.01 / 4 if certify is indivclass else 0.01
        assert radius == pytest.approx(noise.radius(level ** (1 / 200), norm, 4), rel=1e-9)


def test_unsupported_pairs_are_one_line_errors() -> None:
    x = torch.full((1, 2, 2), 0.5)
    with pytest.raises(ConfigError, match="laplace noise certifies no linf radius"):
        segcertify(PixelThreshold(), x, SIGMA, 5, 20, TAU, 0.1, noise="laplace", norm="linf")
    with pytest.raises(ConfigError, match="differs from sigma"):
        segcertify(PixelThreshold(), x, SIGMA, 5, 20, TAU, 0.1, noise=LaplaceNoise(0.5))
