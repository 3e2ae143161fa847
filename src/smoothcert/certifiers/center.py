"""Center smoothing (Kumar and Goldstein): certified structured outputs under an output distance.

For an input x, ``smooth`` (Algorithm 1) draws n outputs f(x + N(0, sigma^2 I)), takes as center
the sample with the smallest median distance to all n samples (a 2-approximation of the smallest
ball holding half the points, beta = 2 gamma for a gamma-relaxed distance), and checks on n fresh
samples that the ball around it of that median radius r holds enough mass:
Delta1 = sqrt(ln(2 / alpha1) / (2 n)), Delta2 = 1/2 - (p_hat - Delta1), abstain if
delta < max(Delta1, Delta2). ``certify`` (Algorithm 2) then draws m samples, and for each eps_in
sets p = Phi(Phi^-1(1/2 + delta) + eps_in / sigma) (the Gaussian worst-case mass
P_upper(1/2 + delta, eps_in) of ``smoothcert.noise``; no other noise has one, so only Gaussian
noise is accepted), q = p + sqrt(ln(1 / alpha2) / (2 m)), R = the ceil(q m)-th smallest distance
to the center (no certificate if q > 1) and eps_out = gamma (1 + 2 gamma) R.

What is proven, for one x' at a time: fix x' with ||x' - x|| <= eps_in before any noise is drawn,
and smooth x' with noise independent of that at x. Then, with probability at least
1 - alpha1 - alpha2, d(smoothed(x), smoothed(x')) <= eps_out or one of the two abstains. alpha2
is spent at x (the ball B(center, R) holds at least 1/2 + delta of the output mass at every such
x' at once), alpha1 at x' (its center is a good one), so the guarantee is not uniform over all x'
at once: an x' picked after seeing the noise, or many x' smoothed with shared noise, are not
covered by it.

Distances between samples are computed in chunks on the samples' device, by matrix products
(without cancellation, see ``smoothcert.distances``) to rank the samples, then exactly (from
differences) for the few best and for the returned radius. When the n samples would not fit
``memory_bytes``, or with ``candidates=c``, the center is chosen among the first c samples only
(medians still over all n samples, streamed in batches); c is at least ``min_candidates``, see
``CenterSmooth``. Every module the certifier calls runs in eval mode (restored afterwards), and the
base function's rows are probed for independence first (``smoothcert.independence``).

All draws go through the sampler (``smoothcert.sampling``: one stream per call from
``example_stream``, read in order: n samples for the center, n for its mass check, m for the
certificate), which keeps what each step needs: the outputs (``OutputsKept``), the distances to
the center (``DistancesTo``) or, in candidates mode, the candidates' distances
(``CandidateDistances``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import Tensor, nn

from smoothcert.distances import Distance, build_distance
from smoothcert.errors import ConfigError, check_count, check_sigma, require
from smoothcert.independence import certification_mode
from smoothcert.noise import (
    GaussianNoise,
    Noise,
    NoiseStream,
    example_generator,
    resolve_noise,
    supported_pairs,
)
from smoothcert.perturbation import ADDITIVE, Perturbation, is_parametric
from smoothcert.records.center import CenterRecord
from smoothcert.sampling import OutputsKept, Reducer, example_stream, sample
from smoothcert.stats.binomial import half_sample_failure
from smoothcert.stats.concentration import dkw_samples, dkw_slack, hoeffding_slack
from smoothcert.stats.order_statistics import order_statistic_quantile

ABSTAIN_RADIUS = math.inf
# Candidates mode splits the alpha1 / 2 that full mode spends on Lemma 1 (see CenterSmooth):
MISS_SHARE = 0.1  # of alpha1: no candidate lies in the smallest ball of mass 1/2 + delta
BALL_SHARE = 0.4  # of alpha1: that ball holds fewer than ceil(n / 2) of the n samples
SHORTLIST = 8  # samples of smallest ranked median whose medians are recomputed exactly
R = TypeVar("R", bound=Reducer)


def delta1(n: int, alpha1: float) -> float:
    """Hoeffding slack of the mass estimate from n samples: sqrt(ln(2 / alpha1) / (2 n))."""
    return hoeffding_slack(n, alpha1)


def delta2(p_hat: float, n: int, alpha1: float) -> float:
    """1/2 - (p_hat - Delta1): how far the lower mass bound of the ball falls short of 1/2."""
    return 0.5 - (p_hat - delta1(n, alpha1))


def center_noise(sigma: float | Noise, noise: Noise | str | None = None) -> Noise:
    """The noise center smoothing draws from: ``noise`` (None: Gaussian) at ``sigma``, or
    ``sigma`` itself when it is a Noise. Center smoothing needs the noise's worst-case mass
    P_upper(p, r) in l2, which only Gaussian noise has: others are a one-line ConfigError."""
    if isinstance(sigma, Noise):
        noise, sigma = sigma, sigma.certified_sigma
    noise, _ = resolve_noise(sigma, noise)
    if not noise.worst_case_mass:
        raise ConfigError(
            f"center smoothing needs the Gaussian worst-case mass P_upper(p, eps_in) in l2: "
            f"noise={noise.name} is not supported (use noise=gaussian; certifiers of other "
            f"noises: certify=cohen or segcertify with {supported_pairs()})"
        )
    return noise


def check_perturbation(
    perturbation: Perturbation, sigma: float, noise: Noise | str | None, certifier: str
) -> Perturbation:
    """``perturbation`` if ``certifier`` (center or median smoothing) may smooth over it: any
    non-parametric one (``x + delta``), or a transformation that composes exactly, whose own
    noise is at ``sigma`` and with ``noise`` unset. A one-line ConfigError otherwise (rotation:
    interpolation breaks the composition the worst-case mass rests on)."""
    if not is_parametric(perturbation):
        return perturbation
    name = perturbation.name
    if noise is not None:
        raise ConfigError(f"perturbation={name} brings its own noise: leave noise unset")
    if not perturbation.certified:
        raise ConfigError(
            f"{certifier} over perturbation={name} would be no certificate ({name} does not "
            "compose exactly): use perturbation=additive, or certify=distspt for rotation"
        )
    if perturbation.sigma != sigma:
        raise ConfigError(
            f"sigma={sigma} differs from perturbation={name}'s noise sigma={perturbation.sigma}: "
            "give both the same level"
        )
    return perturbation


def mass_needed(eps_in: float, sigma: float | Noise, delta: float) -> float:
    """p = P_upper(1/2 + delta, eps_in) = Phi(Phi^-1(1/2 + delta) + eps_in / sigma): the mass
    the ball must hold at x (``sigma``: a noise level of Gaussian noise, or the Noise)."""
    noise = sigma if isinstance(sigma, Noise) else GaussianNoise(check_sigma(sigma))
    return float(noise.worst_case_mass_upper(0.5 + delta, eps_in))  # ConfigError if not Gaussian


def quantile_level(
    eps_in: float, sigma: float | Noise, delta: float, m: int, alpha2: float
) -> float:
    """q = p + sqrt(ln(1 / alpha2) / (2 m)) (Dvoretzky-Kiefer-Wolfowitz slack on the m samples)."""
    return mass_needed(eps_in, sigma, delta) + dkw_slack(m, alpha2)


def smallest_m(eps_in: float, sigma: float | Noise, delta: float, alpha2: float) -> int | None:
    """The smallest m with q <= 1 for this eps_in, or None if no m works (p rounds to 1)."""
    gap = 1.0 - mass_needed(eps_in, sigma, delta)
    if gap <= 0:
        return None
    return dkw_samples(gap, alpha2)


def output_factor(gamma: float) -> float:
    """eps_out / R = gamma (1 + 2 gamma): 3 for a metric, 10 for a squared distance."""
    return gamma * (1.0 + 2.0 * gamma)


def min_candidates(delta: float, alpha1: float) -> int:
    """The fewest candidate centers c with (1/2 - delta)^c <= MISS_SHARE * alpha1: the chance
    that c independent samples all miss a ball of mass >= 1/2 + delta (10 at the paper's
    delta = 0.05, alpha1 = 0.005)."""
    budget = MISS_SHARE * alpha1
    count = max(1, math.ceil(math.log(budget) / math.log(0.5 - delta) - 1e-9))
    while (0.5 - delta) ** count > budget:  # guard the rounding of the logarithms
        count += 1
    return count


def _distances_from(distance: Distance, row: Tensor, embedded: Tensor, chunk: int) -> Tensor:
    """Exact (``paired``) distances from one embedded row to every row of ``embedded``."""
    step = max(1, chunk // max(1, row.numel()))
    return torch.cat(
        [distance.paired(row.expand(len(part), *row.shape), part) for part in embedded.split(step)]
    )


def min_median_sample(
    distance: Distance, embedded: Tensor, chunk_elements: int = 2**24
) -> tuple[int, float]:
    """Index and median distance of the sample with the smallest median distance to all samples
    (itself included; the lower median, the ceil(n/2)-th smallest): the 2-approximate center of
    the ball holding half the samples.

    The n x n ``pairwise`` matrix (``chunk_elements`` at a time) ranks the samples; the
    ``SHORTLIST`` best get their medians recomputed from exact ``paired`` distances, and the
    returned index and median are the exact minimum among them. So the returned median is exact
    for the returned sample, and the choice is the exact one unless more than ``SHORTLIST``
    samples tie with it up to the matrix products' rounding."""
    n, rank = len(embedded), (len(embedded) + 1) // 2
    step = max(1, chunk_elements // n)
    ranked = torch.cat(
        [
            distance.pairwise(embedded[i : i + step], embedded).kthvalue(rank, dim=1).values
            for i in range(0, n, step)
        ]
    )
    shortlist = torch.sort(ranked, stable=True).indices[:SHORTLIST].tolist()
    exact = torch.stack(
        [
            _distances_from(distance, embedded[i], embedded, chunk_elements).kthvalue(rank).values
            for i in shortlist
        ]
    )
    pick = int(exact.argmin())
    return int(shortlist[pick]), float(exact[pick])


def candidate_distances(
    distance: Distance, rows: Tensor, embedded: Tensor, chunk_elements: int
) -> Tensor:
    """``[len(rows), len(embedded)]`` exact (``paired``) distances, all pairs of a chunk of
    ``embedded`` at once (at most ``chunk_elements`` values formed)."""
    count, width = rows.shape[0], rows[0].numel()
    step = max(1, chunk_elements // max(1, count * width))
    parts = []
    for part in embedded.split(step):
        size = len(part)
        left = rows[:, None].expand(count, size, *rows.shape[1:]).reshape(-1, *rows.shape[1:])
        right = part[None].expand(count, *part.shape).reshape(-1, *part.shape[1:])
        parts.append(distance.paired(left, right).reshape(count, size))
    return torch.cat(parts, dim=1)


class CandidateDistances(Reducer):
    """Candidates mode's reducer: the exact distances from the embedded candidates ``rows`` to
    each batch's embedded outputs, kept as ``parts`` (``[len(rows), batch]`` each), not the
    outputs: memory candidates x samples."""

    def __init__(self, distance: Distance, rows: Tensor, chunk_elements: int) -> None:
        self.distance, self.candidates, self.chunk_elements = distance, rows, chunk_elements

    def begin(self, xs: Sequence[Tensor], nums: Sequence[int]) -> None:
        self.parts: list[Tensor] = []

    def update(self, pieces: list[tuple[int, int]], outputs: Tensor) -> None:
        embedded = self.distance.embed(outputs)
        self.parts.append(
            candidate_distances(self.distance, self.candidates, embedded, self.chunk_elements)
        )

    def result(self) -> Tensor:
        return torch.cat(self.parts, dim=1)


class DistancesTo(Reducer):
    """The exact (``paired``) distance from ``center`` to every output, batch by batch:
    ``result()`` is ``[samples]`` (the mass check and the certificate's order statistics keep
    these, not the outputs)."""

    def __init__(self, distance: Distance, center: Tensor) -> None:
        self.distance, self.anchor = distance, distance.embed(center.unsqueeze(0))

    def begin(self, xs: Sequence[Tensor], nums: Sequence[int]) -> None:
        self.parts: list[Tensor] = []

    def update(self, pieces: list[tuple[int, int]], outputs: Tensor) -> None:
        embedded = self.distance.embed(outputs)
        self.parts.append(self.distance.paired(self.anchor.expand(len(outputs), -1), embedded))

    def result(self) -> Tensor:
        return torch.cat(self.parts) if len(self.parts) != 1 else self.parts[0]


@dataclass
class Smoothed:
    """Result of Algorithm 1: the center (None on abstention) and the numbers behind it."""

    center: Tensor | None
    radius: float  # median distance r of the center to the first n samples
    p_hat: float  # fraction of the fresh n samples within r of the center
    delta1: float
    delta2: float
    candidates: int = 0  # samples the center was chosen among (n in full mode)


@dataclass
class CenterCertificate:
    """Result of Algorithm 2 for several eps_in from one set of m samples."""

    smoothed: Smoothed
    eps_in: list[float]
    eps_out: list[float]  # inf where abstained or q > 1
    quantile_radius: list[float] = field(default_factory=list)  # R per eps_in

    @property
    def center(self) -> Tensor | None:
        return self.smoothed.center


class CenterSmooth:
    """Center-smoothed ``base_function`` under ``distance`` with Gaussian noise of scale sigma
    (``noise``: a GaussianNoise or "gaussian"; other noises are refused, see ``center_noise``).

    Guarantee (per x', see the module docstring): for one x' with ||x' - x|| <= eps_in smoothed
    with independent noise, d(smoothed(x), smoothed(x')) <= eps_out or one of them abstains, with
    probability at least 1 - alpha1 - alpha2.

    Candidates mode (``candidates=c`` < n, or automatically when the n outputs exceed
    ``memory_bytes``) chooses the center among the first c of the n samples. Theorem 3 needs, at
    x', a center whose median radius is at most 2 gamma r*, r* the radius of the smallest ball B*
    of mass >= 1/2 + delta; a sample inside B* has that property when B* holds at least ceil(n/2)
    of the n samples. Full mode spends alpha1 / 2 on that last event (Hoeffding, as Delta1 says);
    candidates mode spends the same alpha1 / 2 as 0.4 alpha1 on it, bounded by the exact binomial
    tail P[Bin(n, 1/2 + delta) < ceil(n/2)] (checked, ConfigError if larger), plus
    ``MISS_SHARE`` * alpha1 = alpha1 / 10 on "none of the c candidates lies in B*", at most
    (1/2 - delta)^c (each candidate is a sample, in B* with probability >= 1/2 + delta; a union
    bound, so the candidates need not be independent of the n samples). Hence
    c >= ``min_candidates(delta, alpha1)`` = ceil(ln(alpha1 / 10) / ln(1/2 - delta)) (10 at the
    paper's settings); a smaller ``candidates`` is refused and the automatic mode clamps up to
    it. The other alpha1 / 2 (the mass check, Delta1) and alpha2 are unchanged, so the total
    stays alpha1 + alpha2.

    Every module the certifier calls runs in eval mode during ``smooth``/``certify`` and is
    restored afterwards (BatchNorm in train mode would couple the samples of a batch and overwrite
    its running statistics): the modules ``smoothcert.independence`` finds from ``base_function``
    (attributes, closures, partials, globals, ...), the distance's networks, ``modules``, and every
    module its probe sees called. The probe refuses (ConfigError) a base function whose outputs
    are random or depend on the rest of the batch.

    Args:
        base_function: maps a batch of inputs ``[B, *x.shape]`` to a batch of outputs ``[B, ...]``.
        distance: a ``Distance`` or a name from ``smoothcert.distances.DISTANCES``.
        sigma: noise level; n: samples for the center and again for its mass check; m: samples for
            the certificate; delta, alpha1, alpha2: as in the paper (defaults are its settings).
        gamma: relaxed-triangle constant; defaults to the distance's own, and may not be set below
            it (that would make the certificate unsound).
        batch_size: inputs per call of ``base_function``.
        chunk_elements: largest distance-matrix chunk (number of floats) formed at once.
        memory_bytes: budget for keeping all n samples; above it, choose among candidates (as many
            as the budget allows, at least ``min_candidates``).
        candidates: force candidates mode with this many candidate centers (>= min_candidates).
        modules: further modules the base function calls (put in eval mode while certifying).
        noise: the smoothing noise at ``sigma`` (None: Gaussian); only Gaussian noise fits.
        perturbation: how the draws meet the input (``x + delta`` by default); a transformation
            that composes exactly (brightness, translation, ...) draws its parameters from its
            own Gaussian noise at ``sigma`` instead (``noise`` unset), and eps_in is then in its
            units. Rotation, which does not compose, is refused (see ``check_perturbation``).
        input_range: with ``(low, high)`` an input must be one image ``[C, H, W]`` with values in
            it (``smoothcert.perturbation.check_example``); None (default): any shape, no check.
    """

    def __init__(
        self,
        base_function: Callable[[Tensor], Tensor],
        distance: Distance | str,
        sigma: float,
        n: int = 10_000,
        m: int = 1_000_000,
        delta: float = 0.05,
        alpha1: float = 0.005,
        alpha2: float = 0.005,
        gamma: float | None = None,
        batch_size: int = 1_000,
        chunk_elements: int = 2**24,
        memory_bytes: int = 2**30,
        candidates: int | None = None,
        modules: Sequence[nn.Module] = (),
        noise: Noise | str | None = None,
        perturbation: Perturbation = ADDITIVE,
        input_range: tuple[float, float] | None = None,
    ) -> None:
        self.base_function = base_function
        self.distance = build_distance(distance)
        self.sigma = check_sigma(sigma)
        self.perturbation = check_perturbation(perturbation, self.sigma, noise, "center smoothing")
        if is_parametric(perturbation):
            noise = perturbation.noise
        self.noise = center_noise(self.sigma, noise)
        self.input_range = input_range
        self.n, self.m = check_count(n, "n"), check_count(m, "m")
        require(0 < delta < 0.5, f"delta={delta} must lie in (0, 0.5)")
        require(0 < alpha1 < 1, f"alpha1={alpha1} must lie in (0, 1)")
        require(0 < alpha2 < 1, f"alpha2={alpha2} must lie in (0, 1)")
        self.delta, self.alpha1, self.alpha2 = float(delta), float(alpha1), float(alpha2)
        self.gamma = self.distance.gamma if gamma is None else float(gamma)
        require(self.gamma >= 1, f"gamma={gamma} must be >= 1")
        require(
            self.gamma >= self.distance.gamma,
            f"gamma={gamma} is below the {self.distance.name} distance's own gamma "
            f"{self.distance.gamma}; leave gamma unset",
        )
        self.batch_size = check_count(batch_size, "batch_size")
        self.chunk_elements = check_count(chunk_elements, "chunk_elements")
        self.memory_bytes = check_count(memory_bytes, "memory_bytes")
        self.modules = tuple(modules)
        if delta1(self.n, self.alpha1) > self.delta:
            need = math.ceil(math.log(2.0 / self.alpha1) / (2.0 * self.delta**2))
            raise ConfigError(
                f"n={self.n} can never pass the mass check: Delta1 = "
                f"{delta1(self.n, self.alpha1):.4f} > delta = {self.delta}; use n >= {need} "
                "or a larger delta"
            )
        self.min_candidates = min_candidates(self.delta, self.alpha1)
        self.miss_budget = MISS_SHARE * self.alpha1
        self.candidates = None if candidates is None else check_count(candidates, "candidates")
        if self.candidates is not None and self.candidates < self.n:
            self._check_candidates(self.candidates)

    def _check_candidates(self, count: int) -> None:
        """Raises unless choosing among ``count`` < n candidates stays within alpha1."""
        if count < self.min_candidates:
            miss = (0.5 - self.delta) ** count
            raise ConfigError(
                f"candidates={count} is too few: all of them miss the best ball with probability "
                f"up to (1/2 - delta)^{count} = {miss:.3g} > alpha1 / 10 = {self.miss_budget:.3g}"
                f"; use at least {self.min_candidates} candidates (or null: all n samples)"
            )
        tail = half_sample_failure(self.n, self.delta)
        if tail > BALL_SHARE * self.alpha1:
            raise ConfigError(
                f"n={self.n} is too small for candidates mode: P[Bin(n, 1/2 + delta) < n/2] = "
                f"{tail:.3g} > {BALL_SHARE} alpha1; raise n or delta, or memory_bytes for full mode"
            )

    # ----- sampling (the sampler's loop; what is kept: outputs or distances) ------------------

    def _certification_mode(self, x: Tensor) -> contextlib.AbstractContextManager:
        """Eval mode for every module the certifier calls, and the independence probe."""
        modules = (*self.modules, *self.distance.modules())
        return certification_mode(self.base_function, x, self.noise, modules, self.perturbation)

    def _sample(self, x: Tensor, count: int, stream: NoiseStream, reducer: R) -> R:
        """The sampler's loop on ``count`` perturbed copies of x (non-finite outputs raise)."""
        return sample(
            self.base_function, [x], [count], [stream], reducer, batch_size=self.batch_size,
            perturbation=self.perturbation, name="base function",
        )  # fmt: skip

    def _outputs(self, x: Tensor, count: int, stream: NoiseStream) -> Tensor:
        """Base outputs ``[count, ...]`` on ``count`` perturbed copies of x."""
        return self._sample(x, count, stream, OutputsKept()).result()[0]

    def _stream(self, x: Tensor, generator: torch.Generator | None) -> NoiseStream:
        """The sampler's stream set-up (``generator=None``: seeded from torch's global RNG)."""
        options = {"input_range": self.input_range, "name": "center smoothing", "dtype": x.dtype}
        return example_stream(self.noise, self.perturbation, x, generator, **options)

    # ----- Algorithm 1 ----------------------------------------------------------------------

    def _center_all(self, x: Tensor, stream: NoiseStream) -> tuple[Tensor, float]:
        outputs = self._outputs(x, self.n, stream)
        best, radius = min_median_sample(
            self.distance, self.distance.embed(outputs), self.chunk_elements
        )
        return outputs[best].clone(), radius  # a copy: the n outputs can be freed

    def _candidate_distances(self, rows: Tensor, embedded: Tensor) -> Tensor:
        """``candidate_distances`` at this smoother's distance and chunk size."""
        return candidate_distances(self.distance, rows, embedded, self.chunk_elements)

    def _center_candidates(
        self, x: Tensor, stream: NoiseStream, candidates: int
    ) -> tuple[Tensor, float]:
        """Candidates mode: only the first ``candidates`` of the n samples are kept; their exact
        distances to all n samples are accumulated batch by batch (memory candidates x n)."""
        kept = self._outputs(x, candidates, stream)
        rows = self.distance.embed(kept)
        first = self._candidate_distances(rows, rows)
        rest = CandidateDistances(self.distance, rows, self.chunk_elements)
        parts = [first, *self._sample(x, self.n - candidates, stream, rest).parts]
        medians = torch.cat(parts, dim=1).kthvalue((self.n + 1) // 2, dim=1).values
        best = int(medians.argmin())
        return kept[best].clone(), float(medians[best])

    def _num_candidates(self, probe: Tensor) -> int:
        """All n if n outputs and their embeddings fit the memory budget (or ``candidates`` >= n),
        else ``candidates``, or as many candidates as a candidates x n distance matrix (plus their
        outputs) allows, clamped up to ``min_candidates``."""
        if self.candidates is not None:
            return min(self.candidates, self.n)
        per_sample = probe.element_size() * probe[0].numel()
        per_sample += 4 * self.distance.embed(probe[:1]).shape[1]
        if self.n * per_sample <= self.memory_bytes:
            return self.n
        allowed = self.memory_bytes // (4 * self.n + per_sample)
        count = min(self.n, max(self.min_candidates, allowed))
        if count < self.n:
            self._check_candidates(count)
        return count

    def _distances_to(self, center: Tensor, x: Tensor, count: int, stream) -> Tensor:
        """Distances ``[count]`` from ``center`` to the outputs on ``count`` fresh perturbed
        copies of x."""
        reducer = DistancesTo(self.distance, center)
        return self._sample(x, count, stream, reducer).result()

    def _smooth(self, x: Tensor, stream: NoiseStream) -> Smoothed:
        with torch.inference_mode():
            probe = self.base_function(x.unsqueeze(0))
        candidates = self._num_candidates(probe)
        if candidates >= self.n:
            center, radius = self._center_all(x, stream)
        else:
            center, radius = self._center_candidates(x, stream, candidates)
        inside = (self._distances_to(center, x, self.n, stream) <= radius).sum()
        p_hat = int(inside) / self.n
        d1, d2 = delta1(self.n, self.alpha1), delta2(p_hat, self.n, self.alpha1)
        kept = center if self.delta >= max(d1, d2) else None
        return Smoothed(kept, radius, p_hat, d1, d2, min(candidates, self.n))

    def smooth_details(self, x: Tensor, generator: torch.Generator | None = None) -> Smoothed:
        """Algorithm 1 with its numbers (center None on abstention)."""
        with self._certification_mode(x):
            return self._smooth(x, self._stream(x, generator))

    def smooth(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """The smoothed output at x (Algorithm 1), or None when it abstains."""
        return self.smooth_details(x, generator).center

    # ----- Algorithm 2 ----------------------------------------------------------------------

    def check_certifiable(self, eps_in: Sequence[float]) -> None:
        """Raises before sampling if q > 1 for every eps_in, naming the smallest m that works."""
        levels = [quantile_level(e, self.noise, self.delta, self.m, self.alpha2) for e in eps_in]
        if min(levels) <= 1.0:
            return
        smallest = min(eps_in)
        need = smallest_m(smallest, self.noise, self.delta, self.alpha2)
        fix = (
            f"use m >= {need}" if need is not None else "no m suffices; lower eps_in or raise sigma"
        )
        raise ConfigError(
            f"m={self.m} cannot certify any eps_in at sigma={self.sigma} (q > 1 even at "
            f"eps_in={smallest}); {fix}"
        )

    def certify_details(
        self, x: Tensor, eps_in: float | Sequence[float], generator: torch.Generator | None = None
    ) -> CenterCertificate:
        """Algorithm 2 for every eps_in from one set of m samples. Each finite eps_out holds for
        each x' within its eps_in separately (see the module docstring), at 1 - alpha1 - alpha2."""
        radii = [float(eps_in)] if isinstance(eps_in, (int, float)) else [float(e) for e in eps_in]
        require(len(radii) > 0, "eps_in must hold at least one value")
        require(min(radii) >= 0, f"eps_in must be >= 0, got {min(radii)}")
        self.check_certifiable(radii)
        with self._certification_mode(x):
            return self._certify(x, radii, generator)

    def _certify(
        self, x: Tensor, radii: list[float], generator: torch.Generator | None
    ) -> CenterCertificate:
        stream = self._stream(x, generator)
        smoothed = self._smooth(x, stream)
        if smoothed.center is None:
            infinite = [ABSTAIN_RADIUS] * len(radii)
            return CenterCertificate(smoothed, radii, infinite, infinite)
        distances = self._distances_to(smoothed.center, x, self.m, stream)
        factor = output_factor(self.gamma)
        quantiles = [
            order_statistic_quantile(
                distances, quantile_level(e, self.noise, self.delta, self.m, self.alpha2)
            )
            for e in radii
        ]
        return CenterCertificate(smoothed, radii, [factor * r for r in quantiles], quantiles)

    def certify(
        self, x: Tensor, eps_in: float | Sequence[float], generator: torch.Generator | None = None
    ) -> tuple[Tensor | None, float | list[float]]:
        """(center or None, eps_out): eps_out a float for a float eps_in, else one per eps_in;
        inf on abstention or where q > 1."""
        result = self.certify_details(x, eps_in, generator)
        single = isinstance(eps_in, (int, float))
        return result.center, result.eps_out[0] if single else result.eps_out


def certify_example(
    smoother: CenterSmooth,
    x: Tensor,
    idx: int,
    eps_in: Sequence[float],
    seed: int,
    base_output: Tensor,
) -> tuple[CenterRecord, Tensor | None]:
    """Smooths and certifies dataset example ``idx`` (``x``, whose base output ``f(x)`` is
    ``base_output`` ``[1, ...]``) at every eps_in at the smoother's sigma; returns its record and
    the center (None on abstention). The noise comes from a generator seeded by ``(seed, idx)``
    (the same standard normal draws at every sigma, scaled by it), so the record depends on
    neither the batch size nor the order or sharding of the examples."""
    start = time.perf_counter()
    result = smoother.certify_details(x, eps_in, example_generator(seed, idx, x.device))
    center = result.center
    with torch.inference_mode():
        error = math.nan if center is None else float(smoother.distance(base_output, center[None]))
    record = CenterRecord(
        idx,
        smoother.sigma,
        tuple(float(e) for e in eps_in),
        tuple(result.eps_out),
        tuple(result.quantile_radius),
        error,
        int(center is None),
        time.perf_counter() - start,
        result.smoothed.p_hat,
        result.smoothed.radius,
    )
    return record, center
