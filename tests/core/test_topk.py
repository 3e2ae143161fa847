"""Top-k certificates (Jia et al. 2020): the radius against a reference written from the theorem,
k = 1 against Cohen's two-class radius, and the rate of wrong certificates on a model whose
smoothed class probabilities are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from smoothcert import topk_radius
from smoothcert.certifiers.topk import check_topk, simultaneous_bounds
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise


def reference_radius(counts, label, k, sigma, alpha):
    """Theorem 1 of Jia et al. with statsmodels' Clopper-Pearson and bisection on each R_t."""
    counts = np.asarray(counts)
    n, level = int(counts.sum()), alpha / len(counts)
    # statsmodels' two-sided interval at 2 * level: each side is the one-sided bound at level.
    low, high = proportion_confint(counts, n, alpha=2 * level, method="beta")
    low, high = np.where(counts == 0, 0.0, low), np.where(counts == n, 1.0, high)
    p_l = low[label]
    b = sorted((high[c] for c in range(len(counts)) if c != label), reverse=True)
    best = None
    for t in range(1, k + 1):
        p_s = min(sum(b[k - t : k]), 1 - p_l)

        def f(r, p_s=p_s, t=t):
            return norm.cdf(norm.ppf(p_l) - r / sigma) - norm.cdf(norm.ppf(p_s) + r / sigma) / t

        if f(0.0) <= 0:
            continue
        lo, hi = 0.0, 1.0
        while f(hi) > 0:
            hi *= 2
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
        best = lo if best is None else max(best, lo)
    return best


CASES = [
    ([700, 200, 60, 30, 10], 0, 1, 0.25),
    ([700, 200, 60, 30, 10], 1, 2, 0.25),
    ([4000, 3500, 1500, 800, 200], 2, 3, 0.5),
    ([400, 350, 150, 80, 20], 3, 4, 0.12),
    ([3000, 2900, 2800, 1000, 300], 3, 4, 1.0),
    ([9000, 500, 300, 100, 60, 40], 1, 5, 0.25),
    ([100, 0, 0], 0, 2, 0.25),
]


@pytest.mark.parametrize(("counts", "label", "k", "sigma"), CASES)
def test_radius_matches_the_theorem(counts, label, k, sigma):
    expected = reference_radius(counts, label, k, sigma, 0.001)
    got = topk_radius(counts, label, k, sigma, 0.001)
    assert expected is not None and got is not None
    assert got == pytest.approx(expected, abs=1e-6)


def test_uncertified_label_gets_none():
    assert topk_radius([400, 350, 150, 80, 20], 4, 2, 0.25, 0.001) is None
    assert reference_radius([400, 350, 150, 80, 20], 4, 2, 0.25, 0.001) is None


def test_k_equal_to_the_number_of_classes_is_infinite():
    assert topk_radius([10, 0, 0], 2, 3, 0.25, 0.001) == math.inf


@pytest.mark.parametrize("counts", [[900, 60, 40], [6000, 3000, 500, 500], [80, 15, 3, 2]])
def test_k1_is_cohens_two_class_radius(counts):
    lower, upper = simultaneous_bounds(counts, 0.01)
    p_b = min(max(upper[1:]), 1 - lower[0])
    cohen = GaussianNoise(0.5).radius(lower[0], "l2", p_upper=p_b)
    assert cohen == pytest.approx(0.5 / 2 * (norm.ppf(lower[0]) - norm.ppf(p_b)))
    assert topk_radius(counts, 0, 1, 0.5, 0.01) == pytest.approx(cohen, abs=1e-9)


def test_bounds_are_clopper_pearson_at_alpha_over_k():
    counts = [0, 3, 50, 47]
    lower, upper = simultaneous_bounds(counts, 0.04)
    low, high = proportion_confint(np.array(counts), 100, alpha=0.02, method="beta")
    np.testing.assert_allclose(lower, np.nan_to_num(low), atol=1e-12)
    np.testing.assert_allclose(upper[:3], high[:3], atol=1e-12)
    assert lower[0] == 0.0 and upper[0] > 0


def wrong_certificate_rate(p, k, label, n, alpha, trials, seed):
    """Fraction of trials certifying ``label`` (not truly in the top k) in the top k."""
    counts = np.random.default_rng(seed).multinomial(n, p, size=trials)
    return np.mean([topk_radius(c, label, k, 0.25, alpha) is not None for c in counts])


def test_wrong_top_k_certificates_stay_within_alpha():
    # A base model that ignores its input and outputs a softmax of fixed logits: the smoothed
    # classifier's class probabilities are p everywhere, so the last class (a hair below 1/5) is
    # never among the top 4, and any certificate for it, of any radius, is wrong. Near-ties make
    # the bounds matter: without the Bonferroni correction the rate is about 0.31 > alpha.
    logits = np.log(np.array([1 / 5 + 1e-4 / 4] * 4 + [1 / 5 - 1e-4]))
    p = np.exp(logits) / np.exp(logits).sum()
    alpha, trials = 0.2, 2000
    rate = wrong_certificate_rate(p, 4, 4, 100, alpha, trials, seed=0)
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    # The test has power: certificates do happen, below alpha (the bounds are conservative).
    assert rate > 0.01


def test_wrong_certificates_of_a_label_outside_the_top_k_with_others_spread():
    # S_t must come from the k largest upper bounds: p[3] is third, never in the top 2.
    p = np.array([0.3, 0.3, 0.01, 0.29, 0.1])
    alpha, trials = 0.2, 1000
    rate = wrong_certificate_rate(p, 2, 3, 200, alpha, trials, seed=1)
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


@pytest.mark.parametrize(
    ("ks", "classes"), [([0], 10), ([11], 10), ([1, 3, 5], 4), ([], 10), ([1.5], 10)]
)
def test_bad_k_is_a_one_line_error(ks, classes):
    with pytest.raises(ConfigError, match=r"certify\.topk=.*1\.\.") as error:
        check_topk(ks, classes)
    assert "\n" not in str(error.value)


def test_top_k_radius_grows_with_k():
    counts = [400, 350, 150, 80, 20]
    radii = [topk_radius(counts, 1, k, 0.25, 0.001) for k in (1, 2, 3, 4)]
    assert radii[0] is None and all(a < b for a, b in zip(radii[1:-1], radii[2:], strict=True))


def test_topk_certification_keeps_cohens_records_and_uses_their_counts():
    from smoothcert.certifiers.classification import Smooth
    from smoothcert.certifiers.examples import certify_group
    from smoothcert.certifiers.topk import certify_group_topk
    from smoothcert.models.classifiers import DigitsCNN, NormalizedClassifier
    from smoothcert.noise import example_generator

    torch.manual_seed(0)
    smooth = Smooth(NormalizedClassifier(DigitsCNN(width=4), [0.3], [0.4]), 10, 0.5)
    xs = [torch.rand(1, 8, 8) for _ in range(3)]
    labels = [0, 1, 2]

    def generators():
        return [example_generator(0, i) for i in range(3)]

    plain = certify_group(smooth, [0, 1, 2], xs, labels, generators(), 20, 200, 0.01, 64)
    pairs = certify_group_topk(smooth, [0, 1, 2], xs, labels, generators(), (20, 200, 0.01, 64),
                               [1, 10])  # fmt: skip
    strip = [(r.idx, r.predict, r.radius, r.correct) for r in plain]
    assert strip == [(r.idx, r.predict, r.radius, r.correct) for r, _ in pairs]
    _, _, counts = smooth.certify_many_with_predictions(xs, 20, 200, 0.01, 64, generators())
    for e, (_, topk) in enumerate(pairs):
        assert topk.radii[0] == topk_radius(counts[e].tolist(), labels[e], 1, 0.5, 0.01)
        assert topk.radii[1] == math.inf
