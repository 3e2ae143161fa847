"""``shapes``: a procedurally generated segmentation dataset (bundled, seeded, nothing downloads).

Each image shows one to ``max_shapes`` filled shapes (disc, square, triangle, ring) of random
colour, size, position and rotation on a textured background (colour gradient, stripes and grain);
later shapes occlude earlier ones. The mask holds the class of every pixel (0 = background), and
optionally the ignore index in a band around every boundary, like the void labels of Cityscapes.
Image ``i`` of a split depends only on ``(seed, split, i)``, so datasets are reproducible and need
no storage: rendering a 64x64 image takes well under a millisecond.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from smoothcert.errors import ConfigError, check_count

SHAPE_CLASSES = ("background", "disc", "square", "triangle", "ring")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def _background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A gradient between two random colours, modulated by stripes, plus fine grain: [3, H, W]."""
    first, second = rng.uniform(0, 1, (2, 3, 1, 1))
    angle = rng.uniform(0, np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / size + 0.5
    stripe_angle, frequency = rng.uniform(0, np.pi), rng.uniform(0.1, 0.5)
    stripes = np.sin(frequency * (np.cos(stripe_angle) * xx + np.sin(stripe_angle) * yy))
    mix = np.clip(ramp + rng.uniform(0.05, 0.25) * stripes, 0, 1)[None]
    image = first * (1 - mix) + second * mix
    return image + rng.normal(0, rng.uniform(0.0, 0.06), image.shape)


def _shape_mask(
    kind: int, rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """Pixels covered by a random shape of class ``kind`` (1 disc, 2 square, 3 triangle, 4 ring)."""
    radius = rng.uniform(0.12, 0.27) * size
    cy, cx = rng.uniform(radius * 0.5, size - radius * 0.5, 2)
    theta = rng.uniform(0, 2 * np.pi)
    u = np.cos(theta) * (xx - cx) + np.sin(theta) * (yy - cy)
    v = -np.sin(theta) * (xx - cx) + np.cos(theta) * (yy - cy)
    distance = np.hypot(u, v)
    if kind == 1:
        return distance <= radius
    if kind == 2:
        return np.maximum(np.abs(u), np.abs(v)) <= radius * 0.8
    if kind == 3:  # equilateral triangle: inside three half-planes
        normals = [(np.cos(a), np.sin(a)) for a in (np.pi / 2, np.pi * 7 / 6, np.pi * 11 / 6)]
        return np.all([a * u + b * v <= radius * 0.5 for a, b in normals], axis=0)
    return (distance <= radius) & (distance >= radius * 0.55)


def _boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` (Chebyshev distance) of a pixel of another class."""
    edge = np.zeros(mask.shape, dtype=bool)
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[:, :-1] |= mask[:, 1:] != mask[:, :-1]
    edge[1:, :] |= mask[1:, :] != mask[:-1, :]
    edge[:-1, :] |= mask[1:, :] != mask[:-1, :]
    band = edge.copy()
    for _ in range(width - 1):
        grown = band.copy()
        grown[1:, :] |= band[:-1, :]
        grown[:-1, :] |= band[1:, :]
        grown[:, 1:] |= band[:, :-1]
        grown[:, :-1] |= band[:, 1:]
        band = grown
    return band


def _render(
    seed: int, index: int, split: str, size: int, max_shapes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image [3, H, W] float32 in [0, 1], class mask [H, W], instance map [H, W]): the instance
    map holds 1..k for the k-th shape drawn (its visible pixels only), 0 for the background."""
    rng = np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = _background(rng, size, yy, xx)
    mask = np.zeros((size, size), dtype=np.int64)
    instances = np.zeros((size, size), dtype=np.int64)
    for number in range(1, int(rng.integers(1, max_shapes + 1)) + 1):
        kind = int(rng.integers(1, len(SHAPE_CLASSES)))
        covered = _shape_mask(kind, rng, size, yy, xx)
        colour = rng.uniform(0, 1, (3, 1))
        image[:, covered] = colour + rng.normal(0, 0.03, (3, int(covered.sum())))
        mask[covered] = kind
        instances[covered] = number
    return np.clip(image, 0.0, 1.0).astype(np.float32), mask, instances


def render_shapes(
    seed: int,
    index: int,
    split: str = "train",
    size: int = 64,
    max_shapes: int = 4,
    ignore_boundary: int = 0,
    ignore_index: int = 255,
) -> tuple[Tensor, Tensor]:
    """Renders image ``index`` of ``split``: ``(image [3, size, size] float32 in [0, 1],
    mask [size, size] int64 in {0, ..., 4} or ignore_index)``; deterministic in its arguments."""
    image, mask, _ = _render(seed, index, split, size, max_shapes)
    if ignore_boundary > 0:
        mask[_boundary_band(mask, ignore_boundary)] = ignore_index
    return torch.from_numpy(image), torch.from_numpy(mask)


def render_shape_instances(
    seed: int, index: int, split: str = "train", size: int = 64, max_shapes: int = 4
) -> tuple[Tensor, Tensor]:
    """The same image as ``render_shapes`` with the same arguments, and its instance map
    ``[size, size]`` int64: k > 0 on the visible pixels of the k-th shape drawn (occluded parts
    belong to the shape in front), 0 on the background."""
    image, _, instances = _render(seed, index, split, size, max_shapes)
    return torch.from_numpy(image), torch.from_numpy(instances)


class RenderedShapes(Dataset):
    """Base of the shapes datasets: ``length`` images of one split, rendered on access from
    ``(seed, split, index)`` alone (see ``_render``); a subclass turns image ``index`` into its
    item in ``item`` (a mask, a box, the boxes of every shape)."""

    def __init__(
        self, length: int, split: str = "train", seed: int = 0, size: int = 64, max_shapes: int = 4
    ) -> None:
        if split not in SPLIT_CODES:
            raise ConfigError(f"split={split!r} is not one of train, val, test")
        self.length = check_count(length, f"data.{split}_size")
        self.size = check_count(size, "data.image_size", minimum=16)
        self.max_shapes = check_count(max_shapes, "data.max_shapes")
        self.split, self.seed = split, int(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        return self.item(index)

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image ``index`` of the split: ``(image, class mask, instance map)`` (see ``_render``)."""
        return _render(self.seed, index, self.split, self.size, self.max_shapes)

    def item(self, index: int) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError


class ShapesDataset(RenderedShapes):
    """``length`` images of one split, rendered on access (see ``render_shapes``)."""

    num_classes = len(SHAPE_CLASSES)
    classes = SHAPE_CLASSES

    def __init__(
        self,
        length: int,
        split: str = "train",
        seed: int = 0,
        size: int = 64,
        max_shapes: int = 4,
        ignore_boundary: int = 0,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(length, split, seed, size, max_shapes)
        self.ignore_boundary = check_count(ignore_boundary, "data.ignore_boundary", minimum=0)
        self.ignore_index = int(ignore_index)

    def item(self, index: int) -> tuple[Tensor, Tensor]:
        return render_shapes(
            self.seed,
            index,
            self.split,
            self.size,
            self.max_shapes,
            self.ignore_boundary,
            self.ignore_index,
        )
