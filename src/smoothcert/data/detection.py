"""Detection on the generated shapes: every visible shape's box and class.

Item ``i`` of a split is ``(image [3, S, S] in [0, 1], targets [max_shapes, 5])``: the image of
``render_shapes(seed, i, split, S, max_shapes)``; each row of ``targets`` is ``(label, x1, y1,
x2, y2)`` of one shape (label 1..4 as in ``SHAPE_CLASSES``, box in normalized coordinates as in
``smoothcert.data.boxes``), measured on its visible pixels; shapes with fewer than
``min_pixels`` visible pixels are left out, and unused rows have label 0 (padding, so batches
stack).
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothcert.data.boxes import largest_region_box
from smoothcert.data.shapes import RenderedShapes
from smoothcert.errors import check_count


def shape_targets(mask: Tensor, instances: Tensor, max_shapes: int, min_pixels: int) -> Tensor:
    """``[max_shapes, 5]`` rows ``(label, x1, y1, x2, y2)`` of the visible instances (in drawing
    order), label 0 on unused rows."""
    rows = torch.zeros(max_shapes, 5)
    count = 0
    for number in range(1, int(instances.max()) + 1):
        region = instances == number
        if int(region.sum()) < min_pixels:
            continue
        label = int(mask[region][0])
        rows[count, 0] = label
        rows[count, 1:] = largest_region_box(region.long())
        count += 1
    return rows


def target_boxes(targets: Tensor) -> tuple[Tensor, Tensor]:
    """(labels ``[K]`` int64, boxes ``[K, 4]``) of the used rows of ``targets``."""
    used = targets[:, 0] > 0
    return targets[used, 0].long(), targets[used, 1:]


class ShapeDetectionDataset(RenderedShapes):
    """``length`` shapes images of one split with the box and class of every visible shape."""

    def __init__(
        self,
        length: int,
        split: str = "train",
        seed: int = 0,
        size: int = 32,
        max_shapes: int = 4,
        min_pixels: int = 4,
    ) -> None:
        super().__init__(length, split, seed, size, max_shapes)
        self.min_pixels = check_count(min_pixels, "data.min_pixels")

    def item(self, index: int) -> tuple[Tensor, Tensor]:
        image, mask, instances = self.render(index)
        targets = shape_targets(
            torch.from_numpy(mask), torch.from_numpy(instances), self.max_shapes, self.min_pixels
        )
        return torch.from_numpy(image), targets
