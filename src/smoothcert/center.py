"""Center smoothing (Kumar and Goldstein): certified structured outputs under an output distance.

For an input x, ``smooth`` (Algorithm 1) draws n outputs f(x + N(0, sigma^2 I)), takes as center
the sample with the smallest median distance to all n samples (a 2-approximation of the smallest
ball holding half the points, beta = 2 gamma for a gamma-relaxed distance), and checks on n fresh
samples that the ball around it of that median radius r holds enough mass:
Delta1 = sqrt(ln(2 / alpha1) / (2 n)), Delta2 = 1/2 - (p_hat - Delta1), abstain if
delta < max(Delta1, Delta2). ``certify`` (Algorithm 2) then draws m samples, and for each eps_in
sets p = Phi(Phi^-1(1/2 + delta) + eps_in / sigma), q = p + sqrt(ln(1 / alpha2) / (2 m)), R = the
ceil(q m)-th smallest distance to the center (no certificate if q > 1) and
eps_out = gamma (1 + 2 gamma) R. With probability at least 1 - alpha1 - alpha2, every x' with
||x' - x|| <= eps_in has d(smoothed(x), smoothed(x')) <= eps_out.

Distances between samples are computed in chunks on the samples' device. When the n samples (or
their n x n distance rows) would not fit ``memory_bytes``, the center is chosen among the first
``candidates`` samples only (their medians still taken over all n samples, streamed in batches).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from scipy.stats import norm
from torch import Tensor

from smoothcert.distances import Distance, build_distance
from smoothcert.errors import ConfigError, check_count, check_sigma, require
from smoothcert.noise import GaussianNoiseStream

ABSTAIN_RADIUS = math.inf


def delta1(n: int, alpha1: float) -> float:
    """Hoeffding slack of the mass estimate from n samples: sqrt(ln(2 / alpha1) / (2 n))."""
    return math.sqrt(math.log(2.0 / alpha1) / (2.0 * n))


def delta2(p_hat: float, n: int, alpha1: float) -> float:
    """1/2 - (p_hat - Delta1): how far the lower mass bound of the ball falls short of 1/2."""
    return 0.5 - (p_hat - delta1(n, alpha1))


def mass_needed(eps_in: float, sigma: float, delta: float) -> float:
    """p = Phi(Phi^-1(1/2 + delta) + eps_in / sigma): the mass the ball must hold at x."""
    return float(norm.cdf(norm.ppf(0.5 + delta) + eps_in / sigma))


def quantile_level(eps_in: float, sigma: float, delta: float, m: int, alpha2: float) -> float:
    """q = p + sqrt(ln(1 / alpha2) / (2 m)) (Dvoretzky-Kiefer-Wolfowitz slack on the m samples)."""
    return mass_needed(eps_in, sigma, delta) + math.sqrt(math.log(1.0 / alpha2) / (2.0 * m))


def order_statistic_quantile(values: Tensor, q: float) -> float:
    """The q-quantile as an order statistic: the ceil(q m)-th smallest of m values (inf if q > 1).

    At least a q fraction of the values are <= the result; no interpolation.
    """
    m = values.numel()
    if q > 1.0:
        return math.inf
    rank = max(1, math.ceil(q * m - 1e-9))  # guard q * m landing a hair above an integer
    return float(values.reshape(-1).kthvalue(rank).values)


def smallest_m(eps_in: float, sigma: float, delta: float, alpha2: float) -> int | None:
    """The smallest m with q <= 1 for this eps_in, or None if no m works (p rounds to 1)."""
    gap = 1.0 - mass_needed(eps_in, sigma, delta)
    if gap <= 0:
        return None
    return math.ceil(math.log(1.0 / alpha2) / (2.0 * gap * gap))


def output_factor(gamma: float) -> float:
    """eps_out / R = gamma (1 + 2 gamma): 3 for a metric, 10 for a squared distance."""
    return gamma * (1.0 + 2.0 * gamma)


def min_median_sample(
    distance: Distance, embedded: Tensor, chunk_elements: int = 2**24
) -> tuple[int, float]:
    """Index and median distance of the sample with the smallest median distance to all samples
    (itself included; the lower median, the ceil(n/2)-th smallest), computing the n x n distances
    ``chunk_elements`` at a time: the 2-approximate center of the ball holding half the samples."""
    n = len(embedded)
    step = max(1, chunk_elements // n)
    medians = torch.cat(
        [
            distance.pairwise(embedded[i : i + step], embedded).kthvalue((n + 1) // 2, dim=1).values
            for i in range(0, n, step)
        ]
    )
    best = int(medians.argmin())
    return best, float(medians[best])


@dataclass
class Smoothed:
    """Result of Algorithm 1: the center (None on abstention) and the numbers behind it."""

    center: Tensor | None
    radius: float  # median distance r of the center to the first n samples
    p_hat: float  # fraction of the fresh n samples within r of the center
    delta1: float
    delta2: float


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
    """Center-smoothed ``base_function`` under ``distance`` with Gaussian noise of scale sigma.

    Args:
        base_function: maps a batch of inputs ``[B, *x.shape]`` to a batch of outputs ``[B, ...]``.
        distance: a ``Distance`` or a name from ``smoothcert.distances.DISTANCES``.
        sigma: noise level; n: samples for the center and again for its mass check; m: samples for
            the certificate; delta, alpha1, alpha2: as in the paper (defaults are its settings).
        gamma: relaxed-triangle constant; defaults to the distance's own, and may not be set below
            it (that would make the certificate unsound).
        batch_size: inputs per call of ``base_function``.
        chunk_elements: largest distance-matrix chunk (number of floats) formed at once.
        memory_bytes: budget for keeping all n samples; above it, choose among ``candidates``.
        candidates: force the high-dimensional mode with this many candidate centers.
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
    ) -> None:
        self.base_function = base_function
        self.distance = build_distance(distance)
        self.sigma = check_sigma(sigma)
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
        self.candidates = None if candidates is None else check_count(candidates, "candidates")
        if delta1(self.n, self.alpha1) > self.delta:
            need = math.ceil(math.log(2.0 / self.alpha1) / (2.0 * self.delta**2))
            raise ConfigError(
                f"n={self.n} can never pass the mass check: Delta1 = "
                f"{delta1(self.n, self.alpha1):.4f} > delta = {self.delta}; use n >= {need} "
                "or a larger delta"
            )

    # ----- sampling -------------------------------------------------------------------------

    def _outputs(self, x: Tensor, count: int, stream: GaussianNoiseStream) -> Iterator[Tensor]:
        """Base outputs on ``count`` noisy copies of x, in batches; non-finite outputs raise."""
        done = 0
        while done < count:
            size = min(self.batch_size, count - done)
            with torch.inference_mode():
                out = self.base_function(x.unsqueeze(0) + stream.take(size))
            if out.is_floating_point() and not bool(torch.isfinite(out).all()):
                raise FloatingPointError(
                    "the base model returned NaN or inf on noisy inputs; check the model/checkpoint"
                )
            done += size
            yield out

    def _stream(self, x: Tensor, generator: torch.Generator | None) -> GaussianNoiseStream:
        if generator is None:
            generator = torch.Generator(device=x.device)
            generator.seed()
        return GaussianNoiseStream(tuple(x.shape), self.sigma, generator, x.device, x.dtype)

    # ----- Algorithm 1 ----------------------------------------------------------------------

    def _center_all(self, x: Tensor, stream: GaussianNoiseStream) -> tuple[Tensor, float]:
        outputs = torch.cat(list(self._outputs(x, self.n, stream)))
        best, radius = min_median_sample(
            self.distance, self.distance.embed(outputs), self.chunk_elements
        )
        return outputs[best].clone(), radius  # a copy: the n outputs can be freed

    def _center_candidates(
        self, x: Tensor, stream: GaussianNoiseStream, candidates: int
    ) -> tuple[Tensor, float]:
        """High-dimensional mode: only the first ``candidates`` of the n samples are kept; their
        distances to all n samples are accumulated batch by batch (memory candidates x n)."""
        kept = torch.cat(list(self._outputs(x, candidates, stream)))
        rows = self.distance.embed(kept)
        parts = [self.distance.pairwise(rows, rows)]
        for out in self._outputs(x, self.n - candidates, stream):
            parts.append(self.distance.pairwise(rows, self.distance.embed(out)))
        medians = torch.cat(parts, dim=1).kthvalue((self.n + 1) // 2, dim=1).values
        best = int(medians.argmin())
        return kept[best].clone(), float(medians[best])

    def _num_candidates(self, probe: Tensor) -> int:
        """All n if n outputs and their embeddings fit the memory budget, else as many candidates
        as a candidates x n distance matrix (plus their outputs) allows."""
        if self.candidates is not None:
            return min(self.candidates, self.n)
        per_sample = probe.element_size() * probe[0].numel()
        per_sample += 4 * self.distance.embed(probe[:1]).shape[1]
        if self.n * per_sample <= self.memory_bytes:
            return self.n
        return max(1, min(self.n, self.memory_bytes // (4 * self.n + per_sample)))

    def _distances_to(self, center: Tensor, x: Tensor, count: int, stream) -> Iterator[Tensor]:
        """Distances from ``center`` to the outputs on ``count`` fresh noisy copies of x."""
        anchor = self.distance.embed(center.unsqueeze(0))
        for out in self._outputs(x, count, stream):
            yield self.distance.paired(anchor.expand(len(out), -1), self.distance.embed(out))

    def _smooth(self, x: Tensor, stream: GaussianNoiseStream) -> Smoothed:
        with torch.inference_mode():
            probe = self.base_function(x.unsqueeze(0))
        candidates = self._num_candidates(probe)
        if candidates >= self.n:
            center, radius = self._center_all(x, stream)
        else:
            center, radius = self._center_candidates(x, stream, candidates)
        inside = torch.zeros((), dtype=torch.long, device=x.device)
        for distances in self._distances_to(center, x, self.n, stream):
            inside += (distances <= radius).sum()
        p_hat = int(inside) / self.n
        d1, d2 = delta1(self.n, self.alpha1), delta2(p_hat, self.n, self.alpha1)
        kept = center if self.delta >= max(d1, d2) else None
        return Smoothed(kept, radius, p_hat, d1, d2)

    def smooth_details(self, x: Tensor, generator: torch.Generator | None = None) -> Smoothed:
        """Algorithm 1 with its numbers (center None on abstention)."""
        return self._smooth(x, self._stream(x, generator))

    def smooth(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """The smoothed output at x (Algorithm 1), or None when it abstains."""
        return self.smooth_details(x, generator).center

    # ----- Algorithm 2 ----------------------------------------------------------------------

    def check_certifiable(self, eps_in: Sequence[float]) -> None:
        """Raises before sampling if q > 1 for every eps_in, naming the smallest m that works."""
        levels = [quantile_level(e, self.sigma, self.delta, self.m, self.alpha2) for e in eps_in]
        if min(levels) <= 1.0:
            return
        smallest = min(eps_in)
        need = smallest_m(smallest, self.sigma, self.delta, self.alpha2)
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
        """Algorithm 2 for every eps_in from one set of m samples."""
        radii = [float(eps_in)] if isinstance(eps_in, (int, float)) else [float(e) for e in eps_in]
        require(len(radii) > 0, "eps_in must hold at least one value")
        require(min(radii) >= 0, f"eps_in must be >= 0, got {min(radii)}")
        self.check_certifiable(radii)
        stream = self._stream(x, generator)
        smoothed = self._smooth(x, stream)
        if smoothed.center is None:
            infinite = [ABSTAIN_RADIUS] * len(radii)
            return CenterCertificate(smoothed, radii, infinite, infinite)
        distances = torch.cat(list(self._distances_to(smoothed.center, x, self.m, stream)))
        factor = output_factor(self.gamma)
        quantiles = [
            order_statistic_quantile(
                distances, quantile_level(e, self.sigma, self.delta, self.m, self.alpha2)
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
