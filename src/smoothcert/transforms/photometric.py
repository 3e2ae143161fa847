"""Photometric transformations that compose exactly: brightness ``x + b``, brightness and
contrast ``e^k x + b`` (TSS, Li et al.) and gamma correction ``x^gamma`` (Muravev and Petiushko).

None of them clips to [0, 1]: ``clip(clip(x + a) + b)`` is not ``clip(x + a + b)`` (a pixel
brightened past 1 and darkened again comes back below its old value), so clipping would break
the composition the certificates rest on. The base model sees values outside [0, 1]; it is
trained on the same transformed inputs (``regime=transformation``).

What that means for a user: a brightness (or contrast) certificate covers the shift ``x + b``
before clipping, TSS's threat model; a clipped change ``clip(x + b)`` is not covered (on images
that already span [0, 1], b = 0 is the only shift that stays in range). ``in_range`` gives the
part of the certificate that keeps this image in [0, 1] (:meth:`Brightness.in_range_shifts`).
Gamma maps [0, 1] into itself, so its certificate needs no such caveat.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm as normal
from torch import Tensor

from smoothcert.errors import ConfigError, check_sigma, require
from smoothcert.noise import Noise
from smoothcert.noise.base import ArrayLike, _as_probability, _output
from smoothcert.perturbation import ParameterPerturbation

CLIPPING = (
    "brightness shift before clipping (TSS's threat model); a clipped brightness change is not "
    "covered"
)


def _per_row(params: Tensor, like: Tensor) -> Tensor:
    """``params [B]`` shaped to broadcast over the rows of ``like [B, *s]``."""
    return params.reshape(-1, *([1] * (like.dim() - 1)))


class Brightness(ParameterPerturbation):
    """``psi_b(x) = x + b``, ``b ~ N(0, sigma^2)`` (sigma in brightness units, pixel scale 1).

    ``psi_a . psi_b = psi_(a+b)``, so the smoothed answer at ``x + a`` is Gaussian smoothing of
    ``t -> f(x + t)`` at ``a`` instead of 0, and Cohen's theorem in one dimension certifies every
    brightness change ``|a| < sigma Phi^-1(p_A)`` (two-class: ``sigma / 2 (Phi^-1(p_A) -
    Phi^-1(p_B))``), the default :meth:`ParameterPerturbation.radius`.
    """

    name, units, num_params = "brightness", "brightness units", 1
    keeps_range, threat_model = False, CLIPPING

    def in_range_shifts(self, x: Tensor) -> tuple[float, float]:
        """``x + b`` stays in [0, 1] for ``-min x <= b <= 1 - max x``."""
        return -float(x.min()), 1.0 - float(x.max())

    def transform(self, xs: Tensor, params: Tensor) -> Tensor:
        return xs + _per_row(params[:, 0], xs)


class BrightnessContrast(ParameterPerturbation):
    """TSS brightness and contrast ``psi_(k, b)(x) = e^k (x + b)`` (shift, then scale: TSS's
    order; the same images as ``e^k x + e^k b``), ``(k, b) ~ N(0, diag(sigma_k^2, sigma^2))``.

    The noise draws both coordinates at ``sigma`` (the brightness scale); the contrast one is
    rescaled to ``sigma_k``. Composition: ``psi_(k', b')(psi_(k, b)(x)) = psi_(k + k', b + e^-k
    b')(x)``, so at the attacked image the smoothing parameters are ``N((k, b), diag(sigma_k^2,
    e^-2k sigma^2))``: shifted, and the brightness spread scaled by ``e^-k``. Two worst cases in
    a row bound the mass of the class: the spread change alone (Neyman-Pearson: the worst set is
    ``{|b| >= t}`` for k >= 0, ``{|b| <= t}`` for k < 0) leaves at least
    ``p_bar = 2 - 2 Phi(e^k Phi^-1(1 - p_A / 2))`` (k >= 0) or ``2 Phi(e^k Phi^-1(1/2 + p_A / 2))
    - 1`` (k < 0); the shift, whitened, is then Cohen's: the class stays while
    ``(k / sigma_k)^2 + (e^k b / sigma)^2 < Phi^-1(p_bar)^2``, i.e. ``|b| < sigma e^-k
    sqrt(margin)``, ``margin = Phi^-1(p_bar)^2 - (k / sigma_k)^2``. The radius is TSS's published
    form ``R_b(k) = sigma min(e^-k, 1) sqrt(margin)`` (the fix of its first code), at most the
    bound just derived, so sound (more conservative for k < 0). It holds jointly with every
    contrast ``k`` in ``[k_low, k_high]``; ``R_b`` decreases in ``|k|`` on each side, so the
    radius is ``min(R_b(k_low), R_b(k_high))``, in brightness units of the shift ``b`` before
    scaling. Where that is 0 nothing is certified (CERTIFY abstains, as TSS does): some contrast
    in the range may change the answer even without a brightness change.

    The contrast range, in either spelling (not both; neither: ``contrast=0.1``):
    ``contrast=c`` certifies ``k`` in ``[-c, c]`` (contrast factors ``e^-c .. e^c``);
    ``contrast_factor=s`` is TSS's ``--bright_scale s``: factors ``[1 - s, 1 + s]``, i.e. ``k``
    in ``[ln(1 - s), ln(1 + s)]``. So TSS's s = 0.1 is ``k`` in [-0.105, 0.095], not
    ``contrast=0.1``.
    """

    name, units, num_params = "brightness_contrast", "brightness units", 2
    keeps_range, threat_model = False, CLIPPING

    def __init__(
        self,
        noise: Noise,
        sigma_k: float = 0.1,
        contrast: float | None = None,
        contrast_factor: float | None = None,
    ) -> None:
        super().__init__(noise)
        self.sigma_k = check_sigma(sigma_k, "perturbation.sigma_k")
        require(
            contrast is None or contrast_factor is None,
            f"perturbation.contrast={contrast} and perturbation.contrast_factor={contrast_factor} "
            "both give the contrast range: set one (the other null)",
        )
        self.contrast_factor = None if contrast_factor is None else float(contrast_factor)
        if self.contrast_factor is not None:
            require(
                math.isfinite(self.contrast_factor) and 0 <= self.contrast_factor < 1,
                f"perturbation.contrast_factor={contrast_factor} must be a number in [0, 1) "
                "(TSS's s: contrast factors 1 - s to 1 + s)",
            )
            self.contrast = None
            self.k_low = math.log1p(-self.contrast_factor)
            self.k_high = math.log1p(self.contrast_factor)
            return
        self.contrast = 0.1 if contrast is None else float(contrast)
        require(
            math.isfinite(self.contrast) and self.contrast >= 0,
            f"perturbation.contrast={contrast} must be a number >= 0 (the certified |k|, "
            "log-contrast)",
        )
        self.k_low, self.k_high = -self.contrast, self.contrast

    @property
    def contrast_range(self) -> str:
        """The certified contrast range in words, e.g. ``|log-contrast| <= 0.1``."""
        if self.contrast_factor is None:
            return f"|log-contrast| <= {self.contrast:g}"
        s = self.contrast_factor
        return f"contrast factor in [{1 - s:g}, {1 + s:g}]"

    @property
    def axis_label(self) -> str:
        return self.with_threat_model(f"brightness radius ({self.contrast_range})")

    def header_settings(self) -> dict[str, object]:
        settings = {"sigma_k": self.sigma_k, "contrast": self.contrast_range}
        return {
            **settings,
            "log_contrast_range": [self.k_low, self.k_high],
            **super().header_settings(),
        }

    def in_range_shifts(self, x: Tensor) -> tuple[float, float]:
        """``e^k (x + b)`` stays in [0, 1] for every certified ``k`` iff ``-min x <= b <= e^-k_high
        - max x`` (the largest contrast is the binding one)."""
        return -float(x.min()), math.exp(-self.k_high) - float(x.max())

    def params_from(self, draws: Tensor) -> Tensor:
        return draws * draws.new_tensor([self.sigma_k / self.sigma, 1.0])

    def transform(self, xs: Tensor, params: Tensor) -> Tensor:
        return (xs + _per_row(params[:, 1], xs)) * _per_row(params[:, 0].exp(), xs)

    def brightness_radius(self, p_lower: ArrayLike, k: float) -> ArrayLike:
        """``R_b(k)``: the brightness radius at contrast ``k`` (0 where it certifies nothing)."""
        p = _as_probability(p_lower, "p_lower")
        with np.errstate(divide="ignore", invalid="ignore"):
            if k >= 0:
                p_bar = 2 - 2 * normal.cdf(math.exp(k) * normal.ppf(1 - p / 2))
            else:
                p_bar = 2 * normal.cdf(math.exp(k) * normal.ppf(0.5 + p / 2)) - 1
            quantile = normal.ppf(p_bar)
            margin = quantile**2 - (k / self.sigma_k) ** 2
            value = self.sigma * min(math.exp(-k), 1.0) * np.sqrt(np.maximum(margin, 0.0))
        value = np.where((p_bar > 0.5) & (margin > 0), value, 0.0)
        return _output(value, p_lower)

    def radius(self, p_lower: ArrayLike, p_upper: ArrayLike | None = None) -> ArrayLike:
        if p_upper is not None:
            raise ConfigError("perturbation=brightness_contrast has a one-class radius only")
        ends = [self.brightness_radius(p_lower, k) for k in (self.k_low, self.k_high)]
        return _output(np.minimum(*ends), p_lower)


class Gamma(ParameterPerturbation):
    """Gamma correction ``psi_g(x) = x^g`` (pixels in [0, 1]; ``(x^a)^b = x^(a b)``).

    With ``noise=rayleigh`` the exponent is Rayleigh (Muravev and Petiushko): the certified range
    is ``sqrt(log2(1 / p_A)) < gamma < sqrt(log2(1 / (1 - p_A)))``, whatever sigma (derived in
    :mod:`smoothcert.noise.rayleigh`). With ``noise=gaussian`` the exponent is log-normal,
    ``g = exp(sigma z)``: composition is additive in ``ln g`` and Cohen's theorem certifies
    ``|ln gamma| < sigma Phi^-1(p_A)``. The radius, in both cases, is in ``|ln gamma|``: the
    largest r with every ``e^-r < gamma < e^r`` certified (Rayleigh: ``min(ln high, -ln low)``;
    :meth:`certified_range` gives the asymmetric range itself). ``x^gamma`` maps [0, 1] into
    itself, so the certificate covers real (unclipped and in-range) images.
    """

    name, units, num_params = "gamma", "|ln gamma|", 1
    noises = ("rayleigh", "gaussian")

    def params_from(self, draws: Tensor) -> Tensor:
        return draws if self.noise.name == "rayleigh" else draws.exp()

    def transform(self, xs: Tensor, params: Tensor) -> Tensor:
        return xs.pow(_per_row(params[:, 0], xs))

    def certified_range(
        self, p_lower: ArrayLike, p_upper: ArrayLike | None = None
    ) -> tuple[ArrayLike, ArrayLike]:
        """``(low, high)``: the answer is certified at ``x^gamma`` for ``low < gamma < high``."""
        if self.noise.name == "rayleigh":
            return self.noise.scale_range(p_lower, p_upper)
        r = np.asarray(super().radius(p_lower, p_upper))
        low, high = np.exp(-r), np.exp(r)
        return (float(low), float(high)) if low.ndim == 0 else (low, high)

    def radius(self, p_lower: ArrayLike, p_upper: ArrayLike | None = None) -> ArrayLike:
        if self.noise.name != "rayleigh":
            return super().radius(p_lower, p_upper)
        low, high = self.certified_range(p_lower, p_upper)
        with np.errstate(divide="ignore"):
            value = np.minimum(np.log(high), -np.log(low))
        return _output(value, p_lower)

    def range_from_radius(self, radius: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` from radii in ``|ln gamma|`` (what certify.tsv records). Log-normal:
        ``(e^-r, e^r)``. Rayleigh: the radius ``min(ln high(p), -ln low(p))`` increases strictly
        with p_A on (1/2, 1), so bisection recovers p_A and with it the asymmetric range; radius
        0 gives ``(1, 1)`` (nothing), an infinite radius ``(0, inf)``."""
        r = np.asarray(radius, dtype=np.float64)
        if self.noise.name != "rayleigh":
            return np.exp(-r), np.exp(r)
        lo, hi = np.full(r.shape, 0.5), np.ones(r.shape)
        for _ in range(80):  # 2^-80: p_A to float precision
            mid = (lo + hi) / 2
            below = np.asarray(self.radius(mid)) < r
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        low, high = (np.asarray(v, dtype=np.float64) for v in self.noise.scale_range(lo))
        low, high = np.where(r > 0, low, 1.0), np.where(r > 0, high, 1.0)
        return np.where(np.isinf(r), 0.0, low), np.where(np.isinf(r), np.inf, high)

    def certified_at(self, radius: ArrayLike, gamma: float) -> np.ndarray:
        """Whether each radius (``|ln gamma|``) certifies the answer at ``x^gamma``: ``low <
        gamma < high`` of the range it stands for (:meth:`range_from_radius`)."""
        low, high = self.range_from_radius(radius)
        return (low < gamma) & (gamma < high)
