"""Center smoothing draws through the sampler: the draw order and seeding it pins (bit for bit),
and the perturbation reaching the sampler."""

from __future__ import annotations

import pytest
import torch

from smoothcert import CenterSmooth
from smoothcert.certifiers.center import min_median_sample, quantile_level
from smoothcert.distances import build_distance
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise
from smoothcert.stats.order_statistics import order_statistic_quantile
from smoothcert.transforms import Brightness, Rotation


def identity(z: torch.Tensor) -> torch.Tensor:
    return z.flatten(1)


@pytest.mark.parametrize("batch_size", [64, 1000])
def test_draws_are_the_streams_in_order(batch_size: int) -> None:
    """With f the identity the outputs are x + the noise stream's draws: the first n choose the
    center, the next n check its mass, the next m give the certificate, whatever the batch size.
    Recomputed here from ``GaussianNoise.stream`` on the same generator, bit for bit."""
    n, m, sigma = 300, 2000, 0.25
    x = torch.rand(1, 3, 3, generator=torch.Generator().manual_seed(3))
    smoother = CenterSmooth(identity, "l2", sigma, n=n, m=m, delta=0.2, batch_size=batch_size)
    result = smoother.certify_details(x, [0.05, 0.1], torch.Generator().manual_seed(7))
    stream = GaussianNoise(sigma).stream(tuple(x.shape), torch.Generator().manual_seed(7), "cpu")
    first, second, third = (identity(stream.take(k).add_(x)) for k in (n, n, m))
    distance = build_distance("l2")
    best, radius = min_median_sample(distance, distance.embed(first))
    center = first[best]
    assert torch.equal(result.center, center) and result.smoothed.radius == radius
    inside = (distance.paired(center.expand(n, -1), second) <= radius).sum()
    assert result.smoothed.p_hat == int(inside) / n
    distances = distance.paired(center.expand(m, -1), third)
    assert result.quantile_radius[0] > 0
    for eps_in, got in zip((0.05, 0.1), result.quantile_radius, strict=True):
        q = quantile_level(eps_in, sigma, smoother.delta, m, smoother.alpha2)
        assert got == order_statistic_quantile(distances, q)


def test_the_perturbation_reaches_the_sampler() -> None:
    """Brightness draws one shift per sample: every output of the identity is x + b, so the
    center minus x is one number over all pixels; additive noise moves each pixel apart."""
    x = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(0))
    settings = {"n": 200, "delta": 0.2, "batch_size": 64}
    brightness = Brightness(GaussianNoise(0.25))
    shifted = CenterSmooth(identity, "l2", 0.25, perturbation=brightness, **settings)
    center = shifted.smooth(x, torch.Generator().manual_seed(1)) - x.flatten()
    assert torch.allclose(center, center[0].expand_as(center), atol=1e-6)
    assert float(center[0].abs()) > 1e-3  # a real shift, not the clean input
    additive = CenterSmooth(identity, "l2", 0.25, **settings).smooth(x, torch.Generator())
    assert float((additive - x.flatten()).std()) > 0.05


def test_perturbation_settings_are_one_line_errors() -> None:
    rotation = Rotation(GaussianNoise(30.0))
    brightness = Brightness(GaussianNoise(0.25))
    cases = [
        ({"sigma": 30.0, "perturbation": rotation}, "does not compose"),
        ({"sigma": 0.5, "perturbation": brightness}, "differs from perturbation=brightness"),
        ({"sigma": 0.25, "perturbation": brightness, "noise": "gaussian"}, "leave noise unset"),
    ]
    for settings, message in cases:
        with pytest.raises(ConfigError, match=message) as error:
            CenterSmooth(identity, "l2", n=200, delta=0.2, **settings)
        assert "\n" not in str(error.value)


def test_input_range_is_checked_by_the_sampler_set_up() -> None:
    smoother = CenterSmooth(identity, "l2", 0.25, n=200, delta=0.2, input_range=(0.0, 1.0))
    with pytest.raises(ConfigError, match=r"center smoothing input"):
        smoother.smooth(torch.full((1, 2, 2), 2.0))
    with pytest.raises(ConfigError, match=r"\[C, H, W\]"):
        smoother.smooth(torch.rand(4))
    assert CenterSmooth(identity, "l2", 0.25, n=200, delta=0.2).smooth(torch.rand(4)) is not None
