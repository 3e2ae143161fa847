"""CenterSmooth: the formulas of Algorithms 1 and 2, the center choice, settings and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from smoothcert import CenterSmooth, build_distance
from smoothcert.certifiers.center import (
    delta1,
    delta2,
    mass_needed,
    output_factor,
    quantile_level,
    smallest_m,
)
from smoothcert.errors import ConfigError
from smoothcert.independence import PROBE_CALLS
from smoothcert.stats.order_statistics import order_statistic_quantile


def linear_map(seed: int = 0, d_in: int = 6, d_out: int = 3):
    matrix = torch.randn(d_out, d_in, generator=torch.Generator().manual_seed(seed))
    return lambda z: z @ matrix.T


def test_formulas_match_the_paper() -> None:
    assert delta1(10_000, 0.005) == pytest.approx(math.sqrt(math.log(400) / 20_000))
    assert delta2(0.48, 10_000, 0.005) == pytest.approx(0.5 - 0.48 + delta1(10_000, 0.005))
    for eps, sigma in [(0.0, 0.25), (0.2, 0.25), (0.5, 0.12)]:
        p = norm.cdf(norm.ppf(0.55) + eps / sigma)
        assert mass_needed(eps, sigma, 0.05) == pytest.approx(p)
        q = p + math.sqrt(math.log(1 / 0.005) / (2 * 10**6))
        assert quantile_level(eps, sigma, 0.05, 10**6, 0.005) == pytest.approx(q)
    assert output_factor(1.0) == 3.0  # 3R for a metric
    assert output_factor(2.0) == 10.0  # 10R for squared distances


@pytest.mark.parametrize("m", [1, 7, 100, 1001])
def test_order_statistic_quantile(m: int) -> None:
    values = torch.rand(m, generator=torch.Generator().manual_seed(m))
    ordered = values.sort().values
    for q in [0.0, 0.1, 0.5, 0.73, 0.999, 1.0]:
        got = order_statistic_quantile(values, q)
        assert got == float(ordered[max(1, math.ceil(q * m)) - 1])
        assert (values <= got).float().mean() >= q  # at least a q fraction at or below it
        assert got in values.tolist()  # an order statistic, never interpolated
    assert order_statistic_quantile(values, 1.0 + 1e-9) == math.inf
    # exact products q * m: 0.3 * 10 is 3.0000000000000004 in floating point, rank stays 3
    assert order_statistic_quantile(torch.arange(10.0), 0.3) == 2.0


def test_smallest_m_is_tight() -> None:
    need = smallest_m(0.5, 0.25, 0.05, 0.005)
    assert quantile_level(0.5, 0.25, 0.05, need, 0.005) <= 1.0
    assert quantile_level(0.5, 0.25, 0.05, need - 1, 0.005) > 1.0
    assert smallest_m(100.0, 0.25, 0.05, 0.005) is None  # p rounds to 1: no m works


def brute_force_center(samples: torch.Tensor) -> tuple[int, float]:
    """Per-sample loop: the sample with the smallest median distance (lower median)."""
    best, best_median = -1, math.inf
    for i in range(len(samples)):
        distances = sorted(float((samples[i] - s).norm()) for s in samples)
        median = distances[(len(samples) + 1) // 2 - 1]
        if median < best_median:
            best, best_median = i, median
    return best, best_median


def test_center_is_the_sample_with_smallest_median_distance() -> None:
    calls: list[torch.Tensor] = []

    def recording(z: torch.Tensor) -> torch.Tensor:
        out = torch.tanh(z[:, :2])
        calls.append(out)
        return out

    smoother = CenterSmooth(recording, "l2", sigma=0.5, n=301, delta=0.2, batch_size=64)
    smoothed = smoother.smooth_details(torch.zeros(4), torch.Generator().manual_seed(0))
    # the independence probe's calls, then a call on the clean input (the output shape)
    first_n = torch.cat(calls[PROBE_CALLS + 1 :])[:301]
    best, median = brute_force_center(first_n)
    assert smoothed.radius == pytest.approx(median, rel=1e-5)
    assert torch.allclose(smoothed.center, first_n[best])
    # high-dimensional mode: the same rule restricted to the first k samples
    calls.clear()
    few = CenterSmooth(recording, "l2", 0.5, n=301, delta=0.2, batch_size=64, candidates=50)
    smoothed = few.smooth_details(torch.zeros(4), torch.Generator().manual_seed(0))
    samples = torch.cat(calls[PROBE_CALLS + 1 :])[:301]
    medians = torch.cdist(samples[:50], samples).kthvalue(151, dim=1).values
    assert smoothed.radius == pytest.approx(float(medians.min()), rel=1e-5)
    assert torch.allclose(smoothed.center, samples[int(medians.argmin())])


def test_results_do_not_depend_on_batch_or_chunk_size() -> None:
    f = linear_map()
    x = torch.rand(6)
    results = []
    for batch_size, chunk in [(1000, 2**24), (37, 1000)]:
        smoother = CenterSmooth(f, "l2", 0.25, n=1200, m=3000, batch_size=batch_size)
        smoother.chunk_elements = chunk
        result = smoother.certify_details(x, [0.1, 0.3], torch.Generator().manual_seed(5))
        results.append([*result.eps_out, result.smoothed.radius, result.smoothed.p_hat])
    assert results[0] == pytest.approx(results[1], rel=1e-5)


def test_memory_budget_switches_to_candidates() -> None:
    smoother = CenterSmooth(linear_map(), "l2", 0.25, n=1200, m=10, memory_bytes=1200 * 8)
    probe = torch.zeros(1, 3)
    assert smoother._num_candidates(probe) < 1200
    assert CenterSmooth(linear_map(), "l2", 0.25, n=1200)._num_candidates(probe) == 1200


def test_abstention_follows_delta_rule() -> None:
    """With delta just above Delta1 the mass check fails about half the time; the center is
    returned exactly when delta >= max(Delta1, Delta2), and eps_out is inf otherwise."""
    f = linear_map(1)
    decisions = []
    for seed in range(30):
        smoother = CenterSmooth(f, "l2", 0.5, n=1200, m=2000, delta=delta1(1200, 0.005) + 0.003)
        result = smoother.certify_details(torch.rand(6), 0.1, torch.Generator().manual_seed(seed))
        s = result.smoothed
        certified = smoother.delta >= max(s.delta1, s.delta2)
        assert (s.center is not None) == certified
        assert (result.eps_out[0] == math.inf) == (not certified)
        decisions.append(certified)
    assert 0 < sum(decisions) < 30


def test_certify_returns_one_eps_out_per_eps_in() -> None:
    smoother = CenterSmooth(linear_map(), "l2", 0.25, n=3000, m=5000)
    center, eps_out = smoother.certify(torch.rand(6), 0.2, torch.Generator().manual_seed(0))
    assert center.shape == (3,) and isinstance(eps_out, float) and eps_out > 0
    _, several = smoother.certify(torch.rand(6), [0.0, 0.2, 0.4], torch.Generator().manual_seed(0))
    assert several == sorted(several) and len(several) == 3
    # q > 1 at the largest eps_in only: that one gets no certificate, the others do
    _, mixed = smoother.certify(torch.rand(6), [0.1, 2.0], torch.Generator().manual_seed(0))
    assert math.isfinite(mixed[0]) and mixed[1] == math.inf


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"delta": 0.0}, "delta=0.0 must lie in"),
        ({"delta": 0.5}, "delta=0.5 must lie in"),
        ({"alpha1": 0.0}, "alpha1=0.0 must lie in"),
        ({"alpha2": 1.0}, "alpha2=1.0 must lie in"),
        ({"n": 0}, "n"),
        ({"m": 0}, "m"),
        ({"gamma": 0.5}, "gamma=0.5 must be >= 1"),
        ({"distance": "cosine", "gamma": 1.0}, "below the cosine distance's own gamma"),
        ({"distance": "hamming"}, "not a known distance"),
        ({"n": 500}, r"n=500 can never pass the mass check.*use n >= 1199"),
    ],
)
def test_bad_settings_are_one_line_errors(settings: dict, message: str) -> None:
    arguments = {"distance": "l2", "sigma": 0.25, "n": 2000} | settings
    with pytest.raises(ConfigError, match=message) as error:
        CenterSmooth(linear_map(), **arguments)
    assert "\n" not in str(error.value)


def test_uncertifiable_settings_are_refused_before_sampling() -> None:
    calls = []

    def counting(z: torch.Tensor) -> torch.Tensor:
        calls.append(len(z))
        return z

    smoother = CenterSmooth(counting, "l2", 0.25, n=2000, m=100)
    need = smallest_m(0.4, 0.25, 0.05, 0.005)
    with pytest.raises(ConfigError, match=f"m=100 cannot certify any eps_in.*use m >= {need}"):
        smoother.certify(torch.zeros(3), [0.6, 0.4])
    with pytest.raises(ConfigError, match="eps_in must be >= 0"):
        smoother.certify(torch.zeros(3), -0.1)
    with pytest.raises(ConfigError, match="lower eps_in or raise sigma"):
        CenterSmooth(counting, "l2", 0.25, n=2000).certify(torch.zeros(3), 50.0)
    assert calls == []


def test_non_finite_outputs_raise() -> None:
    smoother = CenterSmooth(lambda z: z / 0.0 * 0.0, "l2", 0.25, n=1200, m=100)
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        smoother.smooth(torch.zeros(3))


@pytest.mark.parametrize("distance", ["jaccard_labels", "jaccard_box", "tv", "cosine"])
def test_structured_outputs_certify(distance: str) -> None:
    """Label maps (integers), boxes and images go through both algorithms on one code path."""
    image = torch.zeros(1, 8, 8)
    image[:, 2:6, 2:6] = 1.0

    def segment(z: torch.Tensor) -> torch.Tensor:
        return (z[:, 0] > 0.5).long() + (z[:, 0] > 1.2).long()

    def box(z: torch.Tensor) -> torch.Tensor:
        weights = (z[:, 0] > 0.5).float()
        rows, cols = weights.sum(2) > 0, weights.sum(1) > 0
        index = torch.arange(8.0)
        first = lambda mask: torch.where(mask, index, 8.0).min(1).values  # noqa: E731
        last = lambda mask: torch.where(mask, index + 1, 0.0).max(1).values  # noqa: E731
        return torch.stack([first(cols), first(rows), last(cols), last(rows)], dim=1) / 8

    f = {"jaccard_labels": segment, "jaccard_box": box}.get(distance, lambda z: z.clamp(0, 1))
    metric = build_distance(distance, num_classes=3)
    smoother = CenterSmooth(f, metric, 0.1, n=1500, m=3000, batch_size=500)
    result = smoother.certify_details(image, [0.05, 0.1], torch.Generator().manual_seed(0))
    assert result.center is not None
    assert result.center.shape == f(image[None])[0].shape
    assert 0 <= result.eps_out[0] <= result.eps_out[1] < math.inf
    if distance.startswith("jaccard"):
        assert result.eps_out[1] <= 3.0  # Jaccard distances are at most 1, so R <= 1
