"""Integer translation with circular padding: the roll, the certificate's soundness against a
classifier that looks at one pixel (exact probabilities from the shift geometry), and the
sampler's draws against those probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import ndtr
from torch import Tensor, nn

from smoothcert import ConfigError, Smooth
from smoothcert.noise import GaussianNoise
from smoothcert.transforms import Translation
from tests.transforms.soundness import allowed_failures, simulate

TRIALS, ALPHA, SIZE = 1000, 0.1, 48


class OnePixel(nn.Module):
    """Class 1 iff pixel (0, 0) of channel 0 is above 1/2."""

    def forward(self, x: Tensor) -> Tensor:
        s = x[:, 0, 0, 0] - 0.5
        return torch.stack([-s, s], 1)


def interval_probability(lo: int, hi: int, shifts: np.ndarray, sigma: float) -> np.ndarray:
    """P((a + round(sigma z)) mod SIZE in [lo, hi]) for each integer a of ``shifts``."""
    offsets = np.asarray(shifts)[:, None] - SIZE * np.arange(-6, 7)[None, :]
    top, bottom = (hi - offsets + 0.5) / sigma, (lo - offsets - 0.5) / sigma
    return (ndtr(top) - ndtr(bottom)).sum(1)


def test_transform_is_a_circular_roll_and_composes() -> None:
    perturbation = Translation(GaussianNoise(2.0))
    x = torch.rand(2, 5, 7)
    shifts = torch.tensor([[1.0, 2.0], [-3.0, 9.0], [0.4, -0.6]])
    out = perturbation.apply(x, shifts.clone())
    for copy, (dy, dx) in zip(out, [(1, 2), (-3, 9), (0, -1)], strict=True):
        assert torch.equal(copy, torch.roll(x, (dy, dx), (1, 2)))
    twice = perturbation.transform(out[:1], torch.tensor([[2.0, -5.0]]))
    assert torch.equal(twice[0], torch.roll(x, (3, -3), (1, 2)))  # roll_a . roll_b = roll_(a+b)


@pytest.mark.parametrize("shift", [-1.5, -0.5, 0.5, 1.5, 2.5])
def test_rounding_commutes_with_integer_shifts_at_exact_half_integers(shift: float) -> None:
    """The proof needs round(a + s) = a + round(s) for integer a; half-to-even rounding breaks it
    at exact half-integers (round(0.5) = 0 but round(1 + 0.5) = 2). Checked on the parameters the
    sampler draws and on the roll the transform applies."""
    perturbation = Translation(GaussianNoise(2.0))
    x = torch.rand(1, 6, 7)
    rounded = perturbation.params_from(torch.tensor([[shift, shift]]))
    for a in range(-4, 5):
        moved = perturbation.params_from(torch.tensor([[a + shift, a + shift]]))
        assert torch.equal(moved, rounded + a), (a, shift)
        rolled = perturbation.transform(x[None], torch.tensor([[a + shift, a + shift]]))
        expected = torch.roll(x, (a + int(rounded[0, 0]),) * 2, (1, 2))
        assert torch.equal(rolled[0], expected), (a, shift)


def translation_false_rate(inflate: float = 1.0) -> tuple[int, float]:
    """The image is the indicator of a rectangle; [pixel (0,0) > 1/2] after roll by d is class 1
    iff -d lies in it, so class 1's probability at an integer attack a factorizes into two
    interval probabilities of the rounded Gaussian (with wrap-around). A certificate is false if
    some integer a with ||a||_2 < radius leaves its class with probability <= 1/2."""
    rng = np.random.default_rng(0)
    sigma = rng.choice(np.arange(2.0, 8.5, 0.5), TRIALS)
    lo_y, lo_x = rng.integers(-20, 1, TRIALS), rng.integers(-20, 1, TRIALS)
    hi_y, hi_x = rng.integers(0, 21, TRIALS), rng.integers(0, 21, TRIALS)
    full_x = rng.random(TRIALS) < 0.5  # half the rectangles are bands (every column)
    zero = np.zeros(1)
    p_y = np.array(
        [interval_probability(lo_y[i], hi_y[i], zero, sigma[i])[0] for i in range(TRIALS)]
    )
    p_x = np.array(
        [
            1.0 if full_x[i] else interval_probability(lo_x[i], hi_x[i], zero, sigma[i])[0]
            for i in range(TRIALS)
        ]
    )
    p1 = p_y * p_x
    c_hat, lower = simulate(p1, 100, 1000, ALPHA, rng)
    false = 0
    radii = np.zeros(TRIALS)
    for level in np.unique(sigma):  # the certificate under test, one object per noise level
        pick = sigma == level
        radii[pick] = inflate * Translation(GaussianNoise(level)).radius(lower[pick])
    for i in np.flatnonzero(lower > 0.5):
        radius = radii[i]
        if c_hat[i] != (p1[i] > 0.5):
            false += 1
            continue
        reach = int(np.ceil(radius))
        grid = np.arange(-reach, reach + 1)
        prob_y = interval_probability(-hi_y[i], -lo_y[i], grid, sigma[i])
        prob_x = (
            np.ones(len(grid))
            if full_x[i]
            else interval_probability(-hi_x[i], -lo_x[i], grid, sigma[i])
        )
        prob = np.outer(prob_y, prob_x)
        prob = prob if c_hat[i] == 1 else 1 - prob
        inside = np.hypot(grid[:, None], grid[None, :]) < radius
        false += bool(np.any(prob[inside] <= 0.5))
    return false, allowed_failures(TRIALS, ALPHA)


def test_translation_false_certificates_stay_within_alpha() -> None:
    false, allowed = translation_false_rate()
    assert false <= allowed
    false, allowed = translation_false_rate(inflate=1.3)
    assert false > allowed  # a radius 30% too large is caught


def test_translation_through_the_sampler_matches_the_shift_geometry() -> None:
    sigma, (lo_y, hi_y), (lo_x, hi_x) = 3.0, (-4, 1), (-2, 6)
    x = torch.zeros(1, SIZE, SIZE)
    for dy in range(lo_y, hi_y + 1):  # -d in the rectangle: pixel (0, 0) of roll(x, d) is 1
        for dx in range(lo_x, hi_x + 1):
            x[0, (-dy) % SIZE, (-dx) % SIZE] = 1.0
    smooth = Smooth(OnePixel(), 2, sigma, perturbation=Translation(GaussianNoise(sigma)))
    n = 20_000
    stream = smooth._stream(x, torch.Generator().manual_seed(0))
    counts = smooth._counts([x], [n], 2048, [stream])[0]
    zero = np.zeros(1)
    p1 = (
        interval_probability(lo_y, hi_y, zero, sigma)
        * interval_probability(lo_x, hi_x, zero, sigma)
    )[0]
    assert abs(counts[1].item() / n - p1) < 4 * np.sqrt(p1 * (1 - p1) / n)


def test_translation_needs_images() -> None:
    smooth = Smooth(
        OnePixel(), 2, 2.0, perturbation=Translation(GaussianNoise(2.0)), input_range=None
    )
    with pytest.raises(
        ConfigError, match=r"perturbation=translation transforms images \[C, H, W\]"
    ):
        smooth.certify(torch.zeros(10), 10, 10, 0.1, 10)
