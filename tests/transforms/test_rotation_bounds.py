"""Interval analysis of the rotation's interpolation error: the bound is never below the error."""

from __future__ import annotations

import math

import pytest
import torch

from smoothcert.data.classification import digits32_splits
from smoothcert.errors import ConfigError
from smoothcert.transforms.rotation import RotationPipeline, rotate
from smoothcert.transforms.rotation_bounds import (
    _cos_range,
    check_angle_interval,
    error_bounds,
    rotate_interval,
    sampled_errors,
)


@pytest.fixture(scope="module")
def digit() -> torch.Tensor:
    return digits32_splits(seed=0).test[3][0]


def test_cos_range_is_exact() -> None:
    generator = torch.Generator().manual_seed(0)
    low = (torch.rand(500, generator=generator) - 0.5) * 20
    high = low + torch.rand(500, generator=generator) * 4
    bottom, top = _cos_range(low.double(), high.double())
    dense = torch.cos(
        low.double()[:, None] + (high - low).double()[:, None] * torch.linspace(0, 1, 4001).double()
    )
    assert torch.allclose(bottom, dense.min(1).values, atol=1e-6)
    assert torch.allclose(top, dense.max(1).values, atol=1e-6)


@pytest.mark.parametrize("image", ["digit", "noise"])
def test_rotate_interval_contains_every_rotation_in_the_piece(image, digit) -> None:
    x = (
        digit
        if image == "digit"
        else torch.rand(1, 20, 20, generator=torch.Generator().manual_seed(1))
    )
    x = x.double()
    low = torch.tensor([-31.0, -2.5, 0.0, 14.2, 88.0, 170.0]).double()
    high = low + torch.tensor([0.5, 2.0, 0.3, 1.7, 4.0, 6.0]).double()  # some boxes span > 1 pixel
    lower, upper = rotate_interval(x, low, high)
    for s in range(len(low)):
        angles = low[s] + (high[s] - low[s]) * torch.linspace(0, 1, 41).double()
        values = rotate(x[None].expand(41, *x.shape), angles)
        assert (values >= lower[s] - 1e-12).all() and (values <= upper[s] + 1e-12).all()
        # and the bounds are attained up to the curve-vs-box slack: not vacuous
        assert (upper[s] - lower[s]).max() < 1.0


@pytest.mark.parametrize(
    "pipeline",
    [
        RotationPipeline(),
        RotationPipeline(blur_sigma=0.0),
        RotationPipeline(vignette=False, blur_sigma=1.0),
    ],
    ids=["vignette+filter", "vignette only", "filter only"],
)
def test_error_bound_is_never_below_the_sampled_error(pipeline, digit) -> None:
    betas = torch.tensor([-47.0, -3.3, 0.0, 12.9, 61.5])
    gamma = (-10.0, 6.0)
    gammas = torch.linspace(*gamma, 161)  # 0.1 degree grid, 10 angles per piece
    errors = sampled_errors(digit, betas, gammas, pipeline).max(1).values
    uniform = error_bounds(digit, betas, gamma, pipeline, splits=16, refinements=0)
    refined = error_bounds(digit, betas, gamma, pipeline, splits=8, refinements=3, target=0.0)
    assert (errors <= uniform).all() and (errors <= refined).all()
    # Finer pieces give tighter (but still sound) bounds that approach the sampled maximum.
    assert (refined <= uniform + 1e-9).all()
    assert (refined - errors).max() < 0.35 * errors.max()


def test_refining_stops_where_the_target_is_met(digit) -> None:
    pipeline = RotationPipeline()
    betas = torch.tensor([5.0, -20.0])
    options = {"splits": 16, "refinements": 3}
    loose = error_bounds(digit, betas, (-15.0, 15.0), pipeline, **options, target=5.0)
    tight = error_bounds(digit, betas, (-15.0, 15.0), pipeline, **options, target=0.0)
    errors = sampled_errors(digit, betas, torch.linspace(-15, 15, 121), pipeline).max(1).values
    assert (loose <= 5.0).all() and (tight < loose).all() and (errors <= tight).all()


def test_the_filter_and_vignette_shrink_the_error(digit) -> None:
    """Paper 002 Table 11: without the vignette and filter the bound is far larger."""
    betas, gammas = torch.tensor([17.0]), torch.linspace(-30, 30, 61)
    both = sampled_errors(digit, betas, gammas, RotationPipeline()).max()
    neither = sampled_errors(
        digit, betas, gammas, RotationPipeline(vignette=False, blur_sigma=0)
    ).max()
    assert neither > 2 * both


@pytest.mark.parametrize(
    ("low", "high", "match"),
    [(5.0, 5.0, "empty"), (10.0, -10.0, "empty"), (-100.0, 90.0, "180")],
)
def test_bad_angle_intervals_are_one_line_errors(low, high, match) -> None:
    with pytest.raises(ConfigError, match=match) as error:
        check_angle_interval(low, high)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=match):
        error_bounds(torch.zeros(1, 8, 8), torch.zeros(1), (low, high), RotationPipeline())
    assert math.isfinite(high)


def test_error_bound_holds_for_content_in_the_corners() -> None:
    """An image with content everywhere: the vignette on the attacked image matters here."""
    x = torch.rand(1, 20, 20, generator=torch.Generator().manual_seed(2))
    pipeline = RotationPipeline(edge=1.0)
    betas = torch.tensor([-25.0, 8.0, 40.0])
    gammas = torch.linspace(-8.0, 8.0, 161)
    errors = sampled_errors(x, betas, gammas, pipeline).max(1).values
    bounds = error_bounds(x, betas, (-8.0, 8.0), pipeline, splits=16, refinements=1, target=0.0)
    assert (errors <= bounds).all()
