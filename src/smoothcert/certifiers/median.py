"""Percentile (median) smoothing (Chiang et al. 2020) of any real-vector output f(x) in R^m.

``h_p(x)`` is the coordinate-wise p-th percentile of ``f(x + G)``, G ~ N(0, sigma^2 I). For every
``||delta||_2 <= eps`` and every coordinate, ``h_{p_lo}(x) <= h_p(x + delta) <= h_{p_hi}(x)``
with ``p_lo = P_lower(p, eps)`` and ``p_hi = P_upper(p, eps)``, the noise's Neyman-Pearson worst
case masses (Gaussian: ``Phi(Phi^-1(p) -/+ eps / sigma)``; for the median ``Phi(-/+ eps /
sigma)``). From n samples the two percentiles are bounded by order statistics
(``smoothcert.stats.order_statistics``): ``Y_(q_l) <= h_{p_lo}(x)`` and ``Y_(q_u) >= h_{p_hi}(x)``,
each with probability at least 1 - alpha_bound. So the certified interval
``[Y_(q_l), Y_(q_u)]`` holds h_p(x + delta) for every such delta at once.

Guarantees (``guarantee``), for a total failure probability ``alpha``:

- ``per_coordinate``: alpha_bound = alpha / 2; each coordinate's interval holds with probability
  at least 1 - alpha (the coordinates' failures may add up: a box of 4 such intervals fails with
  probability up to 4 alpha);
- ``per_box``: the output is a sequence of boxes of ``box_size`` consecutive coordinates (a box:
  x1, y1, x2, y2; a detection slot: x1, y1, x2, y2, score, label, the label and score included);
  alpha_bound = alpha / (2 box_size) (Bonferroni over the 2 box_size one-sided bounds of a box);
  all intervals of each box hold together with probability at least 1 - alpha (different boxes'
  failures may add up);
- ``simultaneous``: alpha_bound = alpha / (2 m) (Bonferroni over the 2m bounds); all m intervals
  hold together with probability at least 1 - alpha.

The default (``guarantee=None``) is ``per_box`` when ``box_size`` is given (boxes, detections)
and ``per_coordinate`` otherwise (scalar outputs).

Each eps of a list is a separate statement (the ranks differ, the samples are shared). All n
samples are used (the sampler streams them in batches; a short last batch is kept).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from smoothcert.certifiers.center import check_perturbation
from smoothcert.errors import ConfigError, check_alpha, check_count
from smoothcert.independence import certification_mode
from smoothcert.noise import Noise, NoiseStream, example_generator
from smoothcert.perturbation import ADDITIVE, Perturbation, is_parametric
from smoothcert.sampling import OutputsKept, example_stream, sample
from smoothcert.stats.order_statistics import QuantileRanks, quantile_ranks, smallest_n

GUARANTEES = ("per_coordinate", "per_box", "simultaneous")


def check_level(p: float, name: str = "certify.p") -> float:
    """``p`` as a float in (0, 1) (0.5: the median); a one-line ConfigError otherwise."""
    value = float(p)
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name}={p} must lie in (0, 1): 0.5 is the median")
    return value


def check_radii(eps: float | Sequence[float], name: str = "certify.eps") -> list[float]:
    """The input radii as a non-empty list of floats >= 0; a one-line ConfigError otherwise."""
    values = [float(eps)] if isinstance(eps, (int, float)) else [float(e) for e in eps]
    if not values or min(values) < 0 or not all(math.isfinite(e) for e in values):
        raise ConfigError(f"{name}={eps} must be a radius >= 0 or a non-empty list of them")
    return values


def resolve_guarantee(guarantee: str | None, box_size: int | None) -> str:
    """The guarantee's name (None: ``per_box`` for boxes, ``per_coordinate`` otherwise); a
    one-line ConfigError for an unknown name or ``per_box`` without a box size."""
    if guarantee is None:
        return "per_box" if box_size else "per_coordinate"
    if guarantee not in GUARANTEES:
        raise ConfigError(f"certify.guarantee={guarantee!r}: use one of {', '.join(GUARANTEES)}")
    if guarantee == "per_box" and not box_size:
        raise ConfigError(
            "certify.guarantee=per_box needs outputs made of boxes (a box or detection model): "
            "use per_coordinate or simultaneous for other outputs"
        )
    return guarantee


def bound_alpha(alpha: float, m: int, guarantee: str, box_size: int | None = None) -> float:
    """The failure probability of one one-sided bound: alpha / 2 per coordinate, alpha / (2
    box_size) per box of ``box_size`` coordinates, alpha / (2 m) simultaneously over m coordinates
    (Bonferroni)."""
    guarantee = resolve_guarantee(guarantee, box_size)
    if guarantee == "per_coordinate":
        return alpha / 2
    if guarantee == "per_box":
        if m % box_size:
            raise ConfigError(
                f"certify.guarantee=per_box: the output's {m} coordinates are not whole boxes of "
                f"{box_size}"
            )
        return alpha / (2 * box_size)
    return alpha / (2 * m)


def percentile_levels(noise: Noise, p: float, eps: float) -> tuple[float, float]:
    """(p_lo, p_hi) = (P_lower(p, eps), P_upper(p, eps)) from the noise (Gaussian only)."""
    return float(noise.worst_case_mass_lower(p, eps)), float(noise.worst_case_mass_upper(p, eps))


def as_output_vectors(out: Tensor, check_nan: bool = True) -> Tensor:
    """The base outputs of a batch as ``[B, m]`` floats (``[B]`` is m = 1); a one-line
    ConfigError for an output that is not a real vector (integers, more dimensions), and a
    FloatingPointError for NaN unless ``check_nan`` is False (the sampler checks its outputs)."""
    if not torch.is_floating_point(out) or out.dim() not in (1, 2):
        raise ConfigError(
            f"median smoothing needs a real vector per input (float [batch, m]), got "
            f"{out.dtype} {tuple(out.shape)}: use a regression output, not labels or maps"
        )
    if check_nan and bool(torch.isnan(out).any()):
        raise FloatingPointError("the base model returned NaN on noisy inputs")
    return out.float().reshape(len(out), -1)


def _sampled_vectors(out: Tensor) -> Tensor:
    return as_output_vectors(out, check_nan=False)


def order_statistic_bounds(
    sorted_values: Tensor, ranks: QuantileRanks, dim: int = 0
) -> tuple[Tensor, Tensor]:
    """(lower, upper): the ``ranks.lower``-th and ``ranks.upper``-th smallest values (1-based)
    along ``dim`` of ``sorted_values`` (sorted along it), -inf / +inf where a rank is None."""
    n = sorted_values.shape[dim]
    if n != ranks.n:
        raise ValueError(f"ranks are for n={ranks.n} samples, got {n}")
    shape = list(sorted_values.shape)
    shape.pop(dim)

    def pick(rank: int | None, fill: float) -> Tensor:
        if rank is None:
            return sorted_values.new_full(shape, fill)
        return sorted_values.select(dim, rank - 1)  # 1-based rank -> 0-based index

    return pick(ranks.lower, -math.inf), pick(ranks.upper, math.inf)


def empirical_quantile(sorted_values: Tensor, p: float, dim: int = 0) -> Tensor:
    """The ceil(p n)-th smallest value along ``dim`` (the lower median for p = 1/2): the plug-in
    estimate of h_p(x)."""
    n = sorted_values.shape[dim]
    return sorted_values.select(dim, max(1, math.ceil(p * n - 1e-9)) - 1)


@dataclass
class PercentileCertificate:
    """Median smoothing of one input: the estimate of h_p(x) and, per eps, the certified
    interval ``[lower, upper]`` of every coordinate of h_p(x + delta), ||delta||_2 <= eps."""

    estimate: Tensor  # [m]
    eps: list[float]
    lower: Tensor  # [len(eps), m], -inf where the rank does not exist
    upper: Tensor  # [len(eps), m], +inf likewise
    ranks: list[QuantileRanks]
    guarantee: str
    alpha: float


@dataclass
class MedianExample:
    """One dataset example certified by :meth:`PercentileSmooth.certify_example`: the n sorted
    outputs ``values`` ``[n, m]``, their ``certificate``, and ``rounding``, the CPU generator of
    the expectation bound's randomized rounding (``median_expectation.mean_interval``), seeded
    from the example's noise seed + 1 (so independent of its noise, and fixed by ``(seed,
    index)``)."""

    values: Tensor
    certificate: PercentileCertificate
    rounding: torch.Generator


class PercentileSmooth:
    """Coordinate-wise percentile smoothing of ``base_function`` (``[B, *x.shape]`` -> ``[B, m]``
    floats) under ``noise`` (only noises with a worst-case mass: Gaussian).

    Guarantee: for each eps, every coordinate's interval (``per_coordinate``), all intervals of
    each box of ``box_size`` consecutive coordinates at once (``per_box``, the default when
    ``box_size`` is given), or all of them at once (``simultaneous``), holds h_p(x + delta) for
    all ||delta||_2 <= eps with probability at least 1 - ``alpha``.

    While sampling, every module ``base_function`` calls runs in eval mode (restored afterwards;
    ``modules``: further ones), and a function whose outputs are random or depend on the rest of
    the batch is refused (ConfigError; ``smoothcert.independence``).

    ``perturbation`` is how the draws meet the input (``x + delta`` by default); a transformation
    that composes exactly draws its parameters from ``noise`` (its own noise), and eps is then in
    its units (rotation is refused). ``input_range=(low, high)`` requires one image ``[C, H, W]``
    with values in it; None (default) accepts any shape. Samples are drawn by the sampler
    (``smoothcert.sampling.sample``, outputs kept; a NaN output raises FloatingPointError).
    """

    def __init__(
        self,
        base_function: Callable[[Tensor], Tensor],
        noise: Noise,
        eps: float | Sequence[float],
        n: int = 2000,
        alpha: float = 0.001,
        p: float = 0.5,
        guarantee: str | None = None,
        batch_size: int = 1000,
        box_size: int | None = None,
        modules: Sequence[nn.Module] = (),
        perturbation: Perturbation = ADDITIVE,
        input_range: tuple[float, float] | None = None,
    ) -> None:
        if is_parametric(perturbation):
            check_perturbation(perturbation, noise.certified_sigma, None, "median smoothing")
            if perturbation.noise.name != noise.name:
                raise ConfigError(
                    f"perturbation={perturbation.name} draws its parameters from "
                    f"{perturbation.noise.name} noise, not {noise.name}: give median smoothing "
                    "its noise (perturbation.noise)"
                )
        if not noise.worst_case_mass:
            raise ConfigError(
                f"median smoothing needs the worst-case mass P_lower/P_upper in l2, which "
                f"noise={noise.name} lacks: use noise=gaussian"
            )
        self.base_function, self.noise = base_function, noise
        self.eps = check_radii(eps)
        self.n = check_count(n, "certify.n")
        self.alpha = check_alpha(alpha, "certify.alpha")
        self.p = check_level(p)
        self.box_size = None if box_size is None else check_count(box_size, "box_size")
        self.guarantee = resolve_guarantee(guarantee, self.box_size)
        self.batch_size = check_count(batch_size, "certify.batch_size")
        self.modules = tuple(modules)
        self.perturbation, self.input_range = perturbation, input_range
        self._ranks: dict[int, list[QuantileRanks]] = {}

    def ranks(self, m: int) -> list[QuantileRanks]:
        """The ranks of each eps for outputs of m coordinates (computed once per m)."""
        if m not in self._ranks:
            alpha = bound_alpha(self.alpha, m, self.guarantee, self.box_size)
            levels = [percentile_levels(self.noise, self.p, e) for e in self.eps]
            self._ranks[m] = [quantile_ranks(self.n, *pair, alpha) for pair in levels]
        return self._ranks[m]

    def check_certifiable(self, m: int) -> None:
        """A one-line ConfigError, naming the smallest n that works, unless n samples give finite
        bounds at every eps for outputs of m coordinates."""
        alpha = bound_alpha(self.alpha, m, self.guarantee, self.box_size)
        widest = max(self.eps)
        levels = percentile_levels(self.noise, self.p, widest)
        need = smallest_n(*levels, alpha)
        if self.n < need:
            raise ConfigError(
                f"certify.n={self.n} is too small for confidence 1 - {self.alpha:g} "
                f"({self.guarantee}, m={m}) at eps={widest:g}, sigma={self.noise.certified_sigma:g}"
                f": use certify.n >= {need} (or a smaller eps / larger alpha)"
            )

    def sorted_outputs(self, x: Tensor, stream: NoiseStream) -> Tensor:
        """The n base outputs ``[n, m]`` on perturbed copies of x (draws from ``stream``), sorted
        along the samples."""
        modes = (self.base_function, x, self.noise, self.modules, self.perturbation)
        with certification_mode(*modes):
            kept = sample(
                self.base_function, [x], [self.n], [stream], OutputsKept(_sampled_vectors),
                batch_size=self.batch_size, perturbation=self.perturbation, check="nan",
            )  # fmt: skip
        return kept.result()[0].sort(dim=0).values

    def stream_for(self, x: Tensor, generator: torch.Generator | None = None) -> NoiseStream:
        """The sampler's stream set-up for x (``generator=None``: seeded from torch's global
        RNG); ``input_range`` checks x first."""
        options = {"input_range": self.input_range, "name": "median smoothing", "dtype": x.dtype}
        return example_stream(self.noise, self.perturbation, x, generator, **options)

    def certify(self, x: Tensor, generator: torch.Generator | None = None) -> PercentileCertificate:
        """The estimate of h_p(x) and every eps's certified intervals from n noisy outputs."""
        return self.certify_sorted(self.sorted_outputs(x, self.stream_for(x, generator)))

    def certify_example(self, x: Tensor, seed: int, index: int) -> MedianExample:
        """Dataset example ``index``: its noise from ``example_generator(seed, index)`` (the one
        seeding rule: the result depends on neither batch size nor sharding), its n sorted
        outputs, their certificate and the expectation bound's rounding generator."""
        generator = example_generator(seed, index, x.device)
        values = self.sorted_outputs(x, self.stream_for(x, generator))
        rounding = torch.Generator().manual_seed(generator.initial_seed() + 1)
        return MedianExample(values, self.certify_sorted(values), rounding)

    def certify_sorted(self, values: Tensor) -> PercentileCertificate:
        """``certify`` from the n outputs ``[n, m]`` already drawn and sorted along the samples."""
        m = values.shape[1]
        if m not in self._ranks:
            self.check_certifiable(m)
        ranks = self.ranks(m)
        bounds = [order_statistic_bounds(values, r) for r in ranks]
        lower = torch.stack([lo for lo, _ in bounds])
        upper = torch.stack([hi for _, hi in bounds])
        estimate = empirical_quantile(values, self.p)
        return PercentileCertificate(
            estimate, self.eps, lower, upper, ranks, self.guarantee, self.alpha
        )

    def statement(self, m: int) -> str:
        """What each record guarantees, for headers and plot titles."""
        if self.guarantee == "per_coordinate":
            scope = "each coordinate separately (alpha / 2 per bound; a box's failures add up)"
        elif self.guarantee == "per_box":
            k = self.box_size
            scope = (
                f"all {k} coordinates of each box at once (Bonferroni, alpha / {2 * k} per "
                f"one-sided bound; {m // k} boxes, each separately)"
            )
        else:
            scope = f"all {m} coordinates at once (Bonferroni, alpha / {2 * m} per bound)"
        return (
            f"for each eps: P[h_p(x + delta) leaves [lower, upper] for some ||delta||_2 <= eps] "
            f"<= {self.alpha:g}, {scope}"
        )


def interval_width(certificate: PercentileCertificate) -> np.ndarray:
    """``upper - lower`` per eps and coordinate (inf where a bound is infinite)."""
    return (certificate.upper - certificate.lower).cpu().numpy()
