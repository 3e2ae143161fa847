"""SegCertify (Fischer et al., 2021, Algorithm 2) and the JointClass / IndivClass baselines.

A segmentation model ``f`` maps ``[B, C, H, W]`` pixels in [0, 1] to logits ``[B, K, H, W]``. The
smoothed model ``f^tau`` returns, per pixel, the class the noisy model predicts with probability
above ``tau`` and abstains elsewhere; it is robust at radius ``sigma * Phi^-1(tau)`` (Theorem 5.1).
SegCertify selects each pixel's class from ``n0`` samples and tests H0: p <= tau with ``n`` fresh
samples; a multiple-testing procedure decides which pixels to certify.

Counting stays on the device: ``[K, H, W]`` class counts for the ``n0`` samples and one ``[H, W]``
count for the ``n`` samples, never the samples themselves. A p-value depends only on its count, so
each test uses a table of ``n + 1`` values, and every correction runs on the histogram of counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from scipy.stats import beta as beta_dist
from scipy.stats import binom, norm
from torch import Tensor, nn

from smoothcert.errors import ConfigError, check_alpha, check_count, check_sigma, check_unit_range
from smoothcert.noise import GaussianNoiseStream
from smoothcert.smooth import ABSTAIN, eval_mode

# Family-wise procedures: P(any pixel certified with true probability <= tau) <= alpha
# (kfwer: P(at least budget + 1 such pixels) <= alpha). "fdr" (Benjamini-Hochberg) bounds only the
# expected fraction of false certificates: it is NOT a family-wise certificate.
FAMILY_WISE = ("holm", "bonferroni", "kfwer")
CORRECTIONS = (*FAMILY_WISE, "fdr")


def check_tau(tau: float, name: str = "tau") -> float:
    """Returns ``tau`` as a float; raises ConfigError unless 0.5 <= tau < 1."""
    tau = float(tau)
    if not 0.5 <= tau < 1.0:
        raise ConfigError(f"{name}={tau} must lie in [0.5, 1): e.g. {name}=0.75 (radius > 0)")
    return tau


def check_correction(correction: str, budget: int = 0) -> tuple[str, int]:
    """Validates the multiple-testing procedure and the k-FWER error budget (one-line errors)."""
    if correction not in CORRECTIONS:
        raise ConfigError(
            f"correction={correction!r} is unknown: use one of {', '.join(CORRECTIONS)}"
        )
    budget = check_count(budget, "budget", minimum=0)
    if budget > 0 and correction != "kfwer":
        raise ConfigError(f"budget={budget} needs correction=kfwer (got {correction!r})")
    return correction, budget


def segmentation_radius(sigma: float, tau: float) -> float:
    """The l2 radius sigma * Phi^-1(tau) of Theorem 5.1 (0 at tau = 0.5)."""
    return float(sigma * norm.ppf(tau))


def pvalue_table(n: int, tau: float, device: torch.device | str | None = None) -> Tensor:
    """``table[k] = P(Bin(n, tau) >= k)`` for k = 0..n (float64): the one-sided p-value of H0:
    p <= tau when the selected class appeared k times in n samples (scipy's ``binom.sf``)."""
    counts = np.arange(n + 1)
    return torch.as_tensor(binom.sf(counts - 1, n, tau), dtype=torch.float64, device=device)


def reject_levels(
    pvalues: Tensor, sizes: Tensor, alpha: float, correction: str = "holm", budget: int = 0
) -> Tensor:
    """Decisions of a multiple-testing procedure for hypotheses grouped by p-value.

    Args:
        pvalues: float64 ``[L]``, non-decreasing: the distinct p-value levels.
        sizes: ``[L]`` number of hypotheses at each level (zero allowed).
        alpha: the level.
        correction: ``holm``, ``bonferroni``, ``kfwer`` (Lehmann-Romano step-down with critical
            values k*alpha/N for i <= k and k*alpha/(N + k - i) after, k = budget + 1; Holm when
            budget = 0) or ``fdr`` (Benjamini-Hochberg step-up; not family-wise).
        budget: tolerated false rejections for ``kfwer``.

    Returns:
        bool ``[L]``: whether the hypotheses at each level are rejected. Ties are handled as in
        statsmodels' ``multipletests`` (all hypotheses sharing a p-value get the same decision),
        with the same floating-point comparisons, so decisions are identical to it.
    """
    sizes = sizes.to(torch.int64)
    total = int(sizes.sum())
    occupied = sizes > 0
    before = torch.cumsum(sizes, 0) - sizes  # hypotheses with a smaller p-value
    if total == 0:
        return torch.zeros_like(occupied)
    if correction == "bonferroni":
        return occupied & (pvalues <= alpha / float(total))
    if correction == "fdr":
        last_rank = (before + sizes).to(torch.float64)
        passed = occupied & (pvalues <= (last_rank / float(total)) * alpha)
        # Step-up: everything up to the last passing level is rejected.
        return occupied & (
            torch.flip(torch.cummax(torch.flip(passed.int(), [0]), 0).values, [0]) > 0
        )
    k = budget + 1
    rank = torch.clamp(before + 1, min=k)  # the first (strictest) rank within the level
    critical = (k * alpha) / (total + k - rank).to(torch.float64)
    passed = (pvalues <= critical) | ~occupied
    # Step-down: reject up to (not including) the first failing level.
    return occupied & (torch.cummin(passed.int(), 0).values > 0)


def reject_counts(
    counts: Tensor, n: int, tau: float, alpha: float, correction: str = "holm", budget: int = 0
) -> Tensor:
    """Per-pixel decisions (bool, shape of ``counts``) for H0: p <= tau given ``counts`` of the
    selected class among ``n`` samples; the correction runs on the ``n + 1``-bin count histogram."""
    table = pvalue_table(n, tau, counts.device)
    sizes = torch.bincount(counts.flatten(), minlength=n + 1)
    # Larger counts have smaller p-values: levels ascending in p are counts n, n - 1, ..., 0.
    rejected = reject_levels(table.flip(0), sizes.flip(0), alpha, correction, budget).flip(0)
    return rejected[counts]


def _stream(x: Tensor, sigma: float, generator: torch.Generator | None) -> GaussianNoiseStream:
    if x.dim() != 3:
        raise ConfigError(f"segcertify expects one image [C, H, W], got shape {tuple(x.shape)}")
    check_unit_range(x, "segcertify input")
    if generator is None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(torch.randint(0, 2**62, ()).item()))
    return GaussianNoiseStream(tuple(x.shape), sigma, generator, x.device, torch.float32)


def _predictions(
    model: nn.Module, x: Tensor, num: int, batch_size: int, stream: GaussianNoiseStream
) -> Iterator[tuple[Tensor, int]]:
    """Yields ``(argmax [b, H, W], K)`` for successive noisy batches (inference mode), then raises
    FloatingPointError if any logit was NaN or infinite (checked once, on the device)."""
    finite = torch.ones((), dtype=torch.bool, device=x.device)
    remaining = num
    with torch.inference_mode():
        while remaining > 0:
            size = min(batch_size, remaining)
            logits = model(stream.take(size).add_(x))
            if logits.dim() != 4 or tuple(logits.shape[2:]) != tuple(x.shape[1:]):
                raise ValueError(
                    f"the segmentation model returned logits of shape {tuple(logits.shape)}, "
                    f"expected [batch, K, {x.shape[1]}, {x.shape[2]}]: certification is at full "
                    "resolution, so upsample the logits to the input size"
                )
            low, high = torch.aminmax(logits)  # NaN propagates; no logits-sized temporaries
            finite &= torch.isfinite(low) & torch.isfinite(high)
            yield logits.argmax(dim=1), logits.shape[1]
            remaining -= size
    if not bool(finite):
        raise FloatingPointError(
            "the segmentation model returned NaN or infinite logits under noise: check the "
            "checkpoint and the input range; certificates from such a model are meaningless"
        )


def sample_modes_and_counts(
    model: nn.Module,
    x: Tensor,
    sigma: float,
    n0: int,
    n: int,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Samples the model under N(0, sigma^2 I) noise: ``(modes, counts)``, both ``[H, W]`` int64.

    ``modes`` is each pixel's most frequent class among the first ``n0`` samples (lowest class on
    ties); ``counts`` is how often that class appears among the next ``n`` independent samples.
    The noise is a stream from ``generator``, so results do not depend on ``batch_size``.
    """
    sigma, n0, n = check_sigma(sigma), check_count(n0, "n0"), check_count(n, "n")
    batch_size = check_count(batch_size, "batch_size")
    stream = _stream(x, sigma, generator)
    class_counts: Tensor | None = None
    with eval_mode(model):
        for preds, num_classes in _predictions(model, x, n0, batch_size, stream):
            if class_counts is None:
                class_counts = x.new_zeros((num_classes, *preds.shape[1:]), dtype=torch.int32)
                ones = torch.ones((1, 1, 1), dtype=torch.int32, device=x.device)
            class_counts.scatter_add_(0, preds, ones.expand(preds.shape))
        assert class_counts is not None
        modes = class_counts.argmax(dim=0)
        del class_counts  # only the modes are needed from here on (frees K x H x W counts)
        counts = torch.zeros_like(modes)
        for preds, _ in _predictions(model, x, n, batch_size, stream):
            counts += (preds == modes).sum(dim=0)
    return modes, counts


def certify_counts(
    modes: Tensor,
    counts: Tensor,
    n: int,
    sigma: float,
    tau: float,
    alpha: float,
    correction: str = "holm",
    budget: int = 0,
) -> tuple[Tensor, float]:
    """SegCertify's decision step: ``(classes, radius)`` with ABSTAIN where H0 is not rejected."""
    rejected = reject_counts(counts, n, check_tau(tau), alpha, correction, budget)
    classes = torch.where(rejected, modes, torch.full_like(modes, ABSTAIN))
    return classes, segmentation_radius(sigma, tau)


def segcertify(
    model: nn.Module,
    x: Tensor,
    sigma: float,
    n0: int,
    n: int,
    tau: float | Sequence[float],
    alpha: float,
    correction: str = "holm",
    batch_size: int = 100,
    generator: torch.Generator | None = None,
    budget: int = 0,
) -> tuple[Tensor, float | list[float]]:
    """SEGCERTIFY: certified per-pixel classes of the smoothed segmentation model at ``x``.

    Guarantee (Proposition 1): with probability at least 1 - alpha over the noise, every pixel
    returned with a class (not ABSTAIN) has true probability above ``tau`` for that class, hence
    keeps it for every perturbation with l2 norm below ``radius = sigma * Phi^-1(tau)``
    (``kfwer``: at most ``budget`` pixels violate this; ``fdr``: only the expected fraction of
    violations is bounded, which is not a family-wise guarantee).

    Args:
        model: maps ``[B, C, H, W]`` in [0, 1] to logits ``[B, K, H, W]`` (put in eval mode here).
        x: one image ``[C, H, W]`` in [0, 1] on the model's device.
        sigma, n0, n, alpha: noise level, selection and estimation sample counts, level.
        tau: threshold in [0.5, 1), or several: one sampling pass, one certificate per tau, each
            at level alpha on its own.
        correction: ``holm`` (default), ``bonferroni``, ``kfwer`` (with ``budget``) or ``fdr``.
        batch_size: noisy copies per forward pass; results do not depend on it.
        generator: noise source (seed it for reproducible results).

    Returns:
        ``(classes, radius)``: LongTensor ``[H, W]`` with ABSTAIN (-1) and a float; for a list of
        tau values, ``[T, H, W]`` and a list of T radii.
    """
    taus = [check_tau(t) for t in (tau if isinstance(tau, Sequence) else [tau])]
    alpha = check_alpha(alpha)
    correction, budget = check_correction(correction, budget)
    modes, counts = sample_modes_and_counts(model, x, sigma, n0, n, batch_size, generator)
    results = [certify_counts(modes, counts, n, sigma, t, alpha, correction, budget) for t in taus]
    if not isinstance(tau, Sequence):
        return results[0]
    return torch.stack([c for c, _ in results]), [r for _, r in results]


def clopper_pearson_lower_table(n: int, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper-Pearson lower bounds for k = 0..n successes (0 at k = 0)."""
    k = np.arange(n + 1)
    with np.errstate(invalid="ignore"):
        bounds = beta_dist.ppf(alpha, k, n - k + 1)
    return np.where(k == 0, 0.0, bounds)


def indivclass_counts(
    modes: Tensor, counts: Tensor, n: int, sigma: float, alpha: float
) -> tuple[Tensor, float]:
    """IndivClass (Section 4): Cohen's CERTIFY per pixel at level alpha / N (Bonferroni); all
    pixels or none, with radius min_i sigma * Phi^-1(p_i lower) (from the smallest count)."""
    lower = clopper_pearson_lower_table(n, check_alpha(alpha) / counts.numel())
    p_lower = float(lower[int(counts.min())])
    if p_lower <= 0.5:
        return torch.full_like(modes, ABSTAIN), 0.0
    return modes.clone(), float(sigma * norm.ppf(p_lower))


def indivclass(
    model: nn.Module,
    x: Tensor,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, float]:
    """IndivClass on an image: Cohen's guarantee for the whole map at level alpha."""
    modes, counts = sample_modes_and_counts(model, x, sigma, n0, n, batch_size, generator)
    return indivclass_counts(modes, counts, n, sigma, alpha)


def jointclass(
    model: nn.Module,
    x: Tensor,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, float]:
    """JointClass (Section 4): the whole map is one class of Cohen's CERTIFY. The mode of the
    ``n0`` maps (kept, O(n0 x pixels)) must reappear exactly in the ``n`` samples; returns it with
    radius sigma * Phi^-1(p lower), or ABSTAIN everywhere. Guarantee at level alpha."""
    sigma, alpha = check_sigma(sigma), check_alpha(alpha)
    n0, n = check_count(n0, "n0"), check_count(n, "n")
    batch_size = check_count(batch_size, "batch_size")
    stream = _stream(x, sigma, generator)
    with eval_mode(model):
        maps = torch.cat([p for p, _ in _predictions(model, x, n0, batch_size, stream)])
        unique, frequency = torch.unique(maps.flatten(1), dim=0, return_counts=True)
        mode = unique[frequency.argmax()].view(maps.shape[1:])
        hits = sum(
            int((p == mode).flatten(1).all(1).sum())
            for p, _ in _predictions(model, x, n, batch_size, stream)
        )
    p_lower = float(clopper_pearson_lower_table(n, alpha)[hits])
    if p_lower <= 0.5:
        return torch.full_like(mode, ABSTAIN), 0.0
    return mode, float(sigma * norm.ppf(p_lower))


def score_segmentation(
    classes: Tensor, mask: Tensor, num_classes: int, ignore_index: int = 255
) -> Tensor:
    """Per-image counts, float64 ``[4 + 2K]``: correct, valid (not ignored) and abstained pixels,
    all pixels, then per-class intersections and unions (App. A.1). Abstentions count as errors
    and belong to no class; ignored ground-truth pixels are left out everywhere except "all"."""
    classes, mask = classes.flatten(), mask.flatten().to(classes.device)
    valid = mask != ignore_index
    pred, truth = classes[valid], mask[valid]
    hit = pred == truth
    intersection = torch.bincount(truth[hit], minlength=num_classes)
    predicted = torch.bincount(pred[pred >= 0], minlength=num_classes)
    union = predicted + torch.bincount(truth, minlength=num_classes) - intersection
    everything = torch.tensor(classes.numel(), device=classes.device)
    head = torch.stack([hit.sum(), valid.sum(), (classes == ABSTAIN).sum(), everything])
    return torch.cat([head, intersection, union]).double().cpu()


def summarize_scores(scores: Tensor) -> dict[str, float]:
    """Pooled metrics of ``score_segmentation`` rows ``[M, 4 + 2K]``: per-pixel accuracy over all
    images, mIoU as the mean IoU over every (image, class) pair with a non-empty union (App. A.1),
    and the abstention rate over all pixels. NaN where nothing was counted."""
    scores = torch.atleast_2d(scores).double()
    num_classes = (scores.shape[1] - 4) // 2
    correct, valid, abstained, total = scores[:, :4].sum(dim=0).tolist()
    intersection, union = scores[:, 4 : 4 + num_classes], scores[:, 4 + num_classes :]
    present = union > 0
    nan = float("nan")
    return {
        "pixel_acc": correct / valid if valid else nan,
        "miou": float((intersection[present] / union[present]).mean()) if present.any() else nan,
        "abstain": abstained / total if total else nan,
    }
