"""A noise together with the norm and input dimension its radii are stated in: what every
certifier (CERTIFY, SegCertify, IndivClass, JointClass) turns a probability bound into a radius
with, so no certifier writes a radius formula of its own."""

from __future__ import annotations

from dataclasses import dataclass

from smoothcert.errors import ConfigError, check_count, check_sigma
from smoothcert.noise.base import ArrayLike, Noise, build_noise
from smoothcert.noise.gaussian import GaussianNoise


def resolve_noise(
    sigma: float, noise: Noise | str | None = None, norm: str | None = None
) -> tuple[Noise, str]:
    """The smoothing noise at ``sigma`` and the canonical norm it certifies.

    ``noise`` is None (Gaussian), a name (gaussian, laplace, uniform) or a :class:`Noise` at the
    same single level; ``norm`` None picks the noise's natural norm. One-line ConfigErrors name
    the supported (noise, norm) pairs, or the two levels when they differ.
    """
    sigma = check_sigma(sigma)
    if noise is None:
        noise = GaussianNoise(sigma)
    elif isinstance(noise, str):
        noise = build_noise(noise, sigma)
    elif not isinstance(noise, Noise):
        raise ConfigError(f"noise={noise!r} must be a smoothcert.noise.Noise or a noise name")
    if noise.sigma != sigma:
        raise ConfigError(
            f"noise sigma={noise.sigma} differs from sigma={sigma}: give both the same single "
            "noise level"
        )
    return noise, noise.check_norm(norm)


@dataclass(frozen=True)
class Certificate:
    """Radii of ``noise`` in ``norm`` for inputs of ``dim`` coordinates (needed for linf only)."""

    noise: Noise
    norm: str
    dim: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", self.noise.check_norm(self.norm))
        if self.dim is not None:
            object.__setattr__(self, "dim", check_count(self.dim, "dim"))

    @classmethod
    def of(
        cls,
        sigma: float,
        noise: Noise | str | None = None,
        norm: str | None = None,
        dim: int | None = None,
    ) -> Certificate:
        """The certificate of ``resolve_noise(sigma, noise, norm)`` for ``dim`` coordinates."""
        return cls(*resolve_noise(sigma, noise, norm), dim)

    @property
    def sigma(self) -> float:
        return self.noise.certified_sigma

    def radius(self, p_lower: ArrayLike, p_upper: ArrayLike | None = None) -> ArrayLike:
        """``noise.radius`` in this norm and dimension (0 where nothing is certified)."""
        return self.noise.radius(p_lower, self.norm, self.dim, p_upper)


def as_certificate(value: float | Certificate, dim: int | None = None) -> Certificate:
    """``value`` itself if it is a Certificate, else Cohen's: Gaussian noise at sigma ``value``
    in l2 (how the count-level functions read a plain ``sigma``)."""
    if isinstance(value, Certificate):
        return value
    return Certificate(GaussianNoise(check_sigma(value)), "l2", dim)
