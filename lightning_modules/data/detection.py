"""DataModule for detection on the generated shapes: yields (image in [0, 1], targets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from typing_extensions import override

from lightning_modules.data.splits import SHAPES, Loading, ShapesDataModule
from smoothcert.data.detection import ShapeDetectionDataset
from smoothcert.errors import check_unit_range


@dataclass
class DetectionData:
    """The settings of detection beside the shapes' (smaller images by default)."""

    image_size: int = 32
    min_pixels: int = 4


class ShapeDetectionDataModule(ShapesDataModule):
    """Train/val/test loaders of ``smoothcert.data.detection.ShapeDetectionDataset``: shapes
    images and ``[max_shapes, 5]`` targets ``(label, x1, y1, x2, y2)`` (label 0: padding). The
    first examples of each split are checked when set up (pixels and boxes in [0, 1])."""

    settings = (Loading, SHAPES, DetectionData)
    dataset_name, dataset_class = "shapes_detection", ShapeDetectionDataset
    checked_examples = 1

    @override
    def dataset_settings(self) -> dict[str, Any]:
        return {**super().dataset_settings(), "min_pixels": self.hparams.min_pixels}

    @override
    def check_target(self, target: Any, where: str) -> None:
        check_unit_range(target[:, 1:], f"{where} boxes")
