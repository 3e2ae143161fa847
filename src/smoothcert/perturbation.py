"""How the smoothing draws meet the input: ``x + delta`` (:class:`Additive`), or a transformation
``psi_beta(x)`` whose parameters ``beta`` are drawn (:class:`ParameterPerturbation`: brightness,
contrast, gamma, translation, rotation), with its certificate in the parameters' units.

The interface (what a new transformation implements; rotation plugs in the same way):

- :class:`Perturbation` is what the sampler needs: ``check_example(x, input_range, name)`` (which
  inputs it accepts: one image ``[C, H, W]`` in [0, 1] by default, see :func:`check_example`),
  ``draw_shape(shape)`` (the shape of ONE draw
  for an example of ``shape``: the example's own shape for ``Additive``, ``(k,)`` for ``k``
  transformation parameters) and ``apply(x, draws)`` (``[m, *x.shape]`` inputs from one example
  ``x`` and ``m`` draws ``[m, *draw_shape]``). ``sampling.example_stream`` checks the example and
  streams the noise with the draw shape, so the stream draws parameters, and ``sampling.sample``
  calls ``apply``.
- :class:`ParameterPerturbation` (an ``nn.Module``) is the base of every transformation. It holds
  ``noise``, the :class:`~smoothcert.noise.Noise` that draws the parameters (at the run's
  ``sigma``; training and certification share it). A subclass sets the class attributes

  ``name``        config and record name ("brightness", "rotation");
  ``units``       what a radius measures ("brightness units", "pixels", "degrees");
  ``num_params``  ``k``, parameters per draw;
  ``noises``      names of the noises that may draw them (default: gaussian);
  ``images_only`` True if the input must be an image ``[C, H, W]`` (translation, rotation);
  ``certified``   False if psi does not compose exactly (rotation with interpolation): the radius
                  is then a heuristic and every record and plot says "not a certificate";
  ``keeps_range`` False if psi takes an image in [0, 1] out of it (brightness): the certificate
                  then covers the unclipped images only (``threat_model`` says so in headers and
                  plots) and the subclass gives ``in_range_shifts(x)``, the parameters that keep
                  ``x`` in [0, 1], from which :meth:`in_range` restricts the certificate;

  and implements ``transform(xs, params)`` (``[B, *s]`` inputs and ``[B, k]`` parameters, one
  per row, to ``[B, *s]``) and, unless the Gaussian l2 radius in parameter space
  ``sigma Phi^-1(p_A)`` is its certificate, ``radius(p_lower, p_upper=None)``. It may override
  ``params_from(draws)`` (noise draws to parameters: translation rounds to whole pixels) and
  ``check_input(shape)`` (a one-line ConfigError when the data does not fit).
  The base provides ``draw_shape``, ``apply`` (certification) and ``forward(x)`` (training: one
  fresh draw per example of a batch), so one definition of psi serves both.

The radius of a parameter perturbation is a statement about the attack ``psi_gamma(x)`` (and
nothing else): with probability at least 1 - alpha the smoothed classifier's answer is the same at
``psi_gamma(x)`` for every parameter ``gamma`` within the radius. No clipping anywhere: clipping
to [0, 1] breaks the exact composition ``psi_a . psi_b = psi_(a+b)`` the certificate rests on.
So where psi leaves [0, 1] (brightness, contrast), a clipped change is not covered; gamma,
translation and rotation map [0, 1] into itself, so for them nothing is left out. A radius that
is not positive certifies nothing (CERTIFY abstains): the certificate may have a second part,
e.g. every contrast in a range, that a radius of 0 does not cover.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError, check_input_range, require
from smoothcert.noise.base import ArrayLike, Noise


@runtime_checkable
class Perturbation(Protocol):
    """Turns ``m`` draws of the smoothing distribution into ``m`` perturbed copies of ``x``."""

    units: str  # what a certified radius measures

    def draw_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of one draw for an example of ``shape``."""
        ...

    def apply(self, x: Tensor, draws: Tensor) -> Tensor:
        """``[m, *x.shape]`` perturbed inputs from ``x`` and the draws ``[m, *draw_shape]``
        (which it may overwrite: the stream hands out fresh tensors)."""
        ...

    def check_example(
        self, x: Tensor, input_range: tuple[float, float] | None = (0.0, 1.0), name: str = "input"
    ) -> None:
        """A one-line ConfigError unless ``x`` is one example this perturbation accepts
        (``sampling.example_stream`` calls it before any noise is drawn)."""
        ...


def check_example(
    x: Tensor, input_range: tuple[float, float] | None = (0.0, 1.0), name: str = "input"
) -> None:
    """The input check of every certifier (one place): with ``input_range`` (default [0, 1]) ``x``
    must be one image ``[C, H, W]`` whose values lie in the range (a dataset that normalizes
    before the noise, or scales to [0, 255], fails here); with ``input_range=None`` any shape but
    a scalar (tabular features, embeddings, signals). ``name`` starts the one-line ConfigError."""
    if input_range is None:
        if x.dim() == 0:
            raise ConfigError(
                f"{name} expects one example (without a batch dimension), got a scalar"
            )
        return
    if x.dim() != 3:
        raise ConfigError(
            f"{name} expects one example [C, H, W], got shape {tuple(x.shape)} (inputs that are "
            "not images: input_range=None)"
        )
    check_input_range(x, f"{name} input", *input_range)


class Additive:
    """``x + delta`` in input space: the draws are the noise itself (``[m, *x.shape]``)."""

    units = "input space"
    name = "additive"

    def check_example(
        self, x: Tensor, input_range: tuple[float, float] | None = (0.0, 1.0), name: str = "input"
    ) -> None:
        """:func:`check_example`: any example the range check accepts."""
        check_example(x, input_range, name)

    def draw_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)

    def apply(self, x: Tensor, draws: Tensor) -> Tensor:
        return draws.add_(x)

    def __repr__(self) -> str:
        return "Additive()"


ADDITIVE = Additive()


def is_parametric(perturbation: object) -> bool:
    """Whether ``perturbation`` smooths over transformation parameters (not ``x + delta``)."""
    return isinstance(perturbation, ParameterPerturbation)


class ParameterPerturbation(nn.Module):
    """Smoothing over the parameters of a transformation: ``g(x) = argmax_c P(f(psi_beta(x)) = c)``
    with ``beta`` drawn from ``noise``. See the module docstring for the subclass contract."""

    name: ClassVar[str] = ""
    units: ClassVar[str] = ""
    num_params: ClassVar[int] = 1
    noises: ClassVar[tuple[str, ...]] = ("gaussian",)
    images_only: ClassVar[bool] = False
    certified: ClassVar[bool] = True
    keeps_range: ClassVar[bool] = True
    threat_model: ClassVar[str] = ""

    def __init__(self, noise: Noise) -> None:
        super().__init__()
        if not isinstance(noise, Noise):
            raise ConfigError(f"perturbation.noise={noise!r} must be a smoothcert.noise.Noise")
        require(
            noise.name in self.noises,
            f"perturbation={self.name} draws its parameters from {' or '.join(self.noises)} "
            f"noise, not {noise.name}: set noise={self.noises[0]}",
        )
        noise.certified_sigma  # noqa: B018  (a single level > 0, else a one-line ConfigError)
        self.noise = noise

    @property
    def sigma(self) -> float:
        """The scale of the parameter noise (``noise.sigma``), in the parameters' units."""
        return self.noise.certified_sigma

    @property
    def axis_label(self) -> str:
        """What a certified-accuracy plot's x axis shows, e.g. ``brightness radius (units)``."""
        label = f"{self.name} radius ({self.units})"
        label = self.with_threat_model(label)
        return label if self.certified else f"{label}, heuristic: not a certificate"

    def with_threat_model(self, label: str) -> str:
        """``label`` and, where psi leaves [0, 1], the threat model on lines of their own (so
        the figure fits them)."""
        if self.keeps_range:
            return label
        return label + "\n" + self.threat_model.replace("; ", ";\n")

    def header_settings(self) -> dict[str, object]:
        """What the record header says about this perturbation beyond its name and units."""
        return {"threat_model": self.threat_model} if self.threat_model else {}

    # ----- the transformation -----------------------------------------------------------------

    def check_input(self, shape: tuple[int, ...]) -> None:
        """One-line ConfigError when an example of ``shape`` cannot be transformed."""
        if self.images_only and len(shape) != 3:
            raise ConfigError(
                f"perturbation={self.name} transforms images [C, H, W], but the examples have "
                f"shape {list(shape)}: use perturbation=additive (or brightness) for such data"
            )

    def check_example(
        self, x: Tensor, input_range: tuple[float, float] | None = (0.0, 1.0), name: str = "input"
    ) -> None:
        """:func:`check_example`, then :meth:`check_input` of the example's shape."""
        check_example(x, input_range, name)
        self.check_input(tuple(x.shape))

    def draw_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        self.check_input(tuple(shape))
        return (self.num_params,)

    def params_from(self, draws: Tensor) -> Tensor:
        """The transformation parameters ``[B, k]`` from noise draws ``[B, k]`` (identity)."""
        return draws

    def transform(self, xs: Tensor, params: Tensor) -> Tensor:
        """``psi_(params[i])(xs[i])`` for every row: ``[B, *s]`` from ``[B, *s]`` and ``[B, k]``."""
        raise NotImplementedError

    def apply(self, x: Tensor, draws: Tensor) -> Tensor:
        """``m`` transformed copies of one example ``x``, one per draw ``[m, k]``."""
        copies = x.unsqueeze(0).expand(draws.shape[0], *x.shape)
        return self.transform(copies, self.params_from(draws.view(-1, self.num_params)))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Training augmentation: each example of the batch ``x`` transformed by its own draw."""
        draws = self.noise.sample((x.shape[0], self.num_params), generator, x.device, x.dtype)
        return self.transform(x, self.params_from(draws))

    # ----- the certificate --------------------------------------------------------------------

    def radius(self, p_lower: ArrayLike, p_upper: ArrayLike | None = None) -> ArrayLike:
        """The certified radius in ``units`` from a lower bound on p_A (and an upper bound on
        p_B): by default Cohen's l2 radius of the Gaussian parameter noise,
        ``sigma Phi^-1(p_A)`` (two-class: ``sigma / 2 (Phi^-1(p_A) - Phi^-1(p_B))``), sound for
        a transformation that composes additively, ``psi_a . psi_b = psi_(a+b)``. 0 where nothing
        is certified."""
        return self.noise.radius(p_lower, "l2", p_upper=p_upper)

    def in_range_shifts(self, x: Tensor) -> tuple[float, float]:
        """``(low, high)``: the parameter values (in ``units``) whose transformation keeps the
        image ``x`` in [0, 1] (for every other certified parameter, e.g. every contrast in range).
        Only for ``keeps_range = False``."""
        raise NotImplementedError(f"perturbation={self.name} keeps images in [0, 1]")

    def in_range(self, x: Tensor, radius: float) -> tuple[float, float, float]:
        """The certificate restricted to the shifts that keep ``x`` in [0, 1]: ``(low, high,
        r)``. Certified are the shifts ``|b| < radius``; in range are ``in_range_shifts(x)``; both
        hold on ``(max(-radius, low), min(radius, high))``, and ``r = max(0, min(radius, -low,
        high))`` is its symmetric part (every ``|b| < r`` is certified and in range). Radius 0
        (abstain) gives ``(0, 0, 0)``; an empty intersection gives ``r = 0``."""
        if not radius > 0:
            return 0.0, 0.0, 0.0
        low, high = self.in_range_shifts(x)
        low, high = max(-radius, low) + 0.0, min(radius, high) + 0.0  # + 0.0: no -0.0
        return low, high, max(0.0, min(radius, -low, high))

    def extra_repr(self) -> str:
        return f"sigma={self.noise.sigma} ({self.units})"


class PointCoordinates(ParameterPerturbation):
    """Noise on the coordinates of a point cloud only: ``x = [xyz; rest]`` (``[C, N]``, the first
    three channels the points' coordinates) becomes ``[xyz + delta; rest]`` with ``delta ~ N(0,
    sigma^2 I_{3N})``; the other channels (normals, a category code) are never touched (paper 003,
    Sec. 6.3). The parameters are the ``3N`` coordinate shifts and compose exactly
    (``psi_a . psi_b = psi_(a+b)``), so the radius ``sigma Phi^-1(p_A)`` is Cohen's l2 certificate
    over all coordinates together: every shift of the points with ``||delta||_2`` (over the
    ``3N`` numbers) below it, normals and category unchanged. Nothing is clipped.

    Clouds must be normalized before smoothing (centred, farthest point at norm 1: the unit ball),
    as the paper does: ``check_example`` refuses coordinates outside the unit ball, the mistake
    that would make sigma mean something else (the image check of [0, 1] does not apply)."""

    name, units = "xyz", "l2 over all point coordinates, unit-ball units"
    coordinates = 3

    def check_input(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 2 or shape[0] < self.coordinates:
            raise ConfigError(
                f"perturbation={self.name} shifts point clouds [C, N] (xyz in the first 3 "
                f"channels), but the examples have shape {list(shape)}"
            )

    def check_example(
        self, x: Tensor, input_range: tuple[float, float] | None = (0.0, 1.0), name: str = "input"
    ) -> None:
        """One point cloud ``[C, N]`` whose ``xyz`` lie in the unit ball (``input_range``, an
        image setting, is not used: points are not pixels)."""
        self.check_input(tuple(x.shape))
        norms = x[: self.coordinates].float().norm(dim=0)
        if not bool(torch.isfinite(norms).all()) or float(norms.max()) > 1.0 + 1e-4:
            raise ConfigError(
                f"{name} input: point coordinates reach norm {float(norms.max()):.4g} > 1: "
                "normalize each cloud (subtract the centroid, divide by the largest norm) first"
            )

    def draw_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        self.check_input(tuple(shape))
        return (self.coordinates, shape[1])

    def transform(self, xs: Tensor, params: Tensor) -> Tensor:
        """``xs [B, C, N]`` with ``params [B, 3, N]`` added to the coordinates (a new tensor)."""
        shifted = xs.clone()
        shifted[:, : self.coordinates] += params.to(xs.dtype)
        return shifted

    def apply(self, x: Tensor, draws: Tensor) -> Tensor:
        copies = x.unsqueeze(0).expand(draws.shape[0], *x.shape)
        return self.transform(copies, draws.view(draws.shape[0], self.coordinates, -1))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Training: each cloud of the batch ``[B, C, N]`` with its own coordinate noise."""
        shape = (x.shape[0], self.coordinates, x.shape[-1])
        return self.transform(x, self.noise.sample(shape, generator, x.device, x.dtype))
