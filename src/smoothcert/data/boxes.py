"""Box regression on the generated shapes: the target is the bounding box of the largest shape.

Boxes are ``(x1, y1, x2, y2)`` in normalized image coordinates: pixel column j covers
``[j / W, (j + 1) / W)``, so a region spanning columns a..b has ``x1 = a / W`` and
``x2 = (b + 1) / W``; every coordinate lies in [0, 1]. A box with ``x2 <= x1`` (or ``y2 <= y1``)
is empty ("no box"): the target when no shape is visible, and the convention
``smoothcert.distances.BoxJaccardDistance`` uses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothcert.data.shapes import RenderedShapes, render_shape_instances
from smoothcert.errors import ConfigError

EMPTY_BOX = (0.0, 0.0, 0.0, 0.0)


def largest_region_box(regions: Tensor, ignore_index: int | None = None) -> Tensor:
    """The normalized bounding box ``[4]`` (float32) of the region with the most pixels.

    Args:
        regions: ``[H, W]`` integer map; every id > 0 (other than ``ignore_index``) is a region,
            0 is the background. Pixels of one id need not be connected.
        ignore_index: an id that is not a region (e.g. a void label), or None.

    Returns:
        ``(x1, y1, x2, y2)`` of the largest region (ties go to the smallest id), or the empty box
        ``(0, 0, 0, 0)`` when no region has a pixel.
    """
    if regions.dim() != 2 or regions.is_floating_point():
        raise ConfigError(f"regions must be an [H, W] integer map, got {tuple(regions.shape)}")
    height, width = regions.shape
    ids = regions.reshape(-1)
    valid = ids > 0
    if ignore_index is not None:
        valid &= ids != ignore_index
    if not bool(valid.any()):
        return torch.tensor(EMPTY_BOX, dtype=torch.float32)
    largest = int(torch.bincount(ids[valid]).argmax())
    rows, columns = torch.nonzero(regions == largest, as_tuple=True)
    return torch.tensor(
        [
            float(columns.min()) / width,
            float(rows.min()) / height,
            float(columns.max() + 1) / width,
            float(rows.max() + 1) / height,
        ],
        dtype=torch.float32,
    )


class ShapeBoxesDataset(RenderedShapes):
    """``length`` shapes images of one split with the box of their largest visible shape.

    Item ``i`` is ``(image [3, size, size] float32 in [0, 1], box [4] float32)``: the image is
    ``render_shapes(seed, i, split, size, max_shapes)[0]``, the box is measured on the visible
    pixels of each shape (occluded parts do not count), so it is computed, never stored.
    """

    def item(self, index: int) -> tuple[Tensor, Tensor]:
        image, instances = render_shape_instances(
            self.seed, index, self.split, self.size, self.max_shapes
        )
        return image, largest_region_box(instances)
