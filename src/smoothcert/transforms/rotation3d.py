"""Rotations of point clouds (paper 003, App. B.5), smoothed over the rotation angle(s).

A cloud is one example ``[C, N]`` (channels first): coordinates in channels 0-2, normals in
channels 3-5 when present (``normals``), any further channel (colour, a category code) untouched.
``psi_R(x)``: the coordinates ``c + R (p - c)`` (about the ``center`` ``c``, default the origin:
the clouds are centred before smoothing) and the normals ``R n``. No clipping, no interpolation.

- :class:`AxisRotation3D` (``perturbation=rotation3d``; keys ``cert/rotation3d_radians/``):
  ``R = R_axis(theta)``, a rotation by ``theta`` RADIANS about one fixed axis (default ``y``,
  ShapeNet's up axis). These compose exactly,
  ``R_a(s) R_a(t) = R_a(s + t)``, so ``psi_s . psi_t = psi_(s+t)`` and Cohen's theorem applied to
  ``h(t) = f(psi_t(x))`` certifies (Fischer et al. 2020, Theorem 3.2 with exact composition): with
  ``theta ~ N(0, sigma^2)``, a class of probability ``p_A`` keeps probability above 1/2 at
  ``psi_t(x)`` for every ``|t| < sigma Phi^-1(p_A)`` (radians; since ``R_a`` has period 2 pi,
  every ``t`` congruent to such an angle too). SegCertify per point with this perturbation is
  therefore a certificate per point, radius ``sigma Phi^-1(tau)`` radians.
- :class:`AxisAngleRotation3D` (``perturbation=rotation3d_heuristic``; keys
  ``heuristic/rotation3d_heuristic_radians/``): ``R = exp([v]_x)`` for an axis-angle
  vector ``v ~ N(0, sigma^2 I_3)`` (what the paper's code draws; Euler angles behave alike).
  Rotations about different axes do not commute: ``exp([u]_x) exp([v]_x) = exp([u + v + u x v / 2
  + ...]_x)`` (BCH), so ``psi_u . psi_v != psi_(u+v)`` and the theorem does not cover the attack
  ``psi_v(x)``: its radius ``sigma Phi^-1(p_A)`` is a HEURISTIC (``certified = False``: keys under
  ``heuristic/``, records and plots say "not a certificate"). What it does state exactly is a
  property of the family ``t -> f(psi_(t + eps)(x))`` around the known clean ``x``, which an
  attacker who rotates ``x`` does not give us.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from smoothcert.errors import ConfigError
from smoothcert.noise.base import Noise
from smoothcert.perturbation import ParameterPerturbation

AXES = {"x": 0, "y": 1, "z": 2}


def axis_rotation(angles: Tensor, axis: int) -> Tensor:
    """``[B, 3, 3]`` rotation matrices by ``angles`` ``[B]`` (radians, counter-clockwise seen
    from the positive ``axis``) about the coordinate axis ``axis`` (0, 1, 2 = x, y, z)."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    matrices = torch.zeros(*angles.shape, 3, 3, dtype=angles.dtype, device=angles.device)
    i, j = (axis + 1) % 3, (axis + 2) % 3  # the plane turned: (y, z), (z, x) or (x, y)
    matrices[..., axis, axis] = 1.0
    matrices[..., i, i], matrices[..., i, j] = cos, -sin
    matrices[..., j, i], matrices[..., j, j] = sin, cos
    return matrices


def axis_angle_rotation(vectors: Tensor) -> Tensor:
    """``[B, 3, 3]`` rotation matrices ``exp([v]_x)`` of axis-angle vectors ``[B, 3]`` (angle
    ``|v|`` radians about ``v / |v|``; Rodrigues' formula, exact near 0 by series terms)."""
    angle = vectors.norm(dim=-1)[..., None, None]
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1)
    cross = cross.view(*vectors.shape[:-1], 3, 3)
    small = angle < 1e-4
    safe = torch.where(small, torch.ones_like(angle), angle)
    first = torch.where(small, 1 - angle**2 / 6, torch.sin(safe) / safe)
    second = torch.where(small, 0.5 - angle**2 / 24, (1 - torch.cos(safe)) / safe**2)
    eye = torch.eye(3, dtype=vectors.dtype, device=vectors.device)
    return eye + first * cross + second * (cross @ cross)


def rotate_clouds(xs: Tensor, matrices: Tensor, normals: bool, center: float = 0.0) -> Tensor:
    """Each cloud ``xs[i]`` (``[C, N]``) with its coordinates (channels 0-2) turned by
    ``matrices[i]`` about ``(center, center, center)`` and, with ``normals``, channels 3-5 turned
    by it too; every other channel as it was."""
    parts = [torch.einsum("bij,bjn->bin", matrices, xs[:, :3] - center) + center]
    if normals:
        parts.append(torch.einsum("bij,bjn->bin", matrices, xs[:, 3:6]))
    return torch.cat([*parts, xs[:, 3 * len(parts) :]], dim=1)


class CloudRotation(ParameterPerturbation):
    """Rotations of point clouds ``[C, N]`` (see the module docstring); a subclass gives the
    ``matrices`` of its parameters. ``normals``: rotate channels 3-5 as normals (None: when the
    cloud has at least 6 channels); ``center``: the point rotated about (each coordinate)."""

    units: ClassVar[str] = "radians"
    option: ClassVar[str] = ""  # the config's name (conf/perturbation); ``name`` (keys) says units

    def __init__(self, noise: Noise, normals: bool | None = None, center: float = 0.0) -> None:
        super().__init__(noise)
        if normals not in (None, True, False):
            raise ConfigError(
                f"perturbation.normals={normals!r} must be true, false or null (null: channels "
                "3-5 are normals when a cloud has at least 6 channels)"
            )
        self.normals, self.center = normals, float(center)

    def matrices(self, params: Tensor) -> Tensor:
        """``[B, 3, 3]`` rotations of the parameters ``[B, k]``."""
        raise NotImplementedError

    def has_normals(self, channels: int) -> bool:
        """Whether channels 3-5 of a cloud with ``channels`` channels are turned as normals."""
        return channels >= 6 if self.normals is None else self.normals

    def check_input(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 2 or shape[0] < 3:
            raise ConfigError(
                f"perturbation={self.option} rotates point clouds [C, N] (xyz in channels 0-2), "
                f"but the examples have shape {list(shape)}: use it with point-cloud data"
            )
        if self.normals and shape[0] < 6:
            raise ConfigError(
                f"perturbation.normals=true needs normals in channels 3-5, but the clouds have "
                f"{shape[0]} channels: set perturbation.normals=false"
            )

    def check_example(
        self, x: Tensor, input_range: tuple[float, float] | None = (0.0, 1.0), name: str = "input"
    ) -> None:
        """A point cloud ``[C, N]`` of finite values. ``input_range`` does not apply: coordinates
        are centred (a rotation about ``center`` of a cloud in [0, 1] may leave it)."""
        self.check_input(tuple(x.shape))
        if not bool(torch.isfinite(x).all()):
            raise ConfigError(f"{name}: the point cloud holds values that are not finite")

    def transform(self, xs: Tensor, params: Tensor) -> Tensor:
        matrices = self.matrices(params.to(xs.dtype))
        return rotate_clouds(xs, matrices, self.has_normals(xs.shape[1]), self.center)

    def header_settings(self) -> dict[str, object]:
        return {"normals": self.normals, "center": self.center}


class AxisRotation3D(CloudRotation):
    """Rotation by ``theta ~ N(0, sigma^2)`` radians about one fixed ``axis`` (x, y or z): it
    composes exactly, so its radius ``sigma Phi^-1(p_A)`` (radians) is a certificate."""

    name, option, num_params = "rotation3d_radians", "rotation3d", 1

    def __init__(
        self, noise: Noise, axis: str = "y", normals: bool | None = None, center: float = 0.0
    ) -> None:
        super().__init__(noise, normals, center)
        if axis not in AXES:
            raise ConfigError(f"perturbation.axis={axis!r} must be one of x, y, z (the up axis)")
        self.axis = axis

    def matrices(self, params: Tensor) -> Tensor:
        return axis_rotation(params[:, 0], AXES[self.axis])

    def header_settings(self) -> dict[str, object]:
        return {"axis": self.axis, **super().header_settings()}


class AxisAngleRotation3D(CloudRotation):
    """Rotation by an axis-angle vector ``v ~ N(0, sigma^2 I_3)`` (radians): rotations about
    three axes do not compose additively, so its radius is a heuristic, NOT a certificate."""

    name, num_params, certified = "rotation3d_heuristic_radians", 3, False
    option = "rotation3d_heuristic"
    units = "radians (l2 norm of the axis-angle vector)"

    def matrices(self, params: Tensor) -> Tensor:
        return axis_angle_rotation(params)
