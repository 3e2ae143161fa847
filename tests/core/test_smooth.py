"""Statistical tests of ``Smooth`` against a base classifier whose smoothed answer is analytic.

The base classifier is linear, f(x) = [w.x + b > 0]. Under x + eps with eps ~ N(0, sigma^2 I),
the score w.(x + eps) + b is N(s, sigma^2 ||w||^2) with s = w.x + b, so the smoothed classifier
equals f, its top-class probability is p_A = Phi(|s| / (sigma ||w||)), and the largest radius that
is actually sound is the distance to the boundary, |s| / ||w|| = sigma Phi^-1(p_A). A certificate
(c, r) is false exactly when c is the wrong class or r exceeds that distance.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm
from statsmodels.stats.proportion import proportion_confint
from torch import Tensor, nn

import smoothcert.certifiers.classification
from smoothcert import ABSTAIN, ConfigError, Smooth, certify_examples, example_generator
from smoothcert.independence import PROBE_CALLS
from smoothcert.stats.binomial import binom_test_two_sided

SIGMA = 0.25
SHAPE = (1, 4, 4)


class LinearBinary(nn.Module):
    """Logits (-s, s) with s = w.x + b, computed in float64 so s is exact to ~1e-15."""

    def __init__(self, weight: Tensor, bias: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight.double())
        self.bias = float(bias)
        self.modes_seen: set[bool] = set()

    def score(self, x: Tensor) -> Tensor:
        return (x.double() * self.weight).flatten(1).sum(dim=1) + self.bias

    def forward(self, x: Tensor) -> Tensor:
        self.modes_seen.add(self.training)
        s = self.score(x)
        return torch.stack([-s, s], dim=1).float()


class Geometry:
    """A linear classifier whose boundary passes through the centre of the unit cube [0, 1]^shape,
    and points at chosen signed distances from it (all inside the cube)."""

    def __init__(self, shape: tuple[int, ...] = SHAPE, seed: int = 4, scale: float = 3.0) -> None:
        generator = torch.Generator().manual_seed(seed)
        direction = torch.randn(shape, generator=generator, dtype=torch.float64)
        self.unit = direction / direction.norm()
        self.weight = scale * self.unit  # ||w|| = scale: the radius must not depend on it
        centre = torch.full(shape, 0.5, dtype=torch.float64)
        self.model = LinearBinary(self.weight, bias=-float((self.weight * centre).sum()))
        self.centre = centre
        self.shape = shape
        self._jitter = torch.Generator().manual_seed(seed + 1)

    def point(self, signed_distance: float) -> Tensor:
        """A float32 point at ``signed_distance`` (up to float32 rounding), shifted along the
        boundary by a random orthogonal offset so it is not on a symmetry axis."""
        offset = torch.randn(self.shape, generator=self._jitter, dtype=torch.float64)
        offset -= (offset * self.unit).sum() * self.unit
        offset *= 0.05 / offset.abs().max()
        x = (self.centre + signed_distance * self.unit + offset).float()
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0, "test point left the unit cube"
        return x

    def signed_distance(self, x: Tensor) -> float:
        """Exact signed distance of the actual (float32) point to the boundary."""
        return float(self.model.score(x[None])[0]) / float(self.weight.norm())

    def true_class(self, x: Tensor) -> int:
        return int(self.signed_distance(x) > 0)

    def p_top(self, x: Tensor, sigma: float = SIGMA) -> float:
        return float(norm.cdf(abs(self.signed_distance(x)) / sigma))

    def is_false_certificate(self, x: Tensor, prediction: int, radius: float) -> bool:
        if prediction == ABSTAIN:
            return False
        return prediction != self.true_class(x) or radius > abs(self.signed_distance(x))


def _cp_lower(k: int, n: int, alpha: float) -> float:
    """The oracle one-sided Clopper-Pearson lower bound."""
    return float(proportion_confint(k, n, alpha=2 * alpha, method="beta")[0])


def _expected_false_rate(p_top: float, n0: int, n: int, alpha: float) -> tuple[float, float]:
    """Exact [low, high] probability that CERTIFY returns a false certificate.

    The selected class is right with probability P(K0 > n0/2) or P(K0 >= n0/2) (ties go either way),
    and the n estimation samples are independent of the selection.
    """
    ks = np.arange(n + 1)
    lowers = np.array([_cp_lower(int(k), n, alpha) for k in ks])
    pmf_top, pmf_other = binom.pmf(ks, n, p_top), binom.pmf(ks, n, 1 - p_top)
    false_if_right = float(pmf_top[lowers > p_top].sum())  # radius beyond the boundary
    false_if_wrong = float(pmf_other[lowers > 0.5].sum())  # any certificate of the wrong class
    right_strict = float(binom.sf(n0 // 2, n0, p_top))
    right_loose = float(binom.sf(math.ceil(n0 / 2) - 1, n0, p_top))
    rates = [r * false_if_right + (1 - r) * false_if_wrong for r in (right_strict, right_loose)]
    return min(rates), max(rates)


def _false_certificate_rate(
    geometry: Geometry, points: list[Tensor], trials_per_point: int, n0: int, n: int, alpha: float
) -> tuple[float, int]:
    smooth = Smooth(geometry.model, num_classes=2, sigma=SIGMA)
    false, trials = 0, 0
    for p_index, x in enumerate(points):
        for trial in range(trials_per_point):
            generator = torch.Generator().manual_seed(1_000_003 * p_index + trial)
            prediction, radius = smooth.certify(x, n0, n, alpha, n0 + n, generator=generator)
            false += geometry.is_false_certificate(x, prediction, radius)
            trials += 1
    return false / trials, trials


def _near_tight_points(geometry: Geometry, n: int, alpha: float) -> list[Tensor]:
    """Points whose p_A sits just below the Clopper-Pearson bound of some count k, where the bound's
    miscoverage P(K >= k) is close to alpha (so the false-certificate rate should be ~alpha)."""
    points = []
    for sign, k in [(1, 150), (-1, 160), (1, 175), (-1, 190), (1, 199)]:
        p_top = _cp_lower(k, n, alpha) * (1 - 1e-4)
        points.append(geometry.point(sign * SIGMA * float(norm.ppf(p_top))))
    return points


@pytest.mark.slow  # a statistical test of several seconds
def test_false_certificate_rate_is_at_most_alpha_and_near_it() -> None:
    geometry = Geometry()
    n0, n, alpha = 50, 200, 0.1
    points = _near_tight_points(geometry, n, alpha)
    rate, trials = _false_certificate_rate(geometry, points, 400, n0, n, alpha)

    # The guarantee: at most alpha, up to 3 binomial standard errors.
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)

    # And not vacuous: the exact expected rate for these points is close to alpha, and the observed
    # rate agrees with it (a bound that is too loose, or too tight, would fail here).
    bounds = [_expected_false_rate(geometry.p_top(x), n0, n, alpha) for x in points]
    expected_low = float(np.mean([low for low, _ in bounds]))
    expected_high = float(np.mean([high for _, high in bounds]))
    assert expected_low > 0.8 * alpha
    tolerance = 4 * math.sqrt(expected_high * (1 - expected_high) / trials)
    assert expected_low - tolerance <= rate <= expected_high + tolerance


def test_false_certificate_rate_grows_with_alpha() -> None:
    # The same harness detects a looser bound: alpha = 0.5 must give clearly more false
    # certificates than alpha = 0.1 (and still no more than its own alpha).
    geometry = Geometry()
    n0, n = 50, 200
    points = _near_tight_points(geometry, n, 0.1)
    rate_tight, trials = _false_certificate_rate(geometry, points, 100, n0, n, 0.1)
    rate_loose, _ = _false_certificate_rate(geometry, points, 100, n0, n, 0.5)
    assert rate_loose <= 0.5 + 3 * math.sqrt(0.25 / trials)
    assert rate_loose > rate_tight + 0.15


def test_broken_bound_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Test of the test: with the point estimate k/n in place of the lower bound, certificates are
    # false about half the time, and the false-certificate check must notice.
    geometry = Geometry()
    n0, n, alpha = 50, 200, 0.1
    points = _near_tight_points(geometry, n, alpha)
    monkeypatch.setattr(
        smoothcert.certifiers.classification, "clopper_pearson_lower", lambda k, n, a: k / n
    )
    rate, trials = _false_certificate_rate(geometry, points, 60, n0, n, alpha)
    assert rate > alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


@pytest.mark.parametrize("sigmas_away", [0.5, 1.0, 2.0, 3.0, -0.5, -1.0, -2.0, -3.0])
def test_radius_is_sound_and_within_ten_percent_with_many_samples(sigmas_away: float) -> None:
    geometry = Geometry()
    x = geometry.point(sigmas_away * SIGMA)
    distance = abs(geometry.signed_distance(x))
    assert distance == pytest.approx(abs(sigmas_away) * SIGMA, rel=1e-6)
    smooth = Smooth(geometry.model, num_classes=2, sigma=SIGMA)
    generator = torch.Generator().manual_seed(int(100 * sigmas_away) + 7)
    prediction, radius = smooth.certify(x, 100, 100_000, 0.001, 100_000, generator=generator)
    assert prediction == geometry.true_class(x) == int(sigmas_away > 0)
    assert 0.9 * distance <= radius <= distance


def test_certify_abstains_on_the_boundary() -> None:
    geometry = Geometry()
    smooth = Smooth(geometry.model, num_classes=2, sigma=SIGMA)
    results = []
    for trial in range(20):
        x = geometry.point(0.0)
        assert abs(geometry.signed_distance(x)) < 1e-6
        generator = torch.Generator().manual_seed(trial)
        results.append(smooth.certify(x, 100, 1000, 0.001, 1100, generator=generator))
    abstentions = [r for r in results if r[0] == ABSTAIN]
    assert len(abstentions) >= 18
    assert all(radius == 0.0 for _, radius in abstentions)
    assert all(isinstance(radius, float) for _, radius in results)


def test_predict_abstains_on_the_boundary_and_is_right_far_from_it() -> None:
    geometry = Geometry()
    smooth = Smooth(geometry.model, num_classes=2, sigma=SIGMA)
    on_boundary = [
        smooth.predict(geometry.point(0.0), 1000, 0.001, 1000, torch.Generator().manual_seed(t))
        for t in range(20)
    ]
    assert sum(p == ABSTAIN for p in on_boundary) >= 18
    for trial, sigmas_away in enumerate([2.0, -2.0, 3.0, -3.0, 1.5]):
        x = geometry.point(sigmas_away * SIGMA)
        generator = torch.Generator().manual_seed(100 + trial)
        assert smooth.predict(x, 1000, 0.001, 1000, generator) == geometry.true_class(x)


def test_predict_error_rate_on_the_boundary() -> None:
    # On the boundary the top two classes tie, so any answer is an error; PREDICT must answer at
    # most alpha of the time, and exactly as often as the binomial test rejects.
    geometry = Geometry()
    smooth = Smooth(geometry.model, num_classes=2, sigma=SIGMA)
    n, alpha, trials = 100, 0.1, 1000
    x = geometry.point(0.0)
    answered = sum(
        smooth.predict(x, n, alpha, n, torch.Generator().manual_seed(t)) != ABSTAIN
        for t in range(trials)
    )
    rate = answered / trials
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    ks = np.arange(n + 1)
    rejects = np.array([binom_test_two_sided(max(k, n - k), n, 0.5) <= alpha for k in ks])
    expected = float(binom.pmf(ks, n, 0.5)[rejects].sum())
    assert expected > 0.03
    assert abs(rate - expected) <= 4 * math.sqrt(expected * (1 - expected) / trials)


class Probe(nn.Module):
    """Records every batch it is given; always answers class 0."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.batches.append(x.detach().clone())
        return torch.stack([torch.ones(x.shape[0]), torch.zeros(x.shape[0])], dim=1)


def test_base_classifier_sees_x_plus_independent_unclipped_gaussian_noise() -> None:
    sigma, n0, n, batch_size = 0.5, 300, 2000, 128
    probe = Probe()
    x = Geometry().point(0.1)
    Smooth(probe, 2, sigma).certify(x, n0, n, 0.01, batch_size, torch.Generator().manual_seed(0))
    del probe.batches[:PROBE_CALLS]  # the independence probe's (smoothcert.independence)
    assert all(b.shape[0] <= batch_size and b.shape[1:] == x.shape for b in probe.batches)
    inputs = torch.cat(probe.batches)
    assert inputs.shape[0] == n0 + n
    # Every draw is fresh: selection and estimation samples never repeat, within or across batches.
    assert torch.unique(inputs.flatten(1), dim=0).shape[0] == n0 + n
    noise = (inputs - x).double()
    count = noise.numel()
    assert abs(noise.mean().item()) < 5 * sigma / math.sqrt(count)
    assert abs(noise.std().item() - sigma) < 5 * sigma / math.sqrt(2 * count)
    # No clipping to [0, 1]: the certificate is for Gaussian noise, not a clipped version of it.
    assert inputs.min() < -0.5 and inputs.max() > 1.5


class PaddedLogits(nn.Module):
    """``model``'s logits followed by classes that never win (to reach ``num_classes``)."""

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model, self.extra = model, num_classes

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)
        pad = torch.full((len(logits), self.extra - logits.shape[1]), -1e9, dtype=logits.dtype)
        return torch.cat([logits, pad], dim=1)


def test_readme_library_examples_run_as_written() -> None:
    """The README's ``Smooth`` examples, executed verbatim: images in [0, 1], and features that
    are not pixels with ``input_range=None``. Both certificates are sound for the linear model."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## The library", 1)[1].split("\n## ", 1)[0]
    blocks = [
        b
        for b in re.findall(r"```python\n(.*?)```", section, re.S)
        if "Smooth(" in b and "CenterSmooth" not in b
    ]
    assert len(blocks) == 2
    torch.manual_seed(0)
    geometry = Geometry()
    x = geometry.point(2 * SIGMA)
    image = {"torch": torch, "x": x, "base_classifier": PaddedLogits(geometry.model, 10)}
    exec(blocks[0], image)
    assert image["prediction"] == image["label"] == geometry.true_class(x)
    assert 0 < image["radius"] <= geometry.signed_distance(x)

    weight = torch.tensor([[[0.5, -2.0, 1.0, 0.25, 3.0]]], dtype=torch.float64)
    features = torch.tensor([3.0, -2.0, 5.0, 40.0, -1.5])  # not pixels: far outside [0, 1]
    tabular = LinearBinary(weight[0, 0], bias=-1.0)
    score = float(tabular.score(features[None]))
    # The second block continues the first: its names (Smooth) are imported there.
    namespace = {"Smooth": image["Smooth"], "features": features, "tabular_classifier": tabular}
    exec(blocks[1], namespace)
    assert namespace["prediction"] == int(score > 0)
    assert 0 < namespace["radius"] <= abs(score) / float(weight.norm())
    with pytest.raises(ConfigError, match="must lie in \\[0, 1\\]"):
        Smooth(tabular, 2, 0.5).certify(features.reshape(1, 1, 5), 10, 100, 0.01, 100)


def test_input_range_is_checked_as_given() -> None:
    geometry = Geometry()
    smooth = Smooth(geometry.model, 2, SIGMA, input_range=(-1.0, 1.0))
    x = geometry.point(0.2) * 2 - 1  # in [-1, 1]
    assert smooth.predict(x, 100, 0.01, 100, torch.Generator().manual_seed(0)) in (0, 1, ABSTAIN)
    with pytest.raises(ConfigError, match=r"must lie in \[-1, 1\]"):
        smooth.predict(x + 2.5, 100, 0.01, 100)
    with pytest.raises(ConfigError, match="low < high"):
        Smooth(geometry.model, 2, SIGMA, input_range=(1.0, 0.0))


@pytest.mark.parametrize(("shape", "n"), [(SHAPE, 2000), ((3, 32, 32), 600)])
def test_certify_does_not_depend_on_batch_size(shape: tuple[int, ...], n: int) -> None:
    geometry = Geometry(shape, seed=0)
    smooth = Smooth(geometry.model, num_classes=2, sigma=SIGMA)
    x = geometry.point(-0.2)
    results = {
        batch: smooth.certify(x, 100, n, 0.001, batch, generator=torch.Generator().manual_seed(42))
        for batch in (7, 100, 100_000)
    }
    assert len(set(results.values())) == 1, results
    prediction, radius = results[7]
    assert prediction == 0 and radius > 0
    # The seed does matter (the equality above is not trivially true). Counts are discrete, so two
    # seeds may tie by chance; several seeds may not.
    others = {
        smooth.certify(x, 100, n, 0.001, 100, generator=torch.Generator().manual_seed(seed))
        for seed in range(43, 48)
    }
    assert len(others | {results[7]}) > 2


def test_predict_does_not_depend_on_batch_size() -> None:
    geometry = Geometry()
    smooth = Smooth(geometry.model, num_classes=2, sigma=SIGMA)
    # Near the boundary, so the answer varies with the noise.
    x = geometry.point(0.01)
    for seed in range(5):
        answers = {
            smooth.predict(x, 500, 0.1, batch, torch.Generator().manual_seed(seed))
            for batch in (7, 100, 100_000)
        }
        assert len(answers) == 1


def test_global_seed_makes_calls_without_generator_reproducible() -> None:
    geometry = Geometry()
    smooth = Smooth(geometry.model, num_classes=2, sigma=SIGMA)
    x = geometry.point(0.1)
    torch.manual_seed(0)
    first = smooth.certify(x, 50, 500, 0.01, 550)
    torch.manual_seed(0)
    assert smooth.certify(x, 50, 500, 0.01, 550) == first
    # Later calls continue the global stream and differ (ties of the discrete count aside).
    later = {smooth.certify(x, 50, 500, 0.01, 550) for _ in range(5)}
    assert len(later | {first}) > 2


def test_certify_examples_depend_only_on_seed_and_index() -> None:
    geometry = Geometry()
    smooth = Smooth(geometry.model, num_classes=2, sigma=SIGMA)
    distances = [0.3, -0.2, 0.0, 0.5, -0.4, 0.1]
    dataset = [(geometry.point(d), int(d > 0)) for d in distances]
    settings = {"n0": 50, "n": 1000, "alpha": 0.001, "seed": 3, "device": "cpu"}
    everything = list(certify_examples(smooth, dataset, range(6), batch_size=64, **settings))
    subset = list(certify_examples(smooth, dataset, [4, 1], batch_size=1000, **settings))
    assert [r.idx for r in everything] == list(range(6))
    for record in subset:
        twin = everything[record.idx]
        assert (record.predict, record.radius) == (twin.predict, twin.radius)
    for record, (x, label) in zip(everything, dataset, strict=True):
        assert record.label == label
        assert record.correct == int(record.predict == label)
        assert record.time >= 0
        assert not geometry.is_false_certificate(x, record.predict, record.radius)
    # The per-example generator is the documented one.
    x0 = dataset[0][0]
    direct = smooth.certify(x0, 50, 1000, 0.001, 64, generator=example_generator(3, 0))
    assert direct == (everything[0].predict, everything[0].radius)


# ---- input validation -------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.0, -0.25])
def test_rejects_non_positive_sigma(sigma: float) -> None:
    with pytest.raises(ConfigError):
        Smooth(Geometry().model, num_classes=2, sigma=sigma)


def test_rejects_too_few_classes() -> None:
    with pytest.raises(ConfigError):
        Smooth(Geometry().model, num_classes=1, sigma=SIGMA)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5, -0.1])
def test_rejects_alpha_outside_unit_interval(alpha: float) -> None:
    geometry = Geometry()
    smooth, x = Smooth(geometry.model, 2, SIGMA), geometry.point(0.2)
    with pytest.raises(ConfigError):
        smooth.certify(x, 10, 100, alpha, 100)
    with pytest.raises(ConfigError):
        smooth.predict(x, 100, alpha, 100)


@pytest.mark.parametrize(
    ("n0", "n", "batch_size"),
    [(0, 100, 10), (10, 0, 10), (10, 100, 0), (-5, 100, 10), (2.5, 10, 1)],
)
def test_rejects_bad_counts(n0: int, n: int, batch_size: int) -> None:
    geometry = Geometry()
    smooth, x = Smooth(geometry.model, 2, SIGMA), geometry.point(0.2)
    with pytest.raises(ConfigError):
        smooth.certify(x, n0, n, 0.01, batch_size)


@pytest.mark.parametrize(("n", "batch_size"), [(0, 10), (10, 0)])
def test_predict_rejects_bad_counts(n: int, batch_size: int) -> None:
    geometry = Geometry()
    smooth, x = Smooth(geometry.model, 2, SIGMA), geometry.point(0.2)
    with pytest.raises(ConfigError):
        smooth.predict(x, n, 0.01, batch_size)


@pytest.mark.parametrize(
    "transform",
    [
        lambda x: x * 255,  # [0, 255] pixels
        lambda x: (x - 0.5) / 0.25,  # a normalizing transform
        lambda x: x + 1.0,
        lambda x: torch.where(torch.arange(x.numel()).reshape(x.shape) == 3, float("nan"), x),
    ],
    ids=["0-255", "normalized", "shifted", "nan"],
)
def test_rejects_inputs_outside_unit_range(transform) -> None:
    geometry = Geometry()
    smooth = Smooth(geometry.model, 2, SIGMA)
    x = transform(geometry.point(0.2))
    with pytest.raises(ConfigError):
        smooth.certify(x, 10, 100, 0.01, 100)
    with pytest.raises(ConfigError):
        smooth.predict(x, 100, 0.01, 100)


@pytest.mark.parametrize("reshape", [lambda x: x[None], lambda x: x[0], lambda x: x.flatten()])
def test_rejects_inputs_of_wrong_rank(reshape) -> None:
    geometry = Geometry()
    smooth = Smooth(geometry.model, 2, SIGMA)
    x = reshape(geometry.point(0.2))
    with pytest.raises(ConfigError):
        smooth.certify(x, 10, 100, 0.01, 100)
    with pytest.raises(ConfigError):
        smooth.predict(x, 100, 0.01, 100)


class NaNModel(nn.Module):
    def __init__(self, every: int = 1) -> None:
        super().__init__()
        self.every = every

    def forward(self, x: Tensor) -> Tensor:
        logits = torch.zeros(x.shape[0], 2)
        logits[:: self.every, 1] = float("nan")
        return logits


@pytest.mark.parametrize("every", [1, 37])
def test_nan_logits_raise_floating_point_error(every: int) -> None:
    model = NaNModel(every).train()
    smooth, x = Smooth(model, 2, SIGMA), Geometry().point(0.2)
    with pytest.raises(FloatingPointError):
        smooth.certify(x, 10, 100, 0.01, 50, generator=torch.Generator().manual_seed(0))
    with pytest.raises(FloatingPointError):
        smooth.predict(x, 100, 0.01, 50, generator=torch.Generator().manual_seed(0))
    assert model.training  # restored even though certification failed


class ThreeLogits(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0], 3)


def test_logit_count_must_match_num_classes() -> None:
    x = Geometry().point(0.2)
    with pytest.raises(ValueError, match="num_classes"):
        Smooth(ThreeLogits(), num_classes=2, sigma=SIGMA).certify(x, 10, 100, 0.01, 100)
    with pytest.raises(ValueError, match="num_classes"):
        Smooth(Geometry().model, num_classes=3, sigma=SIGMA).predict(x, 100, 0.01, 100)


@pytest.mark.parametrize("initially_training", [True, False])
def test_model_mode_is_eval_during_and_restored_after(initially_training: bool) -> None:
    geometry = Geometry()
    model = geometry.model.train(initially_training)
    smooth, x = Smooth(model, 2, SIGMA), geometry.point(0.2)
    smooth.certify(x, 10, 100, 0.01, 100, generator=torch.Generator().manual_seed(0))
    assert model.training is initially_training
    smooth.predict(x, 100, 0.01, 100, generator=torch.Generator().manual_seed(0))
    assert model.training is initially_training
    assert model.modes_seen == {False}
