"""Certificates of the smoothing noises against independent computations.

Radius formulas. For a shift delta, the Neyman-Pearson lemma says that among all sets of mass p
under X (the noise), the one keeping the least mass under X + delta collects the points where the
likelihood ratio pdf(z - delta) / pdf(z) is smallest. ``_worst_mass`` computes that numerically in
one dimension: it cuts the line into cells, takes each cell's exact mass under X and under
X + delta from scipy.stats CDFs, sorts the cells by the ratio of the two and fills mass p in that
order (the last cell in part). Nothing in it knows a closed form or the monotone-ratio argument.
The true radius for a lower bound p on p_A is the largest shift that keeps worst-case mass >= 1/2
(``_oracle_radius``, by bisection). The reductions to one dimension:

- Gaussian l2: the worst case depends on ||delta||_2 only, so the 1-D shift r is the l2 radius.
  l1: the l1 ball of radius r reaches l2 length r (at a vertex): the same radius. linf: the cube
  of half-width r reaches l2 length r sqrt(d) (at a corner): 1-D shift r sqrt(d).
- Laplace l1: Teng et al. show the worst l1 shift is along one axis: the 1-D problem.
- Uniform: a shift leaves the cube's mass outside the shifted cube where the ratio is 0, so that
  mass ``1 - prod_i P(U_i + delta_i in [-lambda, lambda])`` is lost first; the loss is largest at
  the vertex r e_1 of the l1 ball (1-D problem) and at the corner (r, ..., r) of the linf ball,
  where the product is ``P(U + r in [-lambda, lambda])^d`` (scipy.stats.uniform).

The distributions' scales come from scipy: the ones whose standard deviation is sigma.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import cache

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.optimize import brentq
from statsmodels.stats.proportion import proportion_confint
from torch import Tensor, nn

from smoothcert import ABSTAIN, ConfigError, Smooth
from smoothcert.noise import GaussianNoise, LaplaceNoise, Noise, UniformNoise

SIGMA = 0.25
NOISES: dict[str, type[Noise]] = {
    "gaussian": GaussianNoise,
    "laplace": LaplaceNoise,
    "uniform": UniformNoise,
}
PAIRS = [
    ("gaussian", "l2"),
    ("gaussian", "l1"),
    ("gaussian", "linf"),
    ("laplace", "l1"),
    ("uniform", "l1"),
    ("uniform", "linf"),
]
P_GRID = (0.55, 0.7, 0.9, 0.99, 0.999)
DIMS = (1, 4, 784)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Each certification draws a 2^18-element chunk; on a busy machine, elementwise ops split
    over threads wait for each other (Laplace: ~10x slower with 2 threads on 2 shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _scipy_noise(name: str) -> stats.rv_continuous:
    """The 1-D scipy distribution of one noise coordinate with standard deviation SIGMA."""
    dist = {
        "gaussian": stats.norm(scale=SIGMA),
        "laplace": stats.laplace(scale=SIGMA / math.sqrt(2)),
        "uniform": stats.uniform(loc=-math.sqrt(3) * SIGMA, scale=2 * math.sqrt(3) * SIGMA),
    }[name]
    assert dist.std() == pytest.approx(SIGMA, rel=1e-12)
    return dist


def _worst_mass(name: str, p: float, shift: float, cells: int = 100_001) -> float:
    """Least mass under X + shift of any set of mass p under X (numerical Neyman-Pearson)."""
    dist = _scipy_noise(name)
    low, high = dist.ppf(1e-15) - 1e-9, dist.ppf(1 - 1e-15) + shift + 1e-9
    edges = np.linspace(low, high, cells + 1)
    mass0, mass1 = np.diff(dist.cdf(edges)), np.diff(dist.cdf(edges - shift))
    keep = mass0 > 0
    mass0, mass1 = mass0[keep], mass1[keep]
    order = np.argsort(mass1 / mass0, kind="stable")
    mass0, mass1 = mass0[order], mass1[order]
    filled = np.cumsum(mass0)
    k = int(np.searchsorted(filled, p))
    before = filled[k - 1] if k > 0 else 0.0
    return float(mass1[:k].sum() + (p - before) / mass0[k] * mass1[k])


def _oracle_radius(worst: Callable[[float], float], high: float) -> float:
    """The largest r with worst(r) >= 1/2 (worst decreases in r)."""
    if worst(high) >= 0.5:
        raise AssertionError("bracket too small")
    return float(brentq(lambda r: worst(r) - 0.5, 0.0, high, xtol=1e-9))


@cache
def _oracle(name: str, norm: str, dim: int, p: float) -> float:
    scale = 60 * SIGMA
    if name == "uniform" and norm == "linf":
        dist = _scipy_noise("uniform")
        lam = math.sqrt(3) * SIGMA

        def kept(r: float) -> float:
            overlap = (dist.cdf(lam - r) - dist.cdf(-lam)) ** dim
            return max(0.0, p - (1 - overlap))

        return _oracle_radius(kept, 2 * lam)
    stretch = math.sqrt(dim) if (name, norm) == ("gaussian", "linf") else 1.0
    return _oracle_radius(lambda r: _worst_mass(name, p, r * stretch), scale)


@cache
def _oracle_two_class(p_a: float, p_b: float) -> float:
    """Largest shift at which A's worst-case mass still exceeds B's best-case mass (the best case
    of a set of mass q is one minus the worst case of its complement)."""
    return float(
        brentq(
            lambda r: _worst_mass("gaussian", p_a, r) - (1 - _worst_mass("gaussian", 1 - p_b, r)),
            0.0,
            60 * SIGMA,
            xtol=1e-9,
        )
    )


def _agrees(formula: Callable[[float], float], oracle: Callable[[float], float]) -> bool:
    got = np.array([formula(p) for p in P_GRID])
    want = np.array([oracle(p) for p in P_GRID])
    return bool(np.allclose(got, want, rtol=1e-4, atol=1e-9))  # oracle error < 2e-6


def _cases() -> list[tuple[str, str, int]]:
    return [(n, m, d) for n, m in PAIRS for d in (DIMS if m == "linf" else (1,))]


@pytest.mark.parametrize(("name", "norm", "dim"), _cases())
def test_radius_equals_numerical_neyman_pearson(name: str, norm: str, dim: int) -> None:
    noise = NOISES[name](SIGMA)
    assert _agrees(lambda p: noise.radius(p, norm, dim), lambda p: _oracle(name, norm, dim, p))


LAM_L, LAM_U = SIGMA / math.sqrt(2), math.sqrt(3) * SIGMA
WRONG = {  # plausible mistakes: a wrong scale, a missing factor, a wrong power of d
    "laplace scale sigma": ("laplace", "l1", 1, lambda p: -SIGMA * math.log(2 * (1 - p))),
    "laplace without 2": ("laplace", "l1", 1, lambda p: -LAM_L * math.log(1 - p)),
    "uniform l1 lambda": ("uniform", "l1", 1, lambda p: LAM_U * (p - 0.5)),
    "uniform l1 sigma": ("uniform", "l1", 1, lambda p: 2 * SIGMA * (p - 0.5)),
    "uniform linf 1/2 - p": (
        "uniform",
        "linf",
        4,
        lambda p: 2 * LAM_U * (1 - (1 - p) ** (1 / 4)),
    ),
    "gaussian linf / d": ("gaussian", "linf", 4, lambda p: SIGMA * stats.norm.ppf(p) / 4),
    "gaussian l2 scale 2": ("gaussian", "l2", 1, lambda p: 2 * SIGMA * stats.norm.ppf(p)),
}


@pytest.mark.parametrize("mistake", list(WRONG))
def test_a_wrong_formula_fails_the_comparison(mistake: str) -> None:
    name, norm, dim, formula = WRONG[mistake]
    assert not _agrees(formula, lambda p: _oracle(name, norm, dim, p))


@pytest.mark.parametrize(("p_a", "p_b"), [(0.6, 0.3), (0.5, 0.2), (0.9, 0.05), (0.45, 0.4)])
def test_gaussian_two_class_radius_and_worst_case_masses(p_a: float, p_b: float) -> None:
    noise = GaussianNoise(SIGMA)
    assert noise.radius(p_a, "l2", p_upper=p_b) == pytest.approx(
        _oracle_two_class(p_a, p_b), rel=1e-4
    )
    assert noise.radius(p_a, "l2", p_upper=p_a) == 0.0
    for r in (0.0, 0.1, 0.5):
        lower, upper = noise.worst_case_mass_lower(p_a, r), noise.worst_case_mass_upper(p_b, r)
        assert lower == pytest.approx(_worst_mass("gaussian", p_a, r), abs=1e-5)
        assert upper == pytest.approx(1 - _worst_mass("gaussian", 1 - p_b, r), abs=1e-5)


@pytest.mark.parametrize(("name", "norm"), PAIRS)
def test_radius_is_vectorised_and_zero_without_a_majority(name: str, norm: str) -> None:
    noise = NOISES[name](SIGMA)
    p = np.array([0.0, 0.3, 0.45, 0.5, 0.5 + 1e-9, 0.8, 0.99])
    radii = noise.radius(p, norm, 16)
    assert isinstance(radii, np.ndarray) and radii.shape == p.shape
    assert [noise.radius(float(q), norm, 16) for q in p] == radii.tolist()
    assert isinstance(noise.radius(0.8, norm, 16), float)
    assert (radii[:4] == 0).all() and (radii[4:] > 0).all() and (np.diff(radii[4:]) > 0).all()


# ---- soundness and tightness of Smooth with every (noise, norm) pair ---------------------------
#
# The base classifier is f(x) = [w.x + b > 0]. Under symmetric noise, w.(x + eps) + b exceeds 0 with
# probability > 1/2 exactly when s = w.x + b > 0, so the smoothed classifier equals f and the true
# robust radius in a norm is the distance to the boundary, |s| / ||w||_dual (dual of l2: l2, of
# l1: linf, of linf: l1). w = e_1 makes the l1 certificates tight (p_A is the 1-D CDF at s) and
# w = (1, ..., 1) the Gaussian linf one (the corner direction); uniform linf is sound but loose.

DIM, N0, N, ALPHA = 4, 50, 200, 0.2


class LinearBinary(nn.Module):
    """Logits (-s, s) with s = w.x + b in float64, for a batch ``[B, DIM]``."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.double())

    def score(self, x: Tensor) -> Tensor:
        return x.double() @ self.weight - 0.5 * self.weight.sum()

    def forward(self, x: Tensor) -> Tensor:
        s = self.score(x)
        return torch.stack([-s, s], dim=1).float()


def _geometry(name: str, norm: str) -> tuple[LinearBinary, stats.rv_continuous, float]:
    """The model, the distribution of w.eps, and ||w||_dual."""
    if norm == "linf" and name == "gaussian":
        weight = torch.ones(DIM, dtype=torch.float64)
        marginal = stats.norm(scale=SIGMA * math.sqrt(DIM))
    else:
        weight = torch.zeros(DIM, dtype=torch.float64)
        weight[0] = 1.0
        marginal = _scipy_noise(name)
    dual = {
        "l2": float(weight.norm()),
        "l1": float(weight.abs().max()),
        "linf": float(weight.sum()),
    }
    return LinearBinary(weight), marginal, dual[norm]


def _points(marginal: stats.rv_continuous, weight: Tensor) -> list[Tensor]:
    """Points whose p_A sits just below the Clopper-Pearson bound of some count (so that a radius
    only slightly too large gives false certificates often), on both sides of the boundary."""
    points = []
    for sign, k in [(1, 140), (-1, 155), (1, 170), (-1, 185)]:
        p_top = float(proportion_confint(k, N, alpha=2 * ALPHA, method="beta")[0]) * (1 - 1e-4)
        s = sign * float(marginal.ppf(p_top))
        points.append((0.5 + s * weight / float(weight.pow(2).sum())).float())
    return points


def _false_rate(name: str, norm: str, trials: int) -> tuple[float, float, int]:
    """(false-certificate rate, rate of positive radii, trials) of ``Smooth`` over the points."""
    model, marginal, dual = _geometry(name, norm)
    smooth = Smooth(model, 2, SIGMA, noise=NOISES[name](SIGMA), norm=norm, input_range=None)
    false = certified = total = 0
    for index, x in enumerate(_points(marginal, model.weight)):
        score = float(model.score(x[None])[0])
        for trial in range(trials // 4):
            generator = torch.Generator().manual_seed(10_007 * index + trial)
            label, radius = smooth.certify(x, N0, N, ALPHA, N0 + N, generator=generator)
            if label != ABSTAIN:
                certified += radius > 0
                false += label != int(score > 0) or radius > abs(score) / dual
            total += 1
    return false / total, certified / total, total


@pytest.mark.parametrize(("name", "norm"), PAIRS)
def test_false_certificate_rate_is_at_most_alpha(name: str, norm: str) -> None:
    rate, certified, trials = _false_rate(name, norm, 1000)
    assert rate <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / trials)
    assert certified > 0.8  # not vacuous: most examples get a positive radius


@pytest.mark.parametrize(("name", "norm"), [p for p in PAIRS if p != ("uniform", "linf")])
def test_an_inflated_radius_is_caught(
    name: str, norm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Test of the test: radii 25% too large must push the false-certificate rate above the bound.
    honest = NOISES[name]._radius
    monkeypatch.setattr(NOISES[name], "_radius", lambda *a: 1.25 * honest(*a))
    rate, _, trials = _false_rate(name, norm, 400)
    assert rate > ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / trials)


@pytest.mark.parametrize("name", ["laplace", "uniform"])
@pytest.mark.parametrize("scales_away", [0.3, 0.6, 0.9, -0.5])
def test_l1_radius_is_within_ten_percent_in_one_dimension(name: str, scales_away: float) -> None:
    noise = NOISES[name](SIGMA)
    distance = scales_away * noise.scale * (4 if name == "laplace" else 1)
    model = LinearBinary(torch.ones(1, dtype=torch.float64))
    x = torch.tensor([0.5 + distance], dtype=torch.float32)
    true_distance = abs(float(model.score(x[None])[0]))
    smooth = Smooth(model, 2, SIGMA, noise=noise, input_range=None)
    generator = torch.Generator().manual_seed(int(100 * scales_away) + 3)
    label, radius = smooth.certify(x, 100, 100_000, 0.001, 100_000, generator=generator)
    assert label == int(distance > 0)
    assert 0.9 * true_distance <= radius <= true_distance


# ---- bad input -------------------------------------------------------------------------------

ALL_PAIRS = "gaussian: l2, l1, linf; laplace: l1; uniform: l1, linf"


@pytest.mark.parametrize(
    ("name", "norm"), [("laplace", "l2"), ("laplace", "linf"), ("uniform", "l2")]
)
def test_unsupported_pair_lists_the_supported_ones(name: str, norm: str) -> None:
    with pytest.raises(ConfigError) as error:
        NOISES[name](SIGMA).radius(0.9, norm, 16)
    message = str(error.value)
    assert "\n" not in message and f"{name} noise certifies no {norm}" in message
    assert ALL_PAIRS in message
    model = LinearBinary(torch.ones(DIM))
    with pytest.raises(ConfigError, match=ALL_PAIRS):
        Smooth(model, 2, SIGMA, noise=name, norm=norm, input_range=None)


@pytest.mark.parametrize("name", list(NOISES))
def test_sigma_must_be_positive_to_certify(name: str) -> None:
    model = LinearBinary(torch.ones(DIM))
    with pytest.raises(ConfigError, match="must be >= 0"):
        NOISES[name](-0.1)
    with pytest.raises(ConfigError, match="single noise level sigma > 0"):
        NOISES[name](0.0).radius(0.9)
    with pytest.raises(ConfigError, match="single noise level sigma > 0"):
        NOISES[name]([0.25, 0.5]).stream((3,), torch.Generator(), "cpu")
    for sigma in (0.0, -0.25):
        with pytest.raises(ConfigError, match="must be > 0"):
            Smooth(model, 2, sigma, noise=name, input_range=None)
    with pytest.raises(ConfigError, match="differs from sigma="):
        Smooth(model, 2, SIGMA, noise=NOISES[name](0.5), input_range=None)


def test_norm_names_and_other_bad_arguments() -> None:
    noise = GaussianNoise(SIGMA)
    assert noise.radius(0.9, "L2") == noise.radius(0.9, "2") == noise.radius(0.9)
    assert noise.radius(0.9, "inf", 4) == noise.radius(0.9, "linf", 4) == noise.radius(0.9) / 2
    for bad in ("l3", "l0", "euclid", ""):
        with pytest.raises(ConfigError, match="is not a norm name: use one of l1, l2, linf"):
            noise.radius(0.9, bad)
    with pytest.raises(ConfigError, match="needs the input dim"):
        noise.radius(0.9, "linf")
    with pytest.raises(ConfigError, match=r"p_lower must lie in \[0, 1\]"):
        noise.radius(1.5)
    with pytest.raises(
        ConfigError, match="unknown: use one of gaussian, laplace, rayleigh, uniform"
    ):
        Smooth(LinearBinary(torch.ones(DIM)), 2, SIGMA, noise="cauchy")
    for name in ("laplace", "uniform"):
        with pytest.raises(ConfigError, match="p_upper: only gaussian"):
            NOISES[name](SIGMA).radius(0.9, p_upper=0.05)
        for method in ("worst_case_mass_lower", "worst_case_mass_upper"):
            with pytest.raises(ConfigError, match=f"{method}: only gaussian noise supports it"):
                getattr(NOISES[name](SIGMA), method)(0.9, 0.1)
    with pytest.raises(ConfigError, match="r must be >= 0"):
        noise.worst_case_mass_lower(0.9, -0.1)


def test_smooth_default_is_gaussian_l2_and_abstains_without_a_majority() -> None:
    model = LinearBinary(torch.ones(DIM))
    smooth = Smooth(model, 2, SIGMA, input_range=None)
    assert isinstance(smooth.noise, GaussianNoise) and smooth.norm == "l2"
    assert Smooth(model, 2, SIGMA, noise="laplace", input_range=None).norm == "l1"
    assert Smooth(model, 2, SIGMA, noise=UniformNoise(SIGMA), input_range=None).norm == "l1"
    for name in NOISES:
        laplace = Smooth(model, 2, SIGMA, noise=name, input_range=None)
        x = torch.full((DIM,), 0.5)  # on the boundary: p_A = 1/2
        results = [
            laplace.certify(x, 50, 200, 0.01, 250, torch.Generator().manual_seed(t))
            for t in range(10)
        ]
        assert all(result == (ABSTAIN, 0.0) for result in results)
