"""Streams and training draws of every noise: batch-size independent, per-coordinate std sigma,
the right distribution, and (Gaussian) the very numbers the code drew before noises became
objects, so certification rows written before the change are reproduced."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from smoothcert import GaussianNoise, GaussianNoiseStream, Smooth
from smoothcert.noise import LaplaceNoise, Noise, NoiseStream, UniformNoise, build_noise

SIGMA = 0.25
NOISES: dict[str, type[Noise]] = {
    "gaussian": GaussianNoise,
    "laplace": LaplaceNoise,
    "uniform": UniformNoise,
}
# One coordinate at std SIGMA, and its fourth standardized moment (kurtosis).
DISTRIBUTIONS = {
    "gaussian": (stats.norm(scale=SIGMA), 3.0),
    "laplace": (stats.laplace(scale=SIGMA / math.sqrt(2)), 6.0),
    "uniform": (stats.uniform(loc=-math.sqrt(3) * SIGMA, scale=2 * math.sqrt(3) * SIGMA), 1.8),
}


def _stream(name: str, shape: tuple[int, ...], seed: int = 0, dtype=torch.float32) -> NoiseStream:
    generator = torch.Generator().manual_seed(seed)
    return NOISES[name](SIGMA).stream(shape, generator, "cpu", dtype)


@pytest.mark.parametrize("name", list(NOISES))
@pytest.mark.parametrize(("shape", "total"), [((4,), 150_000), ((3, 8, 8), 3000)])
def test_stream_is_independent_of_take_sizes(name: str, shape: tuple, total: int) -> None:
    # (4,) spans more than two chunks of 65536 samples; (3, 8, 8) spans two of 1365.
    whole = _stream(name, shape).take(total)
    rng = np.random.default_rng(1)
    for plan in ([1, 2, total - 3], list(rng.multinomial(total, np.ones(7) / 7)) + [0]):
        stream = _stream(name, shape)
        parts = torch.cat([stream.take(int(m)) for m in plan])
        torch.testing.assert_close(parts, whole, rtol=0, atol=0)
    again = _stream(name, shape, seed=1).take(total)
    assert not torch.equal(again, whole)


@pytest.mark.parametrize("name", list(NOISES))
def test_stream_has_std_sigma_and_the_right_distribution(name: str) -> None:
    samples = _stream(name, (1, 8, 8), seed=5).take(4000).double()
    flat = samples.flatten()
    count = flat.numel()
    dist, kurtosis = DISTRIBUTIONS[name]
    assert dist.std() == pytest.approx(SIGMA)
    assert abs(flat.mean().item()) < 5 * SIGMA / math.sqrt(count)
    # Standard error of the sample std: sigma * sqrt((kurtosis - 1) / (4 N)).
    assert abs(flat.std().item() - SIGMA) < 5 * SIGMA * math.sqrt((kurtosis - 1) / (4 * count))
    assert (flat**4).mean().item() / flat.var().item() ** 2 == pytest.approx(kurtosis, rel=0.05)
    assert stats.kstest(flat[:50_000].numpy(), dist.cdf).pvalue > 1e-3
    assert torch.isfinite(flat).all()
    per_pixel = samples.reshape(samples.shape[0], -1)
    off_diagonal = torch.corrcoef(per_pixel.T) - torch.eye(per_pixel.shape[1], dtype=flat.dtype)
    assert off_diagonal.abs().max() < 5 / math.sqrt(samples.shape[0])


@pytest.mark.parametrize("name", list(NOISES))
def test_training_draws_have_std_sigma_per_level(name: str) -> None:
    x = torch.rand(600, 3, 16, 16)
    noise = NOISES[name]([0.5, 0.1])
    assert noise.sigma == [0.1, 0.5]
    delta = noise(x, torch.Generator().manual_seed(0)) - x
    per_example = delta.flatten(1).std(dim=1)
    nearest = (per_example[:, None] - torch.tensor([0.1, 0.5])).abs().argmin(dim=1)
    assert torch.allclose(per_example, torch.tensor([0.1, 0.5])[nearest], rtol=0.25)
    assert torch.bincount(nearest, minlength=2).min() > 240
    single = NOISES[name](SIGMA)(x, torch.Generator().manual_seed(0)) - x
    assert single.std().item() == pytest.approx(SIGMA, rel=0.02)
    assert torch.equal(NOISES[name](0.0)(x), x)


def test_build_noise_and_aliases() -> None:
    from smoothcert.noise import Gaussian, Laplace, Uniform

    assert (Gaussian, Laplace, Uniform) == (GaussianNoise, LaplaceNoise, UniformNoise)
    for name, cls in NOISES.items():
        noise = build_noise(name, SIGMA)
        assert type(noise) is cls and noise.sigma == SIGMA
    assert LaplaceNoise(SIGMA).scale == pytest.approx(SIGMA / math.sqrt(2))
    assert UniformNoise(SIGMA).scale == pytest.approx(math.sqrt(3) * SIGMA)
    assert GaussianNoise(SIGMA).scale == SIGMA


# ---- Gaussian: the same numbers as before the change (recorded from commit da3b544) ----------


def test_gaussian_stream_draws_the_recorded_numbers() -> None:
    stream = GaussianNoiseStream((3, 4), 0.5, torch.Generator().manual_seed(1234), "cpu")
    samples = torch.cat([stream.take(5), stream.take(30_000)]).flatten(1)
    # Samples 21844 and 21845 straddle the first chunk boundary (21845 samples of 12 elements).
    recorded = {
        0: (-0.0558592826128006, -0.1844339519739151),
        1: (-0.1711968034505844, -0.3560172915458679),
        4: (0.7992488145828247, 0.36218300461769104),
        5: (0.01615534909069538, 0.3072137236595154),
        21844: (0.5045645236968994, -0.08358552306890488),
        21845: (-0.14319118857383728, -0.7957358360290527),
        30004: (0.6632518768310547, -0.738024890422821),
    }
    for index, (first, last) in recorded.items():
        assert samples[index, [0, 11]].tolist() == pytest.approx([first, last], rel=1e-6, abs=1e-7)
    same = GaussianNoise(0.5).stream((3, 4), torch.Generator().manual_seed(1234), "cpu")
    assert torch.equal(same.take(30_005).flatten(1), samples)

    wide = GaussianNoiseStream(
        (3, 32, 32), 0.25, torch.Generator().manual_seed(7), "cpu", torch.float64
    )
    values = wide.take(200).flatten(1)
    got = [values[i, j].item() for i, j in [(0, 0), (84, 3071), (85, 0), (199, 100)]]
    expected = [
        0.016566884916124857,
        0.02645056225357153,
        -0.18869699866020503,
        -0.04202093054979084,
    ]
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_gaussian_training_noise_draws_the_recorded_numbers() -> None:
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    single = GaussianNoise(0.25)(x, torch.Generator().manual_seed(3)).flatten()[[0, 100, 383]]
    levels = GaussianNoise([0.1, 0.5])(x, torch.Generator().manual_seed(3)).flatten()[[0, 100, 383]]
    assert single.tolist() == pytest.approx(
        [0.47709551453590393, 1.068663477897644, 1.2667016983032227]
    )
    assert levels.tolist() == pytest.approx(
        [0.48859214782714844, 1.0096901655197144, 1.0739598274230957]
    )


class _Linear(torch.nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s = z.flatten(1).double().sum(1) - 7.7
        return torch.stack([-s, s], 1).float()


def test_smooth_rows_are_the_recorded_ones() -> None:
    smooth = Smooth(_Linear(), 2, 0.25)
    x = torch.full((1, 4, 4), 0.5)
    rows = [
        smooth.certify(x, 100, 1000, 0.001, 256, torch.Generator().manual_seed(k)) for k in range(3)
    ]
    recorded = [0.034016592030103585, 0.034657909856379954, 0.051472489798691186]
    assert [label for label, _ in rows] == [1, 1, 1]
    assert [radius for _, radius in rows] == pytest.approx(recorded, rel=1e-9)
