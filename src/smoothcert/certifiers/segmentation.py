"""SegCertify (Fischer et al., 2021, Algorithm 2) and the JointClass / IndivClass baselines.

A segmentation model ``f`` maps ``[B, C, H, W]`` pixels in [0, 1] to logits ``[B, K, H, W]``. The
smoothed model ``f^tau`` returns, per pixel, the class ``c`` the noisy model predicts with
probability ``p_c > tau`` and abstains elsewhere. What such a pixel keeps (Theorem 5.1, as its proof
shows it): for every perturbation within ``R``, the noise's radius for ``p_A = tau`` (Gaussian l2:
``R = sigma * Phi^-1(tau)``; any noise and norm of ``smoothcert.noise`` through ``Certificate``),
``c`` keeps probability above 1/2 at ``x + delta``, so no perturbation within ``R`` makes the pixel
*another class*. ``f^tau`` itself may abstain there: p = 0.8, tau = 0.75, sigma = 0.25 and
``||delta|| = 0.1 < R = 0.17`` leave ``p = Phi(Phi^-1(0.8) - 0.4) = 0.67 < tau`` (the theorem's
``f^tau(x + delta) = f^tau(x)`` is stronger than its proof). SegCertify selects each pixel's class
from ``n0`` samples and tests H0: p <= tau with ``n`` fresh samples; a multiple-testing procedure
decides which pixels to certify.

Counting stays on the device: ``[K, H, W]`` class counts for the ``n0`` samples and one ``[H, W]``
count for the ``n`` samples, never the samples themselves. A p-value depends only on its count, so
each test uses a table of ``n + 1`` values, and every correction runs on the histogram of counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError, check_alpha, check_count
from smoothcert.independence import certification_mode
from smoothcert.noise import Certificate, Noise, NoiseStream, as_certificate
from smoothcert.outcomes import ABSTAIN
from smoothcert.perturbation import ADDITIVE, ParameterPerturbation, Perturbation, is_parametric
from smoothcert.sampling import (
    ElementClassCounts,
    GivenClassCounts,
    OutputsKept,
    RunningSums,
    check_element_logits,
    example_stream,
    sample,
)
from smoothcert.stats.binomial import clopper_pearson_lower_table
from smoothcert.stats.multiple_testing import FDR, check_correction, reject_counts


def check_tau(tau: float, name: str = "tau") -> float:
    """Returns ``tau`` as a float; raises ConfigError unless 0.5 <= tau < 1."""
    tau = float(tau)
    if not 0.5 <= tau < 1.0:
        raise ConfigError(f"{name}={tau} must lie in [0.5, 1): e.g. {name}=0.75 (radius > 0)")
    return tau


def segmentation_radius(sigma: float | Certificate, tau: float) -> float:
    """The radius of Theorem 5.1 for threshold ``tau``: the noise's radius at p_A = tau (0 at
    tau = 0.5). A plain ``sigma`` is Gaussian noise in l2: ``sigma * Phi^-1(tau)``; a parameter
    perturbation gives its own radius, in its units."""
    return float(_radii(sigma).radius(check_tau(tau)))


def tau_alpha(alpha: float, num_taus: int, joint: bool) -> float:
    """The level each tau is tested at: ``alpha`` (per tau) or ``alpha / T`` (``joint``: by the
    union bound, the statement then holds for all T tau values at once with level alpha)."""
    return alpha / num_taus if joint else alpha


def tau_scope(num_taus: int, joint: bool) -> str:
    """How the certificates of several tau hold together: ``"per tau"`` (each on its own) or
    ``"joint over tau"``; ``"single tau"`` when there is only one."""
    if num_taus == 1:
        return "single tau"
    return "joint over tau" if joint else "per tau"


def guarantee(correction: str, budget: int, num_taus: int, joint: bool) -> str:
    """One line saying exactly what a SegCertify run proves (for TSV headers and logs)."""
    if joint and num_taus > 1:
        scope = f"jointly for all {num_taus} tau (each tested at alpha/{num_taus})"
    elif num_taus > 1:
        scope = "for each tau on its own, not jointly (certify.joint=true for that)"
    else:
        scope = "for this tau"
    if correction in FDR:
        bh = correction == "fdr"
        test = "Benjamini-Hochberg, assumes PRDS p-values" if bh else "Benjamini-Yekutieli"
        test += "" if bh else ", any dependence"
        return (
            f"FDR only ({test}), not family-wise: E[fraction of certified pixels whose class has "
            f"probability <= tau] <= alpha, {scope}"
        )
    wrong = "no certified pixel has" if budget == 0 else f"at most {budget} certified pixels have"
    return (
        f"family-wise {tau_scope(num_taus, joint)}: with probability >= 1 - alpha, {wrong} "
        f"class probability <= tau, {scope}; a pixel whose class probability is > tau never "
        "becomes another class within the radius at tau (the thresholded model may abstain)"
    )


# What a radius comes from: a noise's certificate in a norm, or a parameter perturbation's own.
Radii = Certificate | ParameterPerturbation
MODEL = "segmentation model"  # how errors name the base model


def certificate_of(
    x: Tensor,
    sigma: float,
    noise: Noise | str | None = None,
    norm: str | None = None,
    perturbation: Perturbation = ADDITIVE,
) -> Radii:
    """The certificate of ``noise`` (None: Gaussian) at ``sigma`` in ``norm`` (None: its natural
    norm) for images shaped like ``x``; for a parameter perturbation, the perturbation itself (its
    noise draws the parameters at ``sigma``, its ``radius`` is in its units)."""
    if not is_parametric(perturbation):
        return Certificate.of(sigma, noise, norm, x.numel())
    if noise is not None or norm is not None:
        raise ConfigError(
            f"perturbation={perturbation.name} brings its own noise and units: leave noise and "
            "norm unset"
        )
    if perturbation.sigma != float(sigma):
        raise ConfigError(
            f"sigma={float(sigma)} differs from perturbation={perturbation.name}'s noise "
            f"sigma={perturbation.sigma}: give both the same level"
        )
    return perturbation


def _radii(value: float | Radii) -> Radii:
    return (
        value if isinstance(value, (Certificate, ParameterPerturbation)) else as_certificate(value)
    )


def _argmax_maps(x: Tensor) -> Callable[[Tensor], Tensor]:
    """Logits ``[b, K, H, W]`` to class maps ``[b, H, W]``, after the shape check."""
    spatial = tuple(x.shape[1:])

    def maps(logits: Tensor) -> Tensor:
        check_element_logits(logits, spatial, MODEL)
        return logits.argmax(dim=1)

    return maps


def sample_modes_and_counts(
    model: nn.Module,
    x: Tensor,
    sigma: float,
    n0: int,
    n: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    *,
    noise: Noise | str | None = None,
    modules: Sequence[nn.Module] = (),
    perturbation: Perturbation = ADDITIVE,
) -> tuple[Tensor, Tensor]:
    """Samples the model under ``noise`` (None: N(0, sigma^2 I)) at ``sigma``: ``(modes, counts)``,
    both ``[H, W]`` int64. Every module the model calls runs in eval mode, and a model whose
    outputs are random or depend on the rest of the batch is refused (``certification_mode`` of
    ``smoothcert.independence``; ``modules``: further modules it calls). ``perturbation``: how
    the draws meet ``x`` (``x + delta``; a parameter perturbation draws from its own noise).

    ``modes`` is each pixel's most frequent class among the first ``n0`` samples (lowest class on
    ties); ``counts`` is how often that class appears among the next ``n`` independent samples.
    The noise is a stream from ``generator``, so results do not depend on ``batch_size``.
    Both passes are ``sampling.sample``: per-pixel class counts, then counts of the modes.
    """
    certificate = certificate_of(x, sigma, noise, perturbation=perturbation)
    return _modes_and_counts(model, x, certificate, n0, n, batch_size, generator, modules)


def _modes_and_counts(
    model: nn.Module,
    x: Tensor,
    certificate: Radii,
    n0: int,
    n: int,
    batch_size: int,
    generator: torch.Generator | None,
    modules: Sequence[nn.Module],
) -> tuple[Tensor, Tensor]:
    """:func:`sample_modes_and_counts` with the noise (and perturbation) of ``certificate``."""
    n0, n = check_count(n0, "n0"), check_count(n, "n")
    with _sampling(model, x, certificate, batch_size, generator, modules) as (stream, options):
        first = sample(model, [x], [n0], [stream], ElementClassCounts(name=MODEL), **options)
        modes = first.counts[0].argmax(dim=0)
        del first  # only the modes are needed from here on (frees K x H x W counts)
        targets = GivenClassCounts(modes[None], name=MODEL)
        counts = sample(model, [x], [n], [stream], targets, **options).counts[0]
    return modes, counts


def _perturbation(certificate: Radii) -> Perturbation:
    return certificate if is_parametric(certificate) else ADDITIVE


@contextmanager
def _sampling(
    model: nn.Module,
    x: Tensor,
    certificate: Radii,
    batch_size: int,
    generator: torch.Generator | None,
    modules: Sequence[nn.Module],
) -> Iterator[tuple[NoiseStream, dict]]:
    """A SegCertify-style sampling pass over ``x``: inside ``certification_mode``, its stream
    under ``certificate``'s noise and perturbation and the keywords of ``sampling.sample``
    (batch size, perturbation, the model's name)."""
    batch_size = check_count(batch_size, "batch_size")
    smoothing, perturbation = certificate.noise, _perturbation(certificate)
    stream = example_stream(smoothing, perturbation, x, generator, name="segcertify")
    options = {"batch_size": batch_size, "perturbation": perturbation, "name": MODEL}
    with certification_mode(model, x, smoothing, modules, perturbation, name=MODEL):
        yield stream, options


def certify_counts(
    modes: Tensor,
    counts: Tensor,
    n: int,
    sigma: float | Radii,
    tau: float,
    alpha: float,
    correction: str = "holm",
    budget: int = 0,
) -> tuple[Tensor, float]:
    """SegCertify's decision step: ``(classes, radius)`` with ABSTAIN where H0 is not rejected;
    ``sigma`` is a Certificate (or a parameter perturbation), or a number for Gaussian noise in
    l2."""
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
    joint: bool = False,
    *,
    noise: Noise | str | None = None,
    norm: str | None = None,
    modules: Sequence[nn.Module] = (),
    perturbation: Perturbation = ADDITIVE,
) -> tuple[Tensor, float | list[float]]:
    """SEGCERTIFY: certified per-pixel classes of the smoothed segmentation model at ``x``.

    Guarantee (Proposition 1), for one tau: with probability at least 1 - alpha over the noise,
    every pixel returned with a class (not ABSTAIN) has true probability above ``tau`` for that
    class. Such a pixel's class keeps probability above 1/2 under every perturbation within
    ``radius`` in ``norm`` (Gaussian l2: ``sigma * Phi^-1(tau)``): none makes it another class,
    though the thresholded model may abstain there (its probability can fall below tau).
    ``kfwer``: at most ``budget`` certified pixels violate this, with probability >= 1 - alpha.
    ``fdr`` / ``fdr_by``: only the expected fraction of violating pixels among the certified ones
    is at most alpha (BH needs PRDS p-values, BY holds under any dependence); not family-wise.

    Several tau: one sampling pass, one certificate per tau. Without ``joint`` each holds at level
    alpha *on its own* (the chance that some tau's certificate is wrong can exceed alpha); with
    ``joint`` each tau is tested at ``alpha / T``, so all T statements hold together with
    probability >= 1 - alpha (union bound).

    Args:
        model: maps ``[B, C, H, W]`` in [0, 1] to logits ``[B, K, H, W]``; any callable: every
            module it calls runs in eval mode here, and random or batch-coupled outputs are
            refused (``smoothcert.independence``).
        x: one image ``[C, H, W]`` in [0, 1] on the model's device.
        sigma, n0, n, alpha: noise level, selection and estimation sample counts, level.
        tau: threshold in [0.5, 1), or a list of them.
        correction: ``holm`` (default), ``bonferroni``, ``kfwer`` (with ``budget``), ``fdr`` or
            ``fdr_by``.
        batch_size: noisy copies per forward pass; results do not depend on it.
        generator: noise source (seed it for reproducible results).
        budget: tolerated false certificates for ``kfwer``.
        joint: test each of the T tau values at ``alpha / T`` (a joint statement over tau).
        noise: the smoothing noise at ``sigma`` (None: Gaussian; a name or a ``Noise``).
        norm: the norm of the radius (None: the noise's natural one; see ``smoothcert.noise``).
        modules: further modules the model calls (put in eval mode while certifying).
        perturbation: how the draws meet ``x``: ``x + delta`` (default), or a parameter
            perturbation whose noise (at ``sigma``) draws the parameters; its ``radius`` (in its
            units) is then the certificate, and ``noise`` and ``norm`` stay None.

    Returns:
        ``(classes, radius)``: LongTensor ``[H, W]`` with ABSTAIN (-1) and a float; for a list of
        tau values, ``[T, H, W]`` and a list of T radii.
    """
    taus = [check_tau(t) for t in (tau if isinstance(tau, Sequence) else [tau])]
    level = tau_alpha(check_alpha(alpha), len(taus), bool(joint))
    correction, budget = check_correction(correction, budget)
    certificate = certificate_of(x, sigma, noise, norm, perturbation)
    modes, counts = _modes_and_counts(model, x, certificate, n0, n, batch_size, generator, modules)
    results = [
        certify_counts(modes, counts, n, certificate, t, level, correction, budget) for t in taus
    ]
    if not isinstance(tau, Sequence):
        return results[0]
    return torch.stack([c for c, _ in results]), [r for _, r in results]


def indivclass_counts(
    modes: Tensor, counts: Tensor, n: int, sigma: float | Radii, alpha: float
) -> tuple[Tensor, float]:
    """IndivClass (Section 4): Cohen's CERTIFY per pixel at level alpha / N (Bonferroni); all
    pixels or none, with the radius of the smallest p_i lower bound (from the smallest count;
    Gaussian l2: min_i sigma * Phi^-1(p_i lower)). ``sigma``: a Certificate (or a parameter
    perturbation), or a number for Gaussian noise in l2.

    Guarantee: with probability >= 1 - alpha, either every pixel abstains, or every pixel's
    returned class has true probability >= that bound > 1/2, so each pixel's smoothed (argmax)
    class is the returned one under every perturbation within ``radius``.
    The alpha / N split (the paper's) makes every pixel's own bound hold jointly; the statement
    returned here rests on the worst pixel's bound alone, which the split only makes stricter.
    """
    lower = clopper_pearson_lower_table(n, check_alpha(alpha) / counts.numel())
    p_lower = float(lower[int(counts.min())])
    if p_lower <= 0.5:
        return torch.full_like(modes, ABSTAIN), 0.0
    return modes.clone(), float(_radii(sigma).radius(p_lower))


def indivclass(
    model: nn.Module,
    x: Tensor,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int = 100,
    generator: torch.Generator | None = None,
    *,
    noise: Noise | str | None = None,
    norm: str | None = None,
    modules: Sequence[nn.Module] = (),
    perturbation: Perturbation = ADDITIVE,
) -> tuple[Tensor, float]:
    """IndivClass on an image (the guarantee of ``indivclass_counts``, at level alpha); ``model``,
    ``modules`` and ``perturbation`` as in ``segcertify``."""
    certificate = certificate_of(x, sigma, noise, norm, perturbation)
    modes, counts = _modes_and_counts(model, x, certificate, n0, n, batch_size, generator, modules)
    return indivclass_counts(modes, counts, n, certificate, alpha)


def jointclass(
    model: nn.Module,
    x: Tensor,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int = 100,
    generator: torch.Generator | None = None,
    *,
    noise: Noise | str | None = None,
    norm: str | None = None,
    modules: Sequence[nn.Module] = (),
    perturbation: Perturbation = ADDITIVE,
) -> tuple[Tensor, float]:
    """JointClass (Section 4): the whole map is one class of Cohen's CERTIFY. The mode of the
    ``n0`` maps (kept, O(n0 x pixels)) must reappear exactly in the ``n`` samples; returns it with
    the noise's radius of its probability's lower bound (Gaussian l2: sigma * Phi^-1(p lower)),
    or ABSTAIN everywhere.

    Guarantee: with probability >= 1 - alpha, either every pixel abstains, or the noisy model
    outputs exactly the returned map with probability >= that bound > 1/2, so the smoothed
    classifier over whole maps returns it under every perturbation within ``radius``. ``model``,
    ``modules`` and ``perturbation`` as in ``segcertify``.
    """
    certificate = certificate_of(x, sigma, noise, norm, perturbation)
    alpha = check_alpha(alpha)
    n0, n = check_count(n0, "n0"), check_count(n, "n")
    maps_of = _argmax_maps(x)
    with _sampling(model, x, certificate, batch_size, generator, modules) as (stream, options):
        kept = sample(model, [x], [n0], [stream], OutputsKept(maps_of), **options)
        (maps,) = kept.result()
        unique, frequency = torch.unique(maps.flatten(1), dim=0, return_counts=True)
        mode = unique[frequency.argmax()].view(maps.shape[1:])

        def hit(logits: Tensor) -> Tensor:
            return (maps_of(logits) == mode).flatten(1).all(1)

        hits = int(sample(model, [x], [n], [stream], RunningSums(hit), **options).sums[0])
    p_lower = float(clopper_pearson_lower_table(n, alpha)[hits])
    if p_lower <= 0.5:
        return torch.full_like(mode, ABSTAIN), 0.0
    return mode, float(certificate.radius(p_lower))


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
