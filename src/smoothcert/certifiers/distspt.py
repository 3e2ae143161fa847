"""DistSPT (paper 002, Fischer, Baader and Vechev): a certificate for rotations, whose
interpolation breaks the composition that smoothing in parameter space needs.

The smoothed classifier is ``g_E(x) = argmax_c P_beta(h_E(S_beta(x)) = c)``, ``S_beta`` the
rotation pipeline (:class:`~smoothcert.transforms.rotation.RotationPipeline`), ``beta ~ N(0,
sigma_gamma^2)`` degrees, and ``h_E`` the base classifier smoothed again in input space with
N(0, sigma_eps^2 I). Per image (DistSPT^x: the error bound is the image's own):

1. Selection: ``n0`` angles, ``n0_eps`` inner samples each; ``c0`` is the most frequent class.
2. Error estimate: ``n_error`` fresh angles ``beta``; interval analysis
   (:func:`~smoothcert.transforms.rotation_bounds.error_bounds`) bounds
   ``max over gamma in Gamma of ||S_beta(T_gamma(x)) - S_(beta+gamma)(x)||_2``; with ``k`` of
   them at most ``E``, ``rho = 1 - CP_lower(k, n_error, alpha_error)`` bounds
   ``P_beta(error > E)`` for every ``gamma`` in ``Gamma`` (with probability 1 - alpha_error).
3. Outer test: ``n_gamma`` fresh angles; a transformed sample counts when its inner Cohen radius
   ``sigma_eps Phi^-1(CP_lower(count_c0, n_eps, alpha_eps / n_gamma))`` exceeds ``E`` (Bonferroni
   over the ``n_gamma`` inner tests, so all hold at once with probability 1 - alpha_eps); then
   ``p_A = CP_lower(count, n_gamma, alpha_gamma)``.
4. Radius (degrees): :func:`distspt_radius`, capped to the attack interval ``Gamma``.

The statement, with probability at least ``1 - alpha_gamma - alpha_eps - alpha_error`` (paper
002's split: 0.004 + 0.005 + 0.001 = 0.01): ``g_E(T_gamma(x)) = c0`` for every ``gamma`` in
``Gamma`` with ``|gamma| < radius``, ``T_gamma`` the bilinear rotation the attacker applies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm as normal
from torch import Tensor, nn

from smoothcert.errors import ConfigError, check_alpha, check_count, require
from smoothcert.independence import certification_mode
from smoothcert.noise import GaussianNoise, NoiseStream
from smoothcert.perturbation import ADDITIVE
from smoothcert.sampling import ClassCounts, example_stream, global_generator, sample, take_draws
from smoothcert.stats.binomial import clopper_pearson_lower
from smoothcert.transforms.rotation import Rotation
from smoothcert.transforms.rotation_bounds import check_angle_interval, error_bounds

ABSTAIN = -1


def distspt_radius(
    p_lower: float | np.ndarray, rho: float | np.ndarray, sigma: float
) -> float | np.ndarray:
    """The parameter radius ``sigma (Phi^-1(p_lower) - Phi^-1(1/2 + rho))`` (0 unless positive).

    Why: let ``A`` be the set of angles ``beta`` whose transformed sample ``S_beta(x)`` has
    ``h_E`` robust at radius ``E`` with class ``c0``, ``P(A) >= p_lower`` under N(0, sigma^2).
    At the attacked image, ``h_E(S_beta(T_gamma x)) = c0`` whenever ``beta + gamma`` is in ``A``
    and the error is at most ``E``, so its probability is at least
    ``P_(beta ~ N(gamma, sigma^2))(A) - rho >= Phi(Phi^-1(p_lower) - |gamma| / sigma) - rho``
    (Neyman-Pearson: a half-line is the worst set), which exceeds 1/2, making ``c0`` the
    answer, for ``|gamma| < radius``. Paper 002 states ``sigma Phi^-1(p_lower - rho)``; at the
    boundary the map ``p -> Phi(Phi^-1(p) - t)`` has slope >= 1 there, so the paper's radius is
    never larger than this one (both sound). Vectorized over arrays of ``p_lower`` and ``rho``."""
    p, r = np.asarray(p_lower, dtype=np.float64), np.asarray(rho, dtype=np.float64)
    ok = (r >= 0) & (r < 0.5) & (p > 0.5 + r)
    with np.errstate(invalid="ignore", divide="ignore"):
        radius = np.where(ok, sigma * (normal.ppf(p) - normal.ppf(np.clip(0.5 + r, 0, 1))), 0.0)
    return float(radius) if radius.ndim == 0 else radius


@dataclass
class DistSPTResult:
    """One image's DistSPT outcome: ``prediction`` (ABSTAIN = -1), ``radius`` (degrees, capped
    to the attack interval), the outer ``count`` of ``n_gamma``, its bound ``p_lower``, ``rho``,
    the largest error bound seen (``error_max``) and how many were at most ``E``."""

    prediction: int
    radius: float
    count: int
    p_lower: float
    rho: float
    error_max: float
    error_within: int
    seconds: float


class DistSPT:
    """DistSPT^x for one :class:`~smoothcert.transforms.rotation.Rotation` (module docstring):
    ``sigma_gamma`` is the rotation's noise level (degrees), ``gamma`` the attack interval
    (degrees, nonempty, at most 180 wide), ``error_bound`` the ``E`` the inner smoothing must
    reach at ``sigma_eps``. ``splits`` and ``refinements`` set the interval analysis."""

    def __init__(
        self,
        base_classifier: nn.Module,
        num_classes: int,
        rotation: Rotation,
        gamma: tuple[float, float] = (-30.0, 30.0),
        error_bound: float = 0.45,
        sigma_eps: float = 0.25,
        splits: int = 32,
        refinements: int = 4,
    ) -> None:
        require(isinstance(rotation, Rotation), "DistSPT certifies perturbation=rotation only")
        low, high = (float(v) for v in gamma)
        check_angle_interval(low, high)
        if error_bound <= 0 or sigma_eps <= 0:
            raise ConfigError(
                f"certify.error_bound={error_bound} and certify.sigma_eps={sigma_eps} must be > 0"
            )
        self.base_classifier, self.rotation = base_classifier, rotation
        self.num_classes = check_count(num_classes, "num_classes", minimum=2)
        self.gamma, self.error_bound, self.sigma_eps = (low, high), error_bound, sigma_eps
        self.inner = GaussianNoise(sigma_eps)
        self.splits, self.refinements = splits, refinements

    @property
    def cap(self) -> float:
        """The largest radius worth stating: beyond it no angle of the interval lies."""
        low, high = self.gamma
        return max(abs(low), abs(high))

    def inner_counts(
        self, x: Tensor, angles: Tensor, n_eps: int, batch_size: int, gen: torch.Generator
    ) -> Tensor:
        """``[len(angles), K]`` class counts of the base classifier on ``n_eps`` noisy copies
        (N(0, sigma_eps^2 I)) of each transformed image ``S_beta(x)``, ``beta`` in ``angles``:
        the inner smoothing, every angle's copies packed into shared forward passes of the
        sampler (NaN or infinite logits raise). Each angle's noise is a stream set up by the
        sampler from ``gen``, in order."""
        images = list(self.rotation.pipeline.sample(x, angles))
        options = {"input_range": None, "name": "DistSPT"}  # rotated and filtered: no range check
        streams = [example_stream(self.inner, ADDITIVE, image, gen, **options) for image in images]
        reducer = sample(
            self.base_classifier, images, [n_eps] * len(images), streams,
            ClassCounts(self.num_classes), batch_size=batch_size, name="base classifier",
        )  # fmt: skip
        return reducer.counts

    def angle_stream(self, x: Tensor, generator: torch.Generator) -> NoiseStream:
        """The rotation's own noise stream for ``x`` (the sampler's set-up: ``x`` one image in
        [0, 1]); ``angles`` reads the next draws of it."""
        return example_stream(self.rotation.noise, self.rotation, x, generator, name="DistSPT")

    def angles(self, stream: NoiseStream, m: int) -> Tensor:
        """The next ``m`` angles ``beta ~ N(0, sigma_gamma^2)`` (degrees, ``[m]``) of ``stream``."""
        return self.rotation.params_from(take_draws(stream, m))[:, 0]

    def certify(
        self,
        x: Tensor,
        n0: int = 10,
        n0_eps: int = 20,
        n_gamma: int = 100,
        n_eps: int = 500,
        n_error: int = 100,
        alphas: tuple[float, float, float] = (0.004, 0.005, 0.001),
        batch_size: int = 1000,
        generator: torch.Generator | None = None,
    ) -> DistSPTResult:
        """DistSPT of one image ``x`` ``[C, H, W]`` in [0, 1]; ``alphas`` are
        ``(alpha_gamma, alpha_eps, alpha_error)``. Guarantee in the module docstring."""
        alpha_gamma, alpha_eps, alpha_error = (check_alpha(a, "certify.alpha") for a in alphas)
        sizes = {
            "n0": n0,
            "n0_eps": n0_eps,
            "n_gamma": n_gamma,
            "n_eps": n_eps,
            "n_error": n_error,
        }
        for name, value in sizes.items():
            check_count(value, f"certify.{name}")
        self.rotation.check_input(tuple(x.shape))
        start = time.perf_counter()
        gen = generator if generator is not None else global_generator(x.device)
        x = x.float()
        sigma = self.rotation.sigma
        stream = self.angle_stream(x, gen)

        base = (self.base_classifier, x, self.inner, (), ADDITIVE, "base classifier")
        with certification_mode(*base):
            first = self.inner_counts(x, self.angles(stream, n0), n0_eps, batch_size, gen)
            c0 = int(first.sum(0).argmax())
            bounds = error_bounds(
                x, self.angles(stream, n_error), self.gamma, self.rotation.pipeline, self.splits,
                self.refinements, target=self.error_bound,
            )  # fmt: skip
            within = int((bounds <= self.error_bound).sum())
            rho = 1.0 - clopper_pearson_lower(within, n_error, alpha_error)
            outer = self.angles(stream, n_gamma)
            counts = self.inner_counts(x, outer, n_eps, batch_size, gen)[:, c0]
        inner_alpha = alpha_eps / n_gamma
        p_inner = np.array([clopper_pearson_lower(int(k), n_eps, inner_alpha) for k in counts])
        radii = self.sigma_eps * normal.ppf(p_inner)
        count = int((radii > self.error_bound).sum())
        p_lower = clopper_pearson_lower(count, n_gamma, alpha_gamma)
        radius = min(distspt_radius(p_lower, rho, sigma), self.cap)
        prediction = c0 if radius > 0 else ABSTAIN
        seconds = time.perf_counter() - start
        error_max = float(bounds.max())
        return DistSPTResult(
            prediction, radius, count, p_lower, rho, error_max, within, seconds
        )  # fmt: skip
