"""DistSPT: the radius formula, its false-certificate rate, and the certifier on known models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import beta as beta_dist
from scipy.stats import norm as normal
from statsmodels.stats.proportion import proportion_confint

from smoothcert.certifiers.distspt import ABSTAIN, DistSPT, distspt_radius
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise
from smoothcert.stats.binomial import clopper_pearson_lower
from smoothcert.transforms import Rotation


def test_radius_formula_and_the_papers_more_conservative_one() -> None:
    sigma = 30.0
    for p, rho in [(0.99, 0.001), (0.95, 0.05), (0.9, 0.1), (0.8, 0.2)]:
        radius = distspt_radius(p, rho, sigma)
        assert radius == pytest.approx(sigma * (normal.ppf(p) - normal.ppf(0.5 + rho)))
        # tight: the worst (half-line) set keeps exactly 1/2 + rho of its mass at the radius
        assert normal.cdf(normal.ppf(p) - radius / sigma) == pytest.approx(0.5 + rho)
        paper = sigma * normal.ppf(p - rho)
        assert radius >= paper - 1e-9
    assert distspt_radius(0.6, 0.1, sigma) == 0.0  # p <= 1/2 + rho: nothing
    assert distspt_radius(0.99, 0.5, sigma) == 0.0


def test_false_certificate_rate_is_within_alpha() -> None:
    """Trials on the worst case: angle set A a half-line of mass p_A, error above E with
    probability rho_true. A certificate at radius R is false when the attacked mass
    Phi(Phi^-1(p_A) - R / sigma) - rho_true is at most 1/2. Counts are simulated from the known
    probabilities (vectorized), with large alphas so that the rate is measurable."""
    rng = np.random.default_rng(0)
    trials, n_gamma, n_error, sigma = 4000, 100, 100, 30.0
    alpha_gamma, alpha_error = 0.05, 0.05
    p_true = rng.uniform(0.8, 0.999, trials)
    rho_true = rng.uniform(0.0, 0.1, trials)
    counts = rng.binomial(n_gamma, p_true)
    within = rng.binomial(n_error, 1 - rho_true)
    p_lower = np.where(counts > 0, beta_dist.ppf(alpha_gamma, counts, n_gamma - counts + 1), 0.0)
    rho = 1 - np.where(within > 0, beta_dist.ppf(alpha_error, within, n_error - within + 1), 0.0)
    radius = distspt_radius(p_lower, rho, sigma)
    kept = normal.cdf(normal.ppf(p_true) - radius / sigma) - rho_true
    false = (radius > 0) & (kept <= 0.5)
    rate, allowed = false.mean(), alpha_gamma + alpha_error
    assert rate <= allowed + 3 * np.sqrt(allowed / trials)
    assert (radius > 0).mean() > 0.5  # the test is not vacuous: most trials certify
    # the same trials with the bounds dropped (plug-in estimates) certify falsely far more often
    naive = distspt_radius(counts / n_gamma, 1 - within / n_error, sigma)
    assert (
        (naive > 0) & (normal.cdf(normal.ppf(p_true) - naive / sigma) - rho_true <= 0.5)
    ).mean() > 2 * allowed


def test_clopper_pearson_matches_statsmodels_for_the_inner_split() -> None:
    alpha = 0.005 / 100
    for k in (480, 495, 500):
        ours = clopper_pearson_lower(k, 500, alpha)
        assert ours == pytest.approx(proportion_confint(k, 500, alpha=2 * alpha, method="beta")[0])


class Constant(torch.nn.Module):
    def __init__(self, cls: int) -> None:
        super().__init__()
        self.cls = cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.full((x.shape[0],), self.cls), 4).float()


class Coin(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape[0], 4)


def _digit() -> torch.Tensor:
    x = torch.zeros(1, 16, 16)
    x[0, 4:12, 7:9] = 1.0
    return x


SMALL = {"n0": 2, "n0_eps": 4, "n_gamma": 20, "n_eps": 50, "n_error": 40, "batch_size": 256}


def test_constant_classifier_is_certified_to_the_formula() -> None:
    rotation = Rotation(GaussianNoise(30.0))
    certifier = DistSPT(Constant(2), 4, rotation, (-20.0, 20.0), error_bound=2.0, sigma_eps=2.0)
    result = certifier.certify(_digit(), **SMALL, generator=torch.Generator().manual_seed(0))
    assert result.prediction == 2 and result.count == 20 and result.error_within == 40
    p_lower = clopper_pearson_lower(20, 20, 0.004)
    rho = 1 - clopper_pearson_lower(40, 40, 0.001)
    assert result.radius == pytest.approx(min(distspt_radius(p_lower, rho, 30.0), 20.0))


def test_inner_robustness_below_the_error_bound_counts_nothing() -> None:
    rotation = Rotation(GaussianNoise(30.0))
    # the inner radius with 50 of 50 samples is 0.25 * Phi^-1(CP) < 1.0 = E: no sample counts
    certifier = DistSPT(Constant(1), 4, rotation, (-20.0, 20.0), error_bound=1.0, sigma_eps=0.25)
    result = certifier.certify(_digit(), **SMALL, generator=torch.Generator().manual_seed(0))
    assert result.count == 0 and result.prediction == ABSTAIN and result.radius == 0.0
    coin = DistSPT(Coin(), 4, rotation, (-20.0, 20.0), error_bound=2.0, sigma_eps=4.0)
    with pytest.raises(ConfigError, match="is random") as error:  # the independence probe
        coin.certify(_digit(), **SMALL)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": (10.0, 10.0)}, "empty"),
        ({"gamma": (-120.0, 90.0)}, "180"),
        ({"error_bound": 0.0}, "error_bound"),
        ({"sigma_eps": -1.0}, "sigma_eps"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match) as error:
        DistSPT(Constant(0), 4, Rotation(GaussianNoise(30.0)), **kwargs)
    assert "\n" not in str(error.value)


def test_distspt_refuses_other_perturbations_and_non_images() -> None:
    from smoothcert.transforms import Brightness

    with pytest.raises(ConfigError, match="rotation"):
        DistSPT(Constant(0), 4, Brightness(GaussianNoise(0.1)))
    certifier = DistSPT(Constant(0), 4, Rotation(GaussianNoise(30.0)))
    with pytest.raises(ConfigError, match="images"):
        certifier.certify(torch.rand(16), **SMALL)


class RecordingRotation(Rotation):
    """A Rotation that records the draws its parameters come from."""

    def __init__(self, noise: GaussianNoise) -> None:
        super().__init__(noise)
        self.draws: list[torch.Tensor] = []

    def params_from(self, draws: torch.Tensor) -> torch.Tensor:
        self.draws.append(draws.clone())
        return super().params_from(draws)


def test_angles_are_the_rotations_noise_stream() -> None:
    """n0, then n_error, then n_gamma angles: the next draws of the rotation's own noise stream
    (set up by the sampler on the example's generator), not draws made by hand."""
    rotation = RecordingRotation(GaussianNoise(30.0))
    certifier = DistSPT(Constant(2), 4, rotation, (-20.0, 20.0), error_bound=2.0, sigma_eps=2.0)
    certifier.certify(_digit(), **SMALL, generator=torch.Generator().manual_seed(4))
    stream = GaussianNoise(30.0).stream((1,), torch.Generator().manual_seed(4), "cpu")
    sizes = [SMALL["n0"], SMALL["n_error"], SMALL["n_gamma"]]
    assert [len(d) for d in rotation.draws] == sizes
    assert torch.equal(torch.cat(rotation.draws), stream.take(sum(sizes)))


class Upright(torch.nn.Module):
    """Class 0 while the digit's vertical bar keeps its mass (upright), else class 1: the answer
    depends on the angle and on the noise."""

    def __init__(self) -> None:
        super().__init__()
        self.threshold = torch.nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, 0, 4:12, 7:9].flatten(1).sum(1) - self.threshold
        return torch.stack([s, -s, 0 * s, 0 * s], 1)


def test_records_do_not_depend_on_the_batch_size_and_any_callable_certifies() -> None:
    rotation = Rotation(GaussianNoise(30.0))
    net = Upright()
    results = []
    for base, batch_size in ((net, 256), (net, 37), (lambda z: net(z), 256)):
        certifier = DistSPT(base, 4, rotation, (-20.0, 20.0), error_bound=0.2, sigma_eps=0.5)
        settings = {**SMALL, "batch_size": batch_size}
        result = certifier.certify(_digit(), **settings, generator=torch.Generator().manual_seed(1))
        results.append((result.prediction, result.count, result.radius, result.rho))
    assert results[0] == results[1] == results[2]
    assert results[0][1] > 0  # the test is not vacuous: some outer angles count
