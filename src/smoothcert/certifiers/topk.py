"""Top-k certificates (Jia et al., ICLR 2020): a label stays among the k most probable classes of
the Gaussian-smoothed classifier within an l2 radius, from the class counts of n noisy samples."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import betaincinv, ndtr, ndtri

from smoothcert.certifiers.classification import Smooth
from smoothcert.certifiers.examples import certify_group_details
from smoothcert.errors import ConfigError, check_alpha, check_sigma
from smoothcert.records import CohenRecord
from smoothcert.records.topk import TopKRecord
from smoothcert.stats.sequential import confidence_sequence

__all__ = [
    "anytime_simultaneous_bounds",
    "certify_group_topk",
    "check_topk",
    "simultaneous_bounds",
    "topk_radius",
    "topk_records_sequential",
]


def check_topk(ks: Sequence[int], num_classes: int, name: str = "certify.topk") -> list[int]:
    """``ks`` as sorted distinct ints in ``1..num_classes``; a one-line ConfigError otherwise."""
    values = [ks] if isinstance(ks, int) else list(ks)
    bad = [k for k in values if isinstance(k, bool) or float(k) != int(k) or k < 1]
    bad += [k for k in values if k not in bad and int(k) > num_classes]
    if not values or bad:
        raise ConfigError(
            f"{name}={values}: each k must be an integer in 1..{num_classes} (the number of "
            f"classes), e.g. {name}=[1,3,5]"
        )
    return sorted({int(k) for k in values})


def simultaneous_bounds(counts: Sequence[int], alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Clopper-Pearson lower and upper bounds on every class probability, each at level
    ``alpha / K`` (K = ``len(counts)``): by Bonferroni, with probability at least ``1 - alpha``
    every lower and every upper bound of one side holds at once."""
    k = np.asarray(counts, dtype=np.int64)
    n, level = int(k.sum()), alpha / len(k)
    # clopper_pearson_lower / _upper of each count: the beta quantile (scipy's ufunc behind
    # beta.ppf), one call per side.
    with np.errstate(invalid="ignore"):
        lower = np.where(k == 0, 0.0, betaincinv(k, n - k + 1, level))
        upper = np.where(k == n, 1.0, betaincinv(k + 1, n - k, 1 - level))
    return lower, upper


def anytime_simultaneous_bounds(
    counts: Sequence[int], alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`simultaneous_bounds` for counts taken up to a stopping time (sequential CERTIFY):
    each class's two-sided beta-binomial confidence sequence (``smoothcert.stats.sequential``) at
    level ``alpha / K``, so with probability at least ``1 - alpha`` every lower and upper bound
    holds at once, at every time, hence at the (data-dependent) time sampling stopped."""
    k = np.asarray(counts, dtype=np.int64)
    return confidence_sequence(k, np.full_like(k, int(k.sum())), alpha / len(k))


def topk_radius(
    counts: Sequence[int],
    label: int,
    k: int,
    sigma: float,
    alpha: float,
    *,
    bounds: Callable[[Sequence[int], float], tuple[np.ndarray, np.ndarray]] = simultaneous_bounds,
) -> float | None:
    """The l2 radius within which ``label`` is among the top ``k`` classes of the smoothed
    classifier g(x) = argmax_c P(f(x + eps) = c), eps ~ N(0, sigma^2 I), or None if not certified.

    Guarantee (Jia et al. 2020, Theorem 1): with probability at least ``1 - alpha`` over the
    ``n = sum(counts)`` noisy samples that gave ``counts`` (``counts[c]`` of them classified as
    c), if a radius R is returned then ``label`` is among the k most probable classes of g at
    every x + delta with ``||delta||_2 < R``. ``label`` must be fixed before the samples are seen
    (e.g. the true label, or a class selected with other samples).

    The bounds are simultaneous (``simultaneous_bounds``: Clopper-Pearson at ``alpha / K`` per
    class). With the other labels' upper bounds sorted in decreasing order, b_1 >= b_2 >= ...,
    S_t holds b_{k-t+1}, ..., b_k (the t smallest of the k largest) and
    ``p_St = min(sum of their upper bounds, 1 - p_lower)``; R_t solves
    ``Phi(Phi^-1(p_lower) - R/sigma) = Phi(Phi^-1(p_St) + R/sigma) / t`` (R_t = 0 if
    ``p_lower <= p_St / t``) and R = max_t R_t, found by Brent's method on a bracket that doubles
    until it holds the root (no cap). ``bounds`` gives the simultaneous bounds (default
    Clopper-Pearson for n fixed in advance; :func:`anytime_simultaneous_bounds` after sequential
    sampling). For k = 1 this is Cohen et al.'s two-class radius
    ``sigma / 2 (Phi^-1(p_lower) - Phi^-1(p_B))`` with ``p_B = min(b_1, 1 - p_lower)``; for k = K
    every label is in the top K and the radius is ``inf``.
    """
    counts = [int(c) for c in counts]
    num_classes = len(counts)
    if num_classes < 2 or min(counts) < 0 or sum(counts) < 1:
        raise ConfigError(f"counts={counts} must be >= 0 for at least 2 classes, n >= 1")
    if not 0 <= int(label) < num_classes:
        raise ConfigError(f"label={label} must be a class index in 0..{num_classes - 1}")
    (k,) = check_topk([k], num_classes, "k")
    sigma, alpha = check_sigma(sigma), check_alpha(alpha)
    if k == num_classes:
        return math.inf
    lower, upper = bounds(counts, alpha)
    p_lower = float(lower[label])
    others = np.sort(np.delete(upper, label))[::-1][:k]  # the k largest upper bounds, decreasing
    radii = []
    for t in range(1, k + 1):
        p_s = min(float(others[k - t :].sum()), 1.0 - p_lower)
        if p_lower <= p_s / t:
            continue
        if p_s <= 0.0:
            return math.inf

        # The Neyman-Pearson worst cases of GaussianNoise.worst_case_mass_lower / _upper, with
        # scipy's ufuncs on floats (the root finder evaluates them many times).
        a, b = ndtri(p_lower), ndtri(p_s)

        def gap(r: float, a: float = a, b: float = b, t: int = t) -> float:
            return ndtr(a - r / sigma) - ndtr(b + r / sigma) / t

        high = sigma
        while gap(high) > 0:  # ends: the gap tends to -1/t
            high *= 2
        radii.append(brentq(gap, 0.0, high, xtol=1e-12, rtol=1e-12))
    return float(max(radii)) if radii else None


def certify_group_topk(
    smooth: Smooth,
    indices: Sequence[int],
    xs: Sequence[torch.Tensor],
    labels: Sequence[int],
    generators: Sequence[torch.Generator],
    settings: tuple[int, int, float, int],
    ks: Sequence[int],
) -> list[tuple[CohenRecord, TopKRecord]]:
    """CERTIFY (the same records as :func:`~smoothcert.certifiers.examples.certify_group`) and,
    from the same ``n`` estimation counts, the top-k radius of each example's true label for each
    k in ``ks`` (``settings`` = ``(n0, n, alpha, batch_size)``; the top-k bounds use ``alpha``
    too, each certificate holding with probability at least 1 - alpha)."""
    alpha = settings[2]
    records, _, counts = certify_group_details(smooth, indices, xs, labels, generators, *settings)
    out = []
    for record, row in zip(records, counts.tolist(), strict=True):
        radii = tuple(topk_radius(row, record.label, k, smooth.sigma, alpha) for k in ks)
        out.append((record, TopKRecord(record.idx, record.label, tuple(ks), radii)))
    return out


def topk_records_sequential(
    records: Sequence[CohenRecord], counts: Sequence[Sequence[int]], ks: Sequence[int],
    sigma: float, alpha: float,
) -> list[TopKRecord]:  # fmt: skip
    """The top-k records of sequentially certified examples from the class counts of their
    estimation samples (drawn up to a data-dependent stopping time, so the bounds are
    :func:`anytime_simultaneous_bounds`; each certificate holds with probability >= 1 - alpha)."""
    out = []
    for record, row in zip(records, counts, strict=True):
        row = [int(c) for c in row]
        if sum(row) == 0:  # no estimation sample (a budget of 0): nothing certified
            radii = tuple(math.inf if k == len(row) else None for k in ks)
        else:
            radii = tuple(
                topk_radius(row, record.label, k, sigma, alpha, bounds=anytime_simultaneous_bounds)
                for k in ks
            )
        out.append(TopKRecord(record.idx, record.label, tuple(ks), radii))
    return out
