"""Median smoothing draws through the sampler: ``certify_example(x, seed, index)`` (the
callback's entry point) reproduces the callback's former stream set-up bit for bit, the NaN
check is the sampler's, and the perturbation reaches the sampler."""

from __future__ import annotations

import pytest
import torch

from smoothcert.certifiers.median import PercentileSmooth
from smoothcert.certifiers.median_expectation import (
    expectation_bounds,
    expectation_certificate,
    mean_interval,
)
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise, example_generator
from smoothcert.transforms import Brightness, Rotation


def first_four(z: torch.Tensor) -> torch.Tensor:
    return z.flatten(1)[:, :4] * 2


def smoother(**settings) -> PercentileSmooth:
    options = {"eps": [0.1, 0.3], "n": 500, "alpha": 0.01, "batch_size": 64, **settings}
    return PercentileSmooth(first_four, GaussianNoise(0.25), **options)


@pytest.mark.parametrize("batch_size", [64, 1000])
def test_certify_example_is_the_callbacks_former_set_up(batch_size: int) -> None:
    """The median callback set up ``noise.stream(x.shape, example_generator(seed, idx), ...)``
    itself and seeded the rounding from ``generator.initial_seed() + 1``: the entry point gives
    the same values, certificate and rounding generator."""
    certifier = smoother(batch_size=batch_size)
    x = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(1))
    got = certifier.certify_example(x, 3, 5)
    generator = example_generator(3, 5)
    draws = GaussianNoise(0.25).stream(tuple(x.shape), generator, "cpu", x.dtype).take(500)
    values = first_four(draws.add_(x)).sort(dim=0).values
    assert torch.equal(got.values, values)
    expected = certifier.certify_sorted(values)
    assert torch.equal(got.certificate.lower, expected.lower)
    assert torch.equal(got.certificate.upper, expected.upper)
    rounding = torch.Generator().manual_seed(generator.initial_seed() + 1)
    assert torch.equal(torch.rand(8, generator=got.rounding), torch.rand(8, generator=rounding))
    again = certifier.certify(x, example_generator(3, 5))
    assert torch.equal(again.estimate, got.certificate.estimate)


def test_expectation_certificate_is_the_callbacks_computation() -> None:
    certifier = smoother()
    x = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(2))
    example = certifier.certify_example(x, 0, 0)
    values = example.values.clamp(-1, 3)
    rounding = torch.Generator().manual_seed(11)
    mean, lower, upper = expectation_certificate(certifier, values, -1, 3, generator=rounding)
    alpha = certifier.alpha  # per_coordinate: alpha / 2 per bound, doubled per interval
    low, high = mean_interval(values.T, -1, 3, alpha, generator=torch.Generator().manual_seed(11))
    want = expectation_bounds(low, high, -1, 3, certifier.noise, certifier.eps)
    assert (lower == want[0]).all() and (upper == want[1]).all()
    assert (mean == values.double().mean(0).numpy()).all() and lower.shape == (4, 2)


def test_nan_outputs_raise_in_the_sampler() -> None:
    nan = PercentileSmooth(lambda z: z.flatten(1) * float("nan"), GaussianNoise(0.25), 0.1, n=200)
    with pytest.raises(FloatingPointError, match="NaN"):
        nan.certify(torch.rand(1, 2, 2), torch.Generator())
    inf = PercentileSmooth(lambda z: z.flatten(1) / 0.0, GaussianNoise(0.25), 0.1, n=200)
    assert inf.certify(torch.rand(1, 2, 2) + 0.1, torch.Generator()).upper.isinf().all()


def test_the_perturbation_reaches_the_sampler() -> None:
    """Brightness: each sample is x + b, so every pixel's order statistics are x's plus those
    of the shifts, one set for all pixels."""
    noise = GaussianNoise(0.25)
    shifted = PercentileSmooth(
        lambda z: z.flatten(1), noise, 0.1, n=300, perturbation=Brightness(noise)
    )
    x = torch.rand(1, 2, 2, generator=torch.Generator().manual_seed(0))
    values = shifted.sorted_outputs(x, shifted.stream_for(x, torch.Generator().manual_seed(1)))
    offsets = values - x.flatten()
    assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets), atol=1e-6)
    with pytest.raises(ConfigError, match="does not compose"):
        rotation = Rotation(GaussianNoise(30.0))
        PercentileSmooth(lambda z: z.flatten(1), rotation.noise, 1.0, perturbation=rotation)
