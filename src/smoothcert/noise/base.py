"""The ``Noise`` base class: a smoothing distribution, its training augmentation and certificates.

Every noise is parametrised by ``sigma``, the per-coordinate standard deviation, so noises of one
``sigma`` are comparable; each subclass derives its own scale from it (Gaussian: sigma, Laplace:
sigma / sqrt(2), uniform: sqrt(3) sigma). Radius formulas live in the subclasses and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError, check_count, check_sigma
from smoothcert.noise.stream import NoiseStream

NORMS = ("l1", "l2", "linf")
_NORM_ALIASES = {"l1": "l1", "1": "l1", "l2": "l2", "2": "l2", "linf": "linf", "inf": "linf"}
_REGISTRY: dict[str, type[Noise]] = {}

ArrayLike = float | np.ndarray


def noise_levels(sigma: float | Sequence[float], name: str = "sigma") -> list[float]:
    """Sorted distinct noise levels from a number or a list; one-line ConfigError if empty or
    negative."""
    values = list(sigma) if isinstance(sigma, Sequence) and not isinstance(sigma, str) else [sigma]
    if not values:
        raise ConfigError(f"{name} is an empty list: give a noise level or a list of them")
    return sorted({check_sigma(v, name, allow_zero=True) for v in values})


def canonical_norm(norm: str) -> str:
    """``"l1"``, ``"l2"`` or ``"linf"`` for a norm name (``"inf"``, ``"1"``, ``"2"`` accepted);
    a one-line ConfigError naming the valid ones otherwise."""
    key = str(norm).strip().lower()
    if key not in _NORM_ALIASES:
        raise ConfigError(f"norm={norm!r} is not a norm name: use one of {', '.join(NORMS)}")
    return _NORM_ALIASES[key]


def supported_pairs() -> str:
    """Every registered (noise, norm) pair, e.g. ``"gaussian: l2, l1, linf; laplace: l1"``."""
    pairs = ((name, cls.norms) for name, cls in _REGISTRY.items() if cls.norms)  # not rayleigh
    return "; ".join(f"{name}: {', '.join(norms)}" for name, norms in pairs)


def build_noise(name: str, sigma: float | Sequence[float]) -> Noise:
    """The registered noise called ``name`` (gaussian, laplace, uniform) at ``sigma``."""
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise ConfigError(f"noise={name!r} is unknown: use one of {', '.join(_REGISTRY)}")
    return _REGISTRY[key](sigma)


def _as_probability(p: ArrayLike, name: str) -> np.ndarray:
    values = np.asarray(p, dtype=np.float64)
    if not np.all((values >= 0) & (values <= 1)):
        raise ConfigError(f"{name} must lie in [0, 1], got {p}")
    return values


def _output(values: np.ndarray, *inputs: ArrayLike) -> ArrayLike:
    """A Python float when every input was a scalar, else the array."""
    return float(values) if all(np.ndim(v) == 0 for v in inputs) else values


class Noise(nn.Module):
    """A smoothing distribution, shared by training (``forward``) and certification.

    ``sigma`` is the per-coordinate standard deviation: a number, or a list of levels for training
    at several noise levels (each example of a batch then gets a level drawn uniformly from the
    list; ``self.sigma`` is the sorted list). Certification (``stream``, ``radius``) needs a single
    level > 0. Subclasses set ``name`` and ``norms`` (the first is the natural norm) and implement
    ``scale_of``, ``source``/``standardize`` and ``_radius``.
    """

    name: ClassVar[str] = ""
    norms: ClassVar[tuple[str, ...]] = ()
    two_class: ClassVar[bool] = False  # whether ``radius`` uses an upper bound on p_B
    worst_case_mass: ClassVar[bool] = False  # whether it has ``worst_case_mass_lower/upper`` (l2)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def __init__(self, sigma: float | Sequence[float]) -> None:
        super().__init__()
        levels = noise_levels(sigma, "sigma")
        self.sigma: float | list[float] = levels[0] if len(levels) == 1 else levels
        self.levels = levels

    # ----- the distribution -------------------------------------------------------------------

    @staticmethod
    def scale_of(sigma: float) -> float:
        """The distribution's own scale for a per-coordinate standard deviation ``sigma``."""
        raise NotImplementedError

    # The one random source of a noise, ``torch.randn`` or ``torch.rand``, and the in-place map
    # from its draws to the noise at scale 1 (each draw is used exactly once).
    source: ClassVar[Callable[..., Tensor]] = staticmethod(torch.randn)

    @staticmethod
    def standardize(draws: Tensor) -> Tensor:
        """Turns ``source`` draws into i.i.d. samples of the noise at scale 1, in place."""
        raise NotImplementedError

    @classmethod
    def draw_standard(
        cls,
        size: tuple[int, ...],
        generator: torch.Generator | None,
        device: torch.device | str,
        dtype: torch.dtype,
        out: Tensor | None = None,
    ) -> Tensor:
        """I.i.d. samples at scale 1 (see :class:`~smoothcert.noise.stream.StandardDraw`): the
        ``source`` draws, into ``out`` when given, then ``standardize``."""
        if out is not None:
            return cls.standardize(cls.source(size, generator=generator, out=out))
        return cls.standardize(cls.source(size, generator=generator, device=device, dtype=dtype))

    @property
    def natural_norm(self) -> str:
        """The norm certified when none is given (the first of ``norms``)."""
        return self.norms[0]

    @property
    def certified_sigma(self) -> float:
        """The single noise level > 0 that certificates are stated for; ConfigError otherwise."""
        if len(self.levels) != 1 or self.levels[0] <= 0:
            raise ConfigError(
                f"{self.name} noise with sigma={self.sigma} cannot certify: certification needs a "
                "single noise level sigma > 0"
            )
        return self.levels[0]

    @property
    def scale(self) -> float:
        """The distribution's scale at ``certified_sigma``."""
        return self.scale_of(self.certified_sigma)

    def stream(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
    ) -> NoiseStream:
        """A batch-size-independent stream of this noise (see :class:`NoiseStream`)."""
        return NoiseStream(shape, self.draw_standard, self.scale, generator, device, dtype)

    def sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """``shape`` i.i.d. coordinates of this noise at ``certified_sigma``."""
        return self.scale * self.draw_standard(tuple(shape), generator, device, dtype)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x`` plus one independent noise draw per element (no clipping, as in Cohen et al.)."""
        if self.levels == [0.0]:
            return x
        noise = self.draw_standard(tuple(x.shape), generator, x.device, x.dtype)
        if len(self.levels) == 1:
            return x + self.scale_of(self.levels[0]) * noise
        pick = torch.randint(len(self.levels), (x.shape[0],), generator=generator, device=x.device)
        scales = [self.scale_of(level) for level in self.levels]
        per_example = torch.tensor(scales, device=x.device, dtype=x.dtype)[pick]
        return x + per_example.view(-1, *([1] * (x.dim() - 1))) * noise

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"

    # ----- certificates -----------------------------------------------------------------------

    def check_norm(self, norm: str | None) -> str:
        """The canonical name of ``norm`` (the natural norm for None) if this noise certifies it;
        a one-line ConfigError listing the supported (noise, norm) pairs otherwise."""
        norm = self.natural_norm if norm is None else canonical_norm(norm)
        if norm not in self.norms:
            raise ConfigError(
                f"{self.name} noise certifies no {norm} radius: supported (noise, norm) pairs are "
                f"{supported_pairs()}"
            )
        return norm

    def radius(
        self,
        p_lower: ArrayLike,
        norm: str | None = None,
        dim: int | None = None,
        p_upper: ArrayLike | None = None,
    ) -> ArrayLike:
        """The certified radius in ``norm`` from a lower bound ``p_lower`` on p_A.

        Guarantee: if p_A >= p_lower (and p_B <= p_upper when given) then the smoothed classifier's
        answer is the same at every x + delta with ||delta||_norm < radius. Entries with
        p_lower <= 1/2 (or p_lower <= p_upper) certify nothing and get radius 0. Vectorised: a
        float for scalar inputs, else a numpy array.

        Args:
            p_lower: lower confidence bound(s) on the top class's probability.
            norm: l1, l2 or linf; None is the natural norm (``norms[0]``).
            dim: number of input coordinates the noise is added to; needed for linf.
            p_upper: upper bound(s) on the runner-up's probability (Gaussian only).
        """
        norm = self.check_norm(norm)
        if norm == "linf":
            if dim is None:
                raise ConfigError(f"the linf radius of {self.name} noise needs the input dim")
            dim = check_count(dim, "dim")
        p = _as_probability(p_lower, "p_lower")
        q = None if p_upper is None else _as_probability(p_upper, "p_upper")
        if q is not None and not self.two_class:
            raise ConfigError(
                f"p_upper: only gaussian noise has a two-class radius, not {self.name}"
            )
        sigma = self.certified_sigma
        certifies = p > 0.5 if q is None else p > q
        with np.errstate(divide="ignore", invalid="ignore"):
            values = self._radius(p, norm, dim, q, sigma)
        values = np.where(certifies, values, 0.0)
        return _output(values, p_lower) if q is None else _output(values, p_lower, q)

    def _radius(
        self, p: np.ndarray, norm: str, dim: int | None, q: np.ndarray | None, sigma: float
    ) -> np.ndarray:
        """The radius formula, applied everywhere (``radius`` zeroes the uncertified entries)."""
        raise NotImplementedError

    def radius_torch(
        self,
        p_lower: Tensor,
        norm: str | None = None,
        dim: int | None = None,
        p_upper: Tensor | None = None,
    ) -> Tensor:
        """The certificate's radius formula in torch, differentiable in ``p_lower`` (and
        ``p_upper``): for training losses on the soft smoothed classifier (MACER).

        Equals :meth:`radius` where that certifies (p_lower > 1/2, or > p_upper); elsewhere it is
        the same formula continued (<= 0 where ``radius`` gives 0), not clipped, so a loss keeps a
        gradient there; ``radius_torch(p).clamp(min=0)`` is ``radius(p)``. At p_lower = 1 (or
        p_upper = 0) it is inf: a loss decides what to do with non-finite values. Not a
        certificate by itself: it is a certified radius only when fed a lower confidence bound.

        Raises:
            ConfigError: (one line) for a norm this noise does not certify, a noise without an
                additive radius (rayleigh), a list of noise levels, linf without ``dim``, or
                ``p_upper`` for a noise without a two-class radius.
        """
        norm = self.check_norm(norm)
        if norm == "linf":
            if dim is None:
                raise ConfigError(f"the linf radius of {self.name} noise needs the input dim")
            dim = check_count(dim, "dim")
        if p_upper is not None and not self.two_class:
            raise ConfigError(
                f"p_upper: only gaussian noise has a two-class radius, not {self.name}"
            )
        return self._radius_torch(p_lower, norm, dim, p_upper, self.certified_sigma)

    def _radius_torch(
        self, p: Tensor, norm: str, dim: int | None, q: Tensor | None, sigma: float
    ) -> Tensor:
        """``_radius`` in torch (differentiable); subclasses with a radius implement it."""
        raise ConfigError(f"{self.name} noise has no differentiable radius (radius_torch)")

    def worst_case_mass_lower(self, p: ArrayLike, r: ArrayLike) -> ArrayLike:
        """Neyman-Pearson P_lower(p, r): the least mass a set of mass ``p`` at x keeps at any
        x + delta with ||delta||_2 <= r. Only Gaussian noise has it."""
        raise ConfigError(
            f"worst_case_mass_lower: only gaussian noise supports it, not {self.name}"
        )

    def worst_case_mass_upper(self, p: ArrayLike, r: ArrayLike) -> ArrayLike:
        """Neyman-Pearson P_upper(p, r): the most mass a set of mass ``p`` at x can have at any
        x + delta with ||delta||_2 <= r. Only Gaussian noise has it."""
        raise ConfigError(
            f"worst_case_mass_upper: only gaussian noise supports it, not {self.name}"
        )
