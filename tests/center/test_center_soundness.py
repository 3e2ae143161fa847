"""Center smoothing keeps its promises: each bound, and the whole certificate, fails at most at the
stated rate over many trials on base functions whose output distribution is known."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binom, norm

from smoothcert import CenterSmooth
from smoothcert.certifiers.center import delta1, quantile_level
from smoothcert.stats.order_statistics import order_statistic_quantile


def allowed_failures(trials: int, rate: float) -> int:
    """Largest failure count consistent with ``rate`` (one-sided, level 0.001)."""
    return int(binom.ppf(0.999, trials, rate))


def test_quantile_radius_holds_the_mass_at_rate_alpha2() -> None:
    """Lemma 2: the ceil(q m)-th smallest of m distances bounds a ball of true mass >= p, except
    with probability alpha2. Distances are |N(0, 1)| (true CDF 2 Phi(r) - 1). Without the DKW
    slack (q = p) the same check fails about half the time, so the test can tell."""
    trials, m, alpha2, sigma = 2000, 300, 0.2, 1.0
    generator = torch.Generator().manual_seed(0)
    distances = torch.randn(trials, m, generator=generator, dtype=torch.float64).abs()
    q = quantile_level(0.3, sigma, 0.1, m, alpha2)
    p = norm.cdf(norm.ppf(0.6) + 0.3)
    radii = torch.tensor([order_statistic_quantile(row, q) for row in distances])
    failures = int((2 * norm.cdf(radii.numpy()) - 1 < p).sum())
    assert failures <= allowed_failures(trials, alpha2), failures
    naive = torch.tensor([order_statistic_quantile(row, p) for row in distances])
    naive_failures = int((2 * norm.cdf(naive.numpy()) - 1 < p).sum())
    assert naive_failures > allowed_failures(trials, alpha2), naive_failures


def test_mass_check_lower_bound_holds_at_rate_alpha1() -> None:
    """Algorithm 1's Hoeffding step: the true mass of B(center, r) is >= p_hat - Delta1 except
    with probability alpha1 / 2. Base function: the identity on R, output N(x, sigma^2)."""
    trials, n, alpha1, sigma, x = 400, 400, 0.2, 0.5, 0.3
    smoother = CenterSmooth(lambda z: z, "l2", sigma, n=n, m=1, delta=0.4, alpha1=alpha1)
    failures = naive_failures = 0
    for seed in range(trials):
        s = smoother.smooth_details(torch.tensor([x]), torch.Generator().manual_seed(seed))
        assert s.center is not None  # delta = 0.4 leaves room for any sensible p_hat
        center = float(s.center)
        true_mass = norm.cdf(center + s.radius, x, sigma) - norm.cdf(center - s.radius, x, sigma)
        failures += true_mass < s.p_hat - delta1(n, alpha1)
        naive_failures += true_mass < s.p_hat
    assert failures <= allowed_failures(trials, alpha1 / 2), failures
    assert naive_failures > allowed_failures(trials, alpha1 / 2), naive_failures


def steepest_direction(f, x: torch.Tensor) -> torch.Tensor:
    """Unit input direction of fastest output change at x (top right singular vector of J)."""
    jacobian = torch.autograd.functional.jacobian(lambda v: f(v[None])[0], x)
    return torch.linalg.svd(jacobian).Vh[0]


@pytest.mark.slow  # a statistical test of several seconds
@pytest.mark.parametrize("kind", ["linear", "tanh"])
def test_certificate_bounds_the_smoothed_output_change(kind: str) -> None:
    """Certify x, then smooth x' = x + eps_in u for random unit u and for the steepest direction
    (both signs): d(smoothed(x), smoothed(x')) > eps_out may happen in at most an
    alpha1 + alpha2 fraction of trials (each x' smoothing may also fail with alpha1)."""
    d_in, d_out, sigma, eps_in = 8, 3, 0.5, 0.5
    alpha1 = alpha2 = 0.1
    weights = torch.randn(d_out, d_in, generator=torch.Generator().manual_seed(1))
    if kind == "linear":

        def f(z: torch.Tensor) -> torch.Tensor:
            return z @ weights.T
    else:

        def f(z: torch.Tensor) -> torch.Tensor:
            return torch.tanh(z @ weights.T / 2) * 3

    settings = {"n": 600, "m": 2000, "delta": 0.15, "alpha1": alpha1, "alpha2": alpha2}
    smoother = CenterSmooth(f, "l2", sigma, **settings)
    trials, violated, certified, slack = 120, 0, 0, []
    for seed in range(trials):
        rng = torch.Generator().manual_seed(10_000 + seed)
        x = torch.randn(d_in, generator=rng)
        result = smoother.certify_details(x, eps_in, rng)
        if result.center is None:
            continue
        certified += 1
        eps_out = result.eps_out[0]
        steep = steepest_direction(f, x)
        directions = [steep, -steep] + [v / v.norm() for v in torch.randn(3, d_in, generator=rng)]
        moves = []
        for u in directions:
            other = smoother.smooth(x + eps_in * u, rng)
            if other is not None:
                moves.append(float((other - result.center).norm()))
        violated += max(moves, default=0.0) > eps_out
        slack.append(max(moves, default=0.0) / eps_out)
    assert certified >= trials * 0.8, f"too many abstentions: {certified}/{trials}"
    assert violated <= allowed_failures(certified, alpha1 + alpha2), violated
    # the certificate is informative: it is finite and not absurdly loose for this map
    mean_slack = sum(slack) / len(slack)
    assert 0 < mean_slack < 1 and math.isfinite(eps_out), mean_slack
    print(f"{kind}: {violated}/{certified} violations, mean max move / eps_out {mean_slack:.3f}")
