"""Interval analysis of the rotation's interpolation error (paper 002, DistSPT).

For one image ``x``, one smoothing angle ``beta`` and the attacker's angle interval ``Gamma``, the
error ``eps(beta, gamma) = S_beta(T_gamma(x)) - S_(beta+gamma)(x)`` (``S`` the pipeline's
``V G T V``, ``T`` the raw rotation the attacker applies) is bounded over all ``gamma`` in
``Gamma`` by propagating intervals:

1. Split ``Gamma`` into sub-intervals ``[a, b]``. Over ``theta`` in ``[a, b]`` each output pixel's
   sampling coordinates are ``c + r cos(theta - phi)``: their exact ranges are a box.
2. The bilinear interpolant is bilinear on each grid cell, so over a box its extremes lie at the
   corners of the box's pieces cut by the integer grid lines: the box corners, where its edges
   cross grid lines, and the grid points inside. Evaluating it there gives the exact range of the
   interpolant over the box, which contains every value ``T_theta(x)`` takes for ``theta`` in
   ``[a, b]``; this is the interval of each pixel (tighter than propagating intervals of the four
   weights and neighbours separately, and sound for the same reason).
3. ``V``, ``G`` and a rotation by a fixed ``beta`` are linear with nonnegative weights, hence
   monotone: applied to the lower and upper images they bound the image they map.
4. ``eps`` lies in ``[A_lo - B_hi, A_hi - B_lo]`` per pixel, so
   ``||eps||_2 <= sqrt(sum max(lo^2, hi^2))``; the maximum over the sub-intervals bounds the
   maximum over ``Gamma``. Finer splits give tighter bounds (the intervals shrink linearly).

Everything runs in float64; the bound is a bound on the float64 computation, and the float32 one
the certifier runs differs by ~1e-6 per pixel, which :data:`FLOAT_SLACK` covers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from smoothcert.errors import ConfigError
from smoothcert.transforms.rotation import RotationPipeline, _centered_grid, rotate

FLOAT_SLACK = 1e-4  # added to every bound: float32 rounding of the certifier's images (l2)
TWO_PI = 2 * math.pi


def check_angle_interval(low: float, high: float, name: str = "certify.angles") -> None:
    """One-line ConfigError unless ``low < high`` and ``high - low <= 180`` degrees."""
    if not low < high:
        raise ConfigError(f"{name}=[{low}, {high}] is empty: give [low, high] degrees, low < high")
    if high - low > 180:
        raise ConfigError(
            f"{name}=[{low}, {high}] spans {high - low:g} > 180 degrees: the interpolation bound "
            "is meant for attacks within half a turn; narrow the interval"
        )


def _contains(low: Tensor, high: Tensor, phase: float) -> Tensor:
    """Whether ``[low, high]`` contains ``phase + 2 pi k`` for some integer ``k``."""
    k = torch.ceil((low - phase) / TWO_PI)
    return phase + TWO_PI * k <= high


def _cos_range(low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """The exact ``(min, max)`` of ``cos`` over ``[low, high]`` (radians, elementwise)."""
    at_ends = torch.stack([low.cos(), high.cos()])
    top = torch.where(_contains(low, high, 0.0), 1.0, at_ends.max(0).values)
    bottom = torch.where(_contains(low, high, math.pi), -1.0, at_ends.min(0).values)
    return bottom, top


def coordinate_ranges(
    height: int, width: int, low: Tensor, high: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For angles in ``[low[s], high[s]]`` degrees, the exact ranges ``[S, H, W]`` of each output
    pixel's sampling column and row (see :func:`~smoothcert.transforms.rotation.rotate`)."""
    u, v = _centered_grid(height, width, low.device, torch.float64)
    lo = low.to(torch.float64).reshape(-1, 1, 1) * (math.pi / 180)
    hi = high.to(torch.float64).reshape(-1, 1, 1) * (math.pi / 180)
    radius = (u**2 + v**2).sqrt()
    # column: u cos t + v sin t = r cos(t - atan2(v, u));
    # row: -u sin t + v cos t = r cos(t - atan2(-u, v))
    ranges = []
    for phase, center in (
        (torch.atan2(v, u), (width - 1) / 2),
        (torch.atan2(-u, v), (height - 1) / 2),
    ):
        bottom, top = _cos_range(lo - phase, hi - phase)
        ranges += [center + radius * bottom - 1e-9, center + radius * top + 1e-9]
    return ranges[0], ranges[1], ranges[2], ranges[3]


def _candidates(low: Tensor, high: Tensor) -> Tensor:
    """``[..., K + 2]`` points in ``[low, high]``: both ends and every integer between (clamped
    copies of an end where there are fewer than K)."""
    count = int(torch.ceil((high - low).max()).item()) if low.numel() else 0
    steps = torch.arange(1, count + 1, device=low.device, dtype=low.dtype)
    inner = (torch.floor(low)[..., None] + steps).clamp(max=high[..., None])
    return torch.cat([low[..., None], high[..., None], inner], dim=-1)


def rotate_interval(images: Tensor, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pixel bounds ``(lower, upper)`` ``[S, C, H, W]`` on ``rotate(images[s], theta)`` over
    every ``theta`` in ``[low[s], high[s]]`` degrees (``images`` ``[S, C, H, W]`` or one
    ``[C, H, W]`` for all ``s``): the exact range of the bilinear interpolant over each pixel's
    box of sampling coordinates."""
    count = low.numel()
    if images.dim() == 3:
        images = images[None].expand(count, *images.shape)
    height, width = images.shape[-2:]
    col_lo, col_hi, row_lo, row_hi = coordinate_ranges(height, width, low, high)
    cols, rows = _candidates(col_lo, col_hi), _candidates(row_lo, row_hi)  # [S, H, W, K]
    kc, kr = cols.shape[-1], rows.shape[-1]
    # grid_sample's normalized coordinates, built once at full size: [S, H * W * kc * kr, 2]
    gx = (cols * (2.0 / max(width - 1, 1)) - 1.0)[..., :, None].expand(*cols.shape[:-1], kc, kr)
    gy = (rows * (2.0 / max(height - 1, 1)) - 1.0)[..., None, :].expand(*rows.shape[:-1], kc, kr)
    grid = torch.stack([gx, gy], dim=-1).view(count, 1, -1, 2).to(images.dtype)
    values = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    flat = values.view(count, images.shape[1], height, width, kc * kr)
    return flat.amin(-1), flat.amax(-1)


def interval_norm(lower: Tensor, upper: Tensor) -> Tensor:
    """``max ||d||_2`` over ``lower <= d <= upper`` (per leading index):
    ``sqrt(sum max(l^2, u^2))``."""
    return torch.maximum(lower.square(), upper.square()).flatten(1).sum(1).sqrt()


def _piece_bounds(
    x: Tensor, clean: Tensor, betas: Tensor, low: Tensor, high: Tensor, pipeline: RotationPipeline
) -> Tensor:
    """Bounds ``[R]`` on the error norm over ``gamma`` in ``[low[r], high[r]]`` at ``betas[r]``."""
    pieces, which = torch.unique(torch.stack([low, high], 1), dim=0, return_inverse=True)
    attacked_lo, attacked_hi = rotate_interval(x, pieces[:, 0], pieces[:, 1])  # T_gamma(x), raw x
    a_lo = rotate(pipeline.pre(attacked_lo)[which], betas)
    a_hi = rotate(pipeline.pre(attacked_hi)[which], betas)
    b_lo, b_hi = rotate_interval(clean, betas + low, betas + high)
    return interval_norm(pipeline.post(a_lo - b_hi), pipeline.post(a_hi - b_lo))


def error_bounds(
    x: Tensor,
    betas: Tensor,
    gamma: tuple[float, float],
    pipeline: RotationPipeline,
    splits: int = 32,
    refinements: int = 4,
    target: float | None = None,
    max_rows: int = 256,
) -> Tensor:
    """Upper bounds ``[len(betas)]`` on ``max over gamma in [gamma[0], gamma[1]]`` of
    ``||S_beta(T_gamma(x)) - S_(beta+gamma)(x)||_2`` (``S = pipeline.sample``, degrees
    throughout) by interval analysis (module docstring), plus :data:`FLOAT_SLACK`.

    ``gamma`` is split into ``splits`` equal pieces; then, ``refinements`` times, every piece
    whose bound exceeds ``target`` is halved (all pieces when ``target`` is None, i.e. a uniform
    split into ``splits * 2**refinements``). A beta's bound is the largest over its final pieces,
    so it is at most ``target`` (slack included) whenever refining reached that. ``x`` is one
    image ``[C, H, W]``; ``max_rows`` pieces are evaluated per pass (memory: ~150 floats per
    pixel per row)."""
    check_angle_interval(*gamma)
    if splits < 1 or refinements < 0:
        raise ConfigError(f"splits={splits} must be >= 1 and refinements={refinements} >= 0")
    x = x.to(torch.float64)
    clean = pipeline.pre(x[None])[0]
    betas = betas.to(torch.float64).reshape(-1)
    edges = torch.linspace(gamma[0], gamma[1], splits + 1, dtype=torch.float64, device=x.device)
    owner = torch.arange(betas.numel(), device=x.device).repeat_interleave(splits)
    low, high = edges[:-1].repeat(betas.numel()), edges[1:].repeat(betas.numel())
    bound = torch.zeros(betas.numel(), dtype=torch.float64, device=x.device)
    for level in range(refinements + 1):
        pieces = (
            torch.cat(
                [
                    _piece_bounds(x, clean, betas[o], lo, hi, pipeline)
                    for o, lo, hi in zip(
                        owner.split(max_rows),
                        low.split(max_rows),
                        high.split(max_rows),
                        strict=True,
                    )
                ]
            )
            if owner.numel()
            else torch.zeros(0, dtype=torch.float64, device=x.device)
        )
        refine = (
            pieces > target - FLOAT_SLACK
            if target is not None
            else torch.ones_like(pieces, dtype=torch.bool)
        )
        if level == refinements:
            refine = torch.zeros_like(refine)
        final = ~refine
        bound.scatter_reduce_(0, owner[final], pieces[final], reduce="amax")
        owner, low, high = owner[refine], low[refine], high[refine]
        middle = (low + high) / 2
        owner = owner.repeat(2)
        low, high = torch.cat([low, middle]), torch.cat([middle, high])
    return bound + FLOAT_SLACK


def sampled_errors(x: Tensor, betas: Tensor, gammas: Tensor, pipeline: RotationPipeline) -> Tensor:
    """The true errors ``[len(betas), len(gammas)]``
    ``||S_beta(T_gamma(x)) - S_(beta+gamma)(x)||_2`` at the given angles (degrees), in float64:
    what :func:`error_bounds` bounds, and what an attack on a grid of angles sees."""
    x = x.to(torch.float64)
    nb, ng = betas.numel(), gammas.numel()
    attacked = pipeline.pre(rotate(x[None].expand(ng, *x.shape), gammas.to(torch.float64)))
    b = betas.to(torch.float64).reshape(-1).repeat_interleave(ng)
    g = gammas.to(torch.float64).reshape(-1).repeat(nb)
    first = pipeline.post(rotate(attacked.repeat(nb, 1, 1, 1), b))
    second = pipeline.post(rotate(pipeline.pre(x[None]).expand(nb * ng, *x.shape), b + g))
    return (first - second).flatten(1).norm(dim=1).view(nb, ng)
