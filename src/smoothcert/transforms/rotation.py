"""Image rotation with bilinear interpolation, and the vignette and Gaussian filter around it.

Paper 002 (Fischer, Baader and Vechev) smooths over the rotation angle. Rotations of a pixel grid
with interpolation do not compose, ``T_a(T_b(x)) != T_(a+b)(x)``, so Cohen's argument in
parameter space does not apply as is; DistSPT (:mod:`smoothcert.certifiers.distspt`) bounds the
difference. The paper's Table 11 shows that the bound is useless without two pre-processors, and
that both must be the same in training, error estimation and certification: a circular vignette
(rotation moves the content of the corners out of the frame and zeros in) and a Gaussian filter
(the interpolation error is high-frequency). :class:`RotationPipeline` is that one definition:
``sample(x, beta) = V(G(T_beta(V(x))))``, V the vignette, G the filter, T the rotation.

Conventions: an image ``[C, H, W]`` is rotated about its center ``((W - 1) / 2, (H - 1) / 2)``
(pixel centers at integer coordinates), by ``angle`` degrees; the output pixel at offset
``(u, v)`` (column, row) from the center takes the bilinear interpolant of the input at
``(u cos a + v sin a, -u sin a + v cos a)`` (positive angles turn the picture clockwise as
displayed, rows running down), i.e. the exact rotation composes as
``T_a . T_b = T_(a+b)``. Pixels outside the image count as 0 (black), so every output value is a
convex combination of input pixels and 0: for fixed angles the rotation is linear with
nonnegative weights, which the interval analysis relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from smoothcert.errors import ConfigError
from smoothcert.noise import Noise
from smoothcert.perturbation import ParameterPerturbation


def _centered_grid(height: int, width: int, device, dtype) -> tuple[Tensor, Tensor]:
    """``(u, v)``: each pixel's column and row offset from the image center, ``[H, W]`` each."""
    v = torch.arange(height, device=device, dtype=dtype) - (height - 1) / 2
    u = torch.arange(width, device=device, dtype=dtype) - (width - 1) / 2
    return u[None, :].expand(height, width), v[:, None].expand(height, width)


def bilinear_at(images: Tensor, cols: Tensor, rows: Tensor) -> Tensor:
    """The bilinear interpolant of ``images`` ``[B, C, H, W]`` at pixel coordinates
    ``(cols, rows)`` ``[B, *P]`` (pixel centers at integers; outside the image the pixels are 0):
    ``[B, C, *P]``. The one interpolation every rotation here uses (``grid_sample``, zeros
    padding, ``align_corners=True``)."""
    batch, channels, height, width = images.shape
    points = cols.shape[1:]
    gx = cols.reshape(batch, 1, -1) * (2.0 / max(width - 1, 1)) - 1.0
    gy = rows.reshape(batch, 1, -1) * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1).to(images.dtype)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(batch, channels, *points)


def rotate(images: Tensor, angles: Tensor) -> Tensor:
    """``images[i]`` (``[B, C, H, W]``) rotated by ``angles[i]`` degrees (``[B]``), bilinear,
    zeros outside; see the module docstring for the convention. Differentiable, any device."""
    if images.dim() != 4:
        raise ConfigError(f"rotation needs images [B, C, H, W], got shape {list(images.shape)}")
    batch, _, height, width = images.shape
    u, v = _centered_grid(height, width, images.device, torch.float64)
    theta = angles.to(torch.float64).reshape(batch, 1, 1) * (math.pi / 180)
    cos, sin = theta.cos(), theta.sin()
    cols = u * cos + v * sin + (width - 1) / 2
    rows = -u * sin + v * cos + (height - 1) / 2
    return bilinear_at(images, cols, rows)


def vignette_mask(
    height: int,
    width: int,
    radius_decrease: float = 2.0,
    edge: float = 2.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``[H, W]`` weights in [0, 1]: 1 within ``R - edge`` of the center, 0 beyond ``R``, linear
    in between, ``R = min(H, W) / 2 - radius_decrease`` (the inscribed disc, shrunk). The disc is
    invariant under rotation, so nothing inside it is lost to the frame's corners."""
    radius = min(height, width) / 2 - radius_decrease
    if radius <= 0 or edge < 0:
        raise ConfigError(
            f"vignette radius {radius} (from radius_decrease={radius_decrease}) must be > 0 and "
            f"edge={edge} >= 0"
        )
    u, v = _centered_grid(height, width, device, torch.float64)
    distance = (u**2 + v**2).sqrt()
    if edge == 0:
        mask = (distance <= radius).to(torch.float64)
    else:
        mask = ((radius - distance) / edge).clamp(0.0, 1.0)
    return mask.to(dtype)


def gaussian_kernel(size: int, sigma: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """The normalized 1-d Gaussian kernel of ``size`` taps (odd) and standard deviation
    ``sigma`` pixels: nonnegative, summing to 1."""
    if size < 1 or size % 2 == 0 or sigma <= 0:
        raise ConfigError(f"Gaussian filter size={size} must be odd and >= 1, sigma={sigma} > 0")
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).to(dtype)


def gaussian_filter(images: Tensor, size: int, sigma: float) -> Tensor:
    """``images`` ``[B, C, H, W]`` convolved per channel with the separable Gaussian of
    :func:`gaussian_kernel`, zeros outside: linear with nonnegative weights summing to at most 1
    per pixel, so it never increases an l2 distance (Young's inequality)."""
    channels = images.shape[1]
    kernel = gaussian_kernel(size, sigma, images.dtype).to(images.device)
    pad = size // 2
    out = F.conv2d(
        images,
        kernel.view(1, 1, 1, size).expand(channels, 1, 1, size),
        padding=(0, pad),
        groups=channels,
    )
    return F.conv2d(
        out,
        kernel.view(1, 1, size, 1).expand(channels, 1, size, 1),
        padding=(pad, 0),
        groups=channels,
    )


@dataclass(frozen=True)
class RotationPipeline:
    """``sample(x, beta) = V(G(T_beta(V(x))))``: the vignette ``V`` (zero outside the inscribed
    disc shrunk by ``radius_decrease`` pixels, soft over ``edge`` pixels; off when ``vignette`` is
    False), then the rotation ``T``, then the Gaussian filter ``G`` (``blur_size`` taps,
    ``blur_sigma`` pixels; off when ``blur_sigma`` is 0) and the vignette again. Every step is
    linear with nonnegative weights (the interval analysis of
    :mod:`smoothcert.transforms.rotation_bounds` depends on it). Training, the error bound and
    certification all use one instance, so they see the same images."""

    vignette: bool = True
    radius_decrease: float = 2.0
    edge: float = 2.0
    blur_size: int = 5
    blur_sigma: float = 1.5

    def __post_init__(self) -> None:
        if self.blur_sigma < 0:
            raise ConfigError(f"blur_sigma={self.blur_sigma} must be >= 0 (0 turns the filter off)")
        if self.blur_sigma > 0:
            gaussian_kernel(self.blur_size, self.blur_sigma)  # validates size and sigma
        if self.vignette:
            vignette_mask(32, 32, self.radius_decrease, self.edge)  # validates edge

    def mask(self, images: Tensor) -> Tensor | None:
        """The vignette for ``images``' height and width (None when off)."""
        if not self.vignette:
            return None
        height, width = images.shape[-2:]
        return vignette_mask(
            height, width, self.radius_decrease, self.edge, images.device, images.dtype
        )

    def pre(self, images: Tensor) -> Tensor:
        """``V(x)``: the vignette on the input, before rotating."""
        mask = self.mask(images)
        return images if mask is None else images * mask

    def post(self, images: Tensor) -> Tensor:
        """``V(G(z))``: filter, then vignette, after rotating."""
        if self.blur_sigma > 0:
            images = gaussian_filter(images, self.blur_size, self.blur_sigma)
        mask = self.mask(images)
        return images if mask is None else images * mask

    def sample(self, x: Tensor, angles: Tensor) -> Tensor:
        """``[m, C, H, W]``: one example ``x`` (``[C, H, W]``) under ``m`` angles (degrees)."""
        if x.dim() != 3:
            raise ConfigError(f"rotation transforms images [C, H, W], got shape {list(x.shape)}")
        angles = angles.reshape(-1)
        pre = self.pre(x[None])
        return self.post(rotate(pre.expand(angles.numel(), *x.shape), angles))

    def transform(self, images: Tensor, angles: Tensor) -> Tensor:
        """``[B, C, H, W]``: ``images[i]`` under ``angles[i]`` (training: one draw per example)."""
        return self.post(rotate(self.pre(images), angles.reshape(-1)))


def blur_sigma_from_filter_sigma(filter_sigma: float) -> float:
    """The standard deviation (pixels) of the Gaussian filter paper 002's reference code builds
    from ``--filter-sigma s``: its kernel ``exp(-r^2 / s)`` is ``exp(-r^2 / (2 b^2))`` with
    ``b = sqrt(s / 2)`` (so s = 2 is b = 1; s = 0 turns the filter off)."""
    if filter_sigma < 0:
        raise ConfigError(
            f"perturbation.filter_sigma={filter_sigma} must be >= 0 (the reference's "
            "exp(-r^2 / filter_sigma); 0 turns the filter off), e.g. filter_sigma=2.0"
        )
    return math.sqrt(filter_sigma / 2)


class Rotation(ParameterPerturbation):
    """Smoothing over the rotation angle (degrees, ``beta ~ N(0, sigma^2)``) of the images the
    :class:`RotationPipeline` makes: ``psi_beta(x) = V(G(T_beta(V(x))))``.

    Rotations with interpolation do not compose, so Cohen's radius in parameter space
    (``sigma Phi^-1(p_A)``, what ``certify=cohen`` reports with it) is paper 002's BaseSPT: a
    heuristic, **not a certificate** (``certified = False``: every record and plot says so). The
    certificate is DistSPT (``certify=distspt``), which bounds the interpolation error of this
    same pipeline and smooths the base classifier again in input space.

    ``train_noise``: training (``forward``) adds N(0, train_noise^2) to every transformed image,
    so the base classifier is accurate under DistSPT's inner Gaussian smoothing (paper 002 trains
    on rotation and noise together); 0 trains on rotations only. Certification (``apply``) never
    adds it: BaseSPT smooths over the angle alone, DistSPT adds its own inner noise.

    ``filter_sigma``: the Gaussian filter in paper 002's reference spelling (its
    ``--filter-sigma``), whose kernel is ``exp(-r^2 / filter_sigma)`` where ours is
    ``exp(-r^2 / (2 blur_sigma^2))``: ``filter_sigma = 2 blur_sigma^2``, so the reference's 2.0 is
    ``blur_sigma=1.0``. When set (not None) it replaces ``blur_sigma``.
    """

    name, units, num_params = "rotation", "degrees", 1
    images_only, certified = True, False

    def __init__(
        self,
        noise: Noise,
        train_noise: float = 0.0,
        vignette: bool = True,
        radius_decrease: float = 2.0,
        edge: float = 2.0,
        blur_size: int = 5,
        blur_sigma: float = 1.5,
        filter_sigma: float | None = None,
    ) -> None:
        super().__init__(noise)
        if train_noise < 0:
            raise ConfigError(f"perturbation.train_noise={train_noise} must be >= 0")
        if filter_sigma is not None:
            blur_sigma = blur_sigma_from_filter_sigma(filter_sigma)
        self.train_noise = float(train_noise)
        self.pipeline = RotationPipeline(vignette, radius_decrease, edge, blur_size, blur_sigma)

    def transform(self, xs: Tensor, params: Tensor) -> Tensor:
        """``xs[i]`` (``[B, C, H, W]``) through the pipeline at angle ``params[i, 0]`` degrees."""
        return self.pipeline.transform(xs, params[:, 0])

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Training: one angle per example, then N(0, train_noise^2) per pixel."""
        rotated = super().forward(x, generator)
        if self.train_noise == 0:
            return rotated
        noise = torch.randn(rotated.shape, generator=generator, device=x.device, dtype=x.dtype)
        return rotated + self.train_noise * noise

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, train_noise={self.train_noise}, {self.pipeline}"
