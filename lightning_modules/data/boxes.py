"""DataModule for box regression on the generated shapes: yields (image in [0, 1], box)."""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from lightning_modules.data.splits import ShapesDataModule
from smoothcert.data.boxes import ShapeBoxesDataset
from smoothcert.errors import check_unit_range


class ShapeBoxesDataModule(ShapesDataModule):
    """Train/val/test loaders of ``smoothcert.data.boxes.ShapeBoxesDataset``: shapes images and the
    box ``(x1, y1, x2, y2)`` of their largest visible shape, in normalized [0, 1] coordinates.

    The splits are the images of ``data=shapes`` (same seed, split and size give the same
    pictures). When set up, the first examples of each split are checked: pixels and box
    coordinates in [0, 1].

    Args:
        name: must be ``shapes_boxes``; recorded in checkpoints as the dataset.
        data_dir: unused (nothing is read from disk); kept so every data config has it.
        num_classes: the shape classes drawn in the images (background included); the box target
            ignores them, and models that do not predict classes do not read it.
    """

    dataset_name, dataset_class = "shapes_boxes", ShapeBoxesDataset  # settings: the shapes'

    @override
    def check_target(self, target: Any, where: str) -> None:
        check_unit_range(target, f"{where} boxes")
