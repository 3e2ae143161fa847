"""Rotation with bilinear interpolation, the vignette, the Gaussian filter and the perturbation."""

from __future__ import annotations

import pytest
import torch

from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise
from smoothcert.transforms import Rotation
from smoothcert.transforms.rotation import (
    RotationPipeline,
    gaussian_filter,
    rotate,
    vignette_mask,
)


def _disc_image(size: int = 16, seed: int = 0) -> torch.Tensor:
    """A random image that is zero outside the inscribed disc (so rotations lose nothing)."""
    image = torch.rand(1, size, size, generator=torch.Generator().manual_seed(seed))
    return image * vignette_mask(size, size, radius_decrease=1.0, edge=0.0)


def test_zero_angle_is_identity_and_quarter_turns_permute_pixels() -> None:
    x = _disc_image()
    assert torch.allclose(rotate(x[None], torch.zeros(1))[0], x, atol=1e-6)
    quarter = rotate(x[None], torch.tensor([90.0]))[0]
    # positive angles turn the picture clockwise as displayed (rows run down): top -> right
    assert torch.allclose(quarter, torch.rot90(x, -1, dims=(1, 2)), atol=1e-5)
    half = rotate(x[None], torch.tensor([180.0]))[0]
    assert torch.allclose(half, torch.rot90(x, 2, dims=(1, 2)), atol=1e-5)


def test_bilinear_rotation_of_a_linear_image_is_exact_and_composition_is_not() -> None:
    size = 17
    v, u = torch.meshgrid(torch.arange(size) - 8.0, torch.arange(size) - 8.0, indexing="ij")
    ramp = (0.5 + 0.02 * u + 0.01 * v)[None]  # linear: bilinear interpolation reproduces it
    angle = 23.0
    t = torch.tensor(angle * torch.pi / 180)
    expected = 0.5 + 0.02 * (u * t.cos() + v * t.sin()) + 0.01 * (-u * t.sin() + v * t.cos())
    inside = (u**2 + v**2) < 7.5**2  # sampling points stay inside the image
    got = rotate(ramp[None].double(), torch.tensor([angle]))[0, 0]
    assert torch.allclose(got[inside], expected[inside].double(), atol=1e-9)
    # A non-linear image: two rotations differ from one (why DistSPT exists).
    x = _disc_image(seed=1)[None].double()
    twice = rotate(rotate(x, torch.tensor([10.0])), torch.tensor([13.0]))
    once = rotate(x, torch.tensor([23.0]))
    assert (twice - once).norm() > 0.1


def test_vignette_mask_and_its_rotation_invariance() -> None:
    mask = vignette_mask(32, 32, radius_decrease=2.0, edge=2.0)
    assert mask[16, 16] == 1 and mask[0, 0] == 0 and mask.min() >= 0 and mask.max() <= 1
    distance = ((torch.arange(32) - 15.5)[:, None] ** 2 + (torch.arange(32) - 15.5) ** 2).sqrt()
    assert (mask[distance >= 14] == 0).all() and (mask[distance <= 12] == 1).all()
    turned = rotate(mask[None, None], torch.tensor([37.0]))[0, 0]
    assert (turned - mask).abs().max() < 0.2


def test_gaussian_filter_is_normalized_and_contracts() -> None:
    x = torch.rand(2, 1, 20, 20, generator=torch.Generator().manual_seed(0)).double()
    y = torch.rand(2, 1, 20, 20, generator=torch.Generator().manual_seed(1)).double()
    blurred = gaussian_filter(x, 5, 1.5)
    centre = blurred[:, :, 2:-2, 2:-2]
    assert centre.mean().item() == pytest.approx(x[:, :, 2:-2, 2:-2].mean().item(), abs=0.02)
    constant = gaussian_filter(torch.ones(1, 1, 9, 9).double(), 5, 1.5)
    assert torch.allclose(constant[0, 0, 4, 4], torch.tensor(1.0).double())
    diff = gaussian_filter(x, 5, 1.5) - gaussian_filter(y, 5, 1.5)
    assert (diff.flatten(1).norm(dim=1) <= (x - y).flatten(1).norm(dim=1)).all()
    assert blurred.std() < x.std() / 2  # it smooths


def test_pipeline_is_one_definition_for_training_and_certification() -> None:
    rotation = Rotation(GaussianNoise(30.0), train_noise=0.0)
    x = torch.rand(1, 32, 32)
    draws = torch.tensor([[12.5], [-40.0]])
    applied = rotation.apply(x, draws.clone())
    by_hand = rotation.pipeline.post(
        rotate(rotation.pipeline.pre(x[None]).expand(2, 1, 32, 32), draws[:, 0])
    )
    assert torch.allclose(applied, by_hand)
    assert torch.allclose(rotation.pipeline.sample(x, draws[:, 0]), applied)
    noisy = Rotation(GaussianNoise(30.0), train_noise=0.25)(x.expand(64, 1, 32, 32).clone())
    plain = Rotation(GaussianNoise(30.0))(x.expand(64, 1, 32, 32).clone())
    corners = (noisy - plain)[:, :, :3, :3]  # outside the vignette: only the training noise
    assert (
        0.2 < float(noisy[:, :, :3, :3].std()) < 0.3 and float(plain[:, :, :3, :3].abs().max()) == 0
    )
    assert corners.numel() > 0


def test_rotation_is_labelled_heuristic_in_degrees() -> None:
    rotation = Rotation(GaussianNoise(30.0))
    assert not rotation.certified and rotation.units == "degrees"
    assert "not a certificate" in rotation.axis_label


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Rotation(GaussianNoise(30.0)).draw_shape((5,)), "transforms images"),
        (lambda: Rotation(GaussianNoise(0.0)), "sigma"),
        (lambda: Rotation(GaussianNoise(30.0), train_noise=-1.0), "train_noise"),
        (lambda: RotationPipeline(blur_size=4), "odd"),
        (lambda: RotationPipeline(blur_sigma=-1.0), "blur_sigma"),
        (lambda: Rotation(GaussianNoise(30.0), filter_sigma=-2.0), "filter_sigma"),
        (lambda: RotationPipeline(radius_decrease=40.0), "vignette"),
        (lambda: RotationPipeline().sample(torch.rand(4, 4), torch.zeros(1)), "images"),
    ],
)
def test_bad_settings_are_one_line_errors(build, match) -> None:
    with pytest.raises(ConfigError, match=match) as error:
        build()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("filter_sigma", [2.0, 0.5, 4.5])
def test_reference_filter_sigma_gives_the_references_kernel(filter_sigma) -> None:
    """Paper 002's code filters with exp(-r^2 / filter_sigma) (r the 2-D distance to the kernel's
    center, normalized): ``filter_sigma`` builds that filter, so the reference's 2.0 is
    blur_sigma=1.0. The reference kernel is written out here, not taken from the code."""
    rotation = Rotation(GaussianNoise(30.0), blur_sigma=0.3, filter_sigma=filter_sigma)
    assert rotation.pipeline.blur_sigma == pytest.approx((filter_sigma / 2) ** 0.5, rel=1e-12)
    if filter_sigma == 2.0:
        assert rotation.pipeline.blur_sigma == pytest.approx(1.0, rel=1e-12)
    size = rotation.pipeline.blur_size
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    r2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    reference = torch.exp(-r2 / filter_sigma)
    reference = reference / reference.sum()
    impulse = torch.zeros(1, 1, 11, 11, dtype=torch.float64)
    impulse[0, 0, 5, 5] = 1.0
    response = gaussian_filter(impulse, size, rotation.pipeline.blur_sigma)[0, 0]
    centre = slice(5 - size // 2, 5 + size // 2 + 1)
    assert torch.allclose(response[centre, centre], reference, atol=1e-12)
    assert Rotation(GaussianNoise(30.0), filter_sigma=None).pipeline.blur_sigma == 1.5


class SharpnessDetector(torch.nn.Module):
    """Class 1 when the image's pixel spread exceeds ``threshold``: it reads how often the image
    was interpolated (each bilinear resampling blurs a little), which composition ignores."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sharp = (x.flatten(1).std(1) > self.threshold).float()
        return torch.stack([1 - sharp, sharp], dim=1)


def test_basespt_radius_is_not_a_certificate() -> None:
    """BaseSPT (Cohen over the angle) claims a radius of tens of degrees at x, yet the smoothed
    classifier answers otherwise at x rotated by 3 degrees: rotations do not compose."""
    from smoothcert.certifiers.classification import Smooth

    mask = vignette_mask(32, 32, radius_decrease=4.0, edge=0.0)
    x = (torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.5).float() * mask
    rotation = Rotation(GaussianNoise(30.0))
    smooth = Smooth(SharpnessDetector(0.2342), 2, 30.0, perturbation=rotation)
    generator = torch.Generator().manual_seed(1)
    predicted, radius = smooth.certify(x, 100, 1000, 0.01, 500, generator=generator)
    assert predicted == 1 and radius > 20.0
    attacked = rotate(x[None], torch.tensor([3.0]))[0]
    assert smooth.predict(attacked, 1000, 0.01, 500, generator=generator) == 0
