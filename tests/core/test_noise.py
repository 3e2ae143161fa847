"""Noise streams: independent of how they are consumed, seeded per example, and N(0, sigma^2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smoothcert import ConfigError, GaussianNoise, GaussianNoiseStream, example_generator
from smoothcert.noise import example_seed


def _stream(shape, sigma=0.5, seed=0, dtype=torch.float32) -> GaussianNoiseStream:
    generator = torch.Generator().manual_seed(seed)
    return GaussianNoiseStream(shape, sigma, generator, "cpu", dtype)


def _splits(total: int, seed: int) -> list[int]:
    """Random split sizes (some 1, some large) summing to ``total``."""
    rng = np.random.default_rng(seed)
    sizes, left = [], total
    while left > 0:
        size = int(min(left, rng.choice([1, 2, 3, int(rng.integers(1, total + 1))])))
        sizes.append(size)
        left -= size
    return sizes


# (shape, total samples). Totals span several chunks of the stream; (3, 300, 300) has more elements
# than a chunk, so each chunk holds a single sample.
SHAPES = [((4,), 150_000), ((1, 4, 4), 40_000), ((3, 32, 32), 400), ((3, 300, 300), 5)]


@pytest.mark.parametrize(("shape", "total"), SHAPES)
def test_take_is_independent_of_split_sizes(shape: tuple[int, ...], total: int) -> None:
    whole = _stream(shape).take(total)
    assert whole.shape == (total, *shape)
    assert whole.dtype == torch.float32
    split_plans = [
        [1] * min(total, 7) + ([total - 7] if total > 7 else []),
        _splits(total, seed=1),
        _splits(total, seed=2),
        [total // 2, 0, total - total // 2, 0],  # empty takes are allowed and consume nothing
    ]
    for sizes in split_plans:
        assert sum(sizes) == total
        stream = _stream(shape)
        parts = [stream.take(m) for m in sizes]
        assert all(tuple(p.shape) == (m, *shape) for p, m in zip(parts, sizes, strict=True))
        torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=0)


@pytest.mark.parametrize(("shape", "total"), SHAPES[:3])
def test_take_never_repeats_a_sample(shape: tuple[int, ...], total: int) -> None:
    # A leftover that is replayed or skipped incorrectly shows up as duplicate rows.
    stream = _stream(shape)
    samples = torch.cat([stream.take(m) for m in _splits(total, seed=3)]).reshape(total, -1)
    assert torch.unique(samples, dim=0).shape[0] == total


def test_take_float64_is_split_independent() -> None:
    whole = _stream((2, 3, 5), dtype=torch.float64).take(20_000)
    stream = _stream((2, 3, 5), dtype=torch.float64)
    parts = torch.cat([stream.take(m) for m in _splits(20_000, seed=4)])
    assert parts.dtype == torch.float64
    torch.testing.assert_close(parts, whole, rtol=0, atol=0)


def test_take_returns_fresh_tensors() -> None:
    # Callers add x in place (stream.take(m).add_(x)); later takes must not alias earlier outputs.
    stream = _stream((1, 4, 4))
    first = stream.take(10)
    copy = first.clone()
    first.add_(100.0)
    second = stream.take(10)
    assert second.abs().max() < 50
    assert not torch.equal(copy, second)


@pytest.mark.parametrize("sigma", [0.12, 0.5, 1.0])
def test_stream_is_gaussian_with_std_sigma(sigma: float) -> None:
    samples = _stream((1, 8, 8), sigma=sigma, seed=11).take(20_000).double()
    flat = samples.flatten()
    count = flat.numel()
    # Mean within 5 standard errors of 0; std within 5 standard errors (~sigma / sqrt(2N)) of sigma.
    assert abs(flat.mean().item()) < 5 * sigma / math.sqrt(count)
    assert abs(flat.std().item() - sigma) < 5 * sigma / math.sqrt(2 * count)
    # Fourth moment of a Gaussian: 3 sigma^4 (a uniform or clipped draw would fail this).
    kurtosis = (flat**4).mean().item() / flat.var().item() ** 2
    assert kurtosis == pytest.approx(3.0, abs=0.05)
    # Different pixels and consecutive samples are uncorrelated.
    per_pixel = samples.reshape(samples.shape[0], -1)
    corr = torch.corrcoef(per_pixel.T)
    off_diagonal = corr - torch.eye(corr.shape[0], dtype=corr.dtype)
    assert off_diagonal.abs().max() < 5 / math.sqrt(samples.shape[0])
    lag = torch.corrcoef(torch.stack([per_pixel[:-1, 0], per_pixel[1:, 0]]))[0, 1]
    assert abs(lag) < 5 / math.sqrt(samples.shape[0])


def test_example_generator_is_deterministic_per_example() -> None:
    def draw(seed: int, index: int) -> torch.Tensor:
        return torch.randn(1000, generator=example_generator(seed, index))

    assert torch.equal(draw(0, 5), draw(0, 5))
    assert torch.equal(draw(123, 0), draw(123, 0))
    reference = draw(0, 5)
    for other in [(0, 4), (0, 6), (1, 5), (5, 0), (0, 5_000_000)]:
        noise = draw(*other)
        assert not torch.equal(noise, reference), other
        # Unrelated, not just shifted or scaled copies.
        assert abs(torch.corrcoef(torch.stack([noise, reference]))[0, 1]) < 0.2, other


def test_example_seeds_are_distinct_and_in_range() -> None:
    seeds = {example_seed(seed, index) for seed in range(4) for index in range(2000)}
    assert len(seeds) == 4 * 2000
    assert all(0 <= s < 2**63 for s in seeds)


def test_gaussian_noise_module() -> None:
    x = torch.rand(2000, 3, 4, 4)
    noisy = GaussianNoise(0.25)(x, generator=torch.Generator().manual_seed(0))
    again = GaussianNoise(0.25)(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)
    delta = (noisy - x).double()
    assert abs(delta.mean().item()) < 5 * 0.25 / math.sqrt(delta.numel())
    assert delta.std().item() == pytest.approx(0.25, rel=0.01)
    # No clipping: noise is added in [0, 1] pixel space and may leave it.
    assert noisy.min() < 0 and noisy.max() > 1
    assert torch.equal(GaussianNoise(0.0)(x), x)


@pytest.mark.parametrize("sigma", [-0.1, -1.0])
def test_gaussian_noise_rejects_negative_sigma(sigma: float) -> None:
    with pytest.raises(ConfigError):
        GaussianNoise(sigma)


def test_noise_levels_draw_one_level_per_example():
    noise = GaussianNoise([0.5, 0.1, 0.25, 0.1])
    assert noise.sigma == [0.1, 0.25, 0.5]
    x = torch.zeros(600, 3, 16, 16)
    per_example = noise(x, torch.Generator().manual_seed(0)).flatten(1).std(dim=1)
    nearest = (per_example[:, None] - torch.tensor([0.1, 0.25, 0.5])).abs().argmin(dim=1)
    assert torch.allclose(per_example, torch.tensor([0.1, 0.25, 0.5])[nearest], rtol=0.1)
    assert torch.bincount(nearest, minlength=3).min() > 150  # each level about a third
    with pytest.raises(ConfigError, match="sigma is an empty list"):
        GaussianNoise([])
    with pytest.raises(ConfigError):
        GaussianNoise([0.25, -0.1])
