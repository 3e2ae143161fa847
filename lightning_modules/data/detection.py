"""DataModule for detection on the generated shapes: yields (image in [0, 1], targets)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from typing_extensions import override

from lightning_modules.data.splits import ShapesDataModule
from smoothcert.data.detection import ShapeDetectionDataset
from smoothcert.errors import check_unit_range


class ShapeDetectionDataModule(ShapesDataModule):
    """Train/val/test loaders of ``smoothcert.data.detection.ShapeDetectionDataset``: shapes
    images and ``[max_shapes, 5]`` targets ``(label, x1, y1, x2, y2)`` (label 0: padding). The
    first examples of each split are checked when set up (pixels and boxes in [0, 1])."""

    dataset_name, dataset_class = "shapes_detection", ShapeDetectionDataset
    checked_examples = 1

    def __init__(
        self,
        name: str,
        data_dir: str,
        num_classes: int,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        image_size: int = 32,
        train_size: int = 2000,
        val_size: int = 100,
        test_size: int = 100,
        max_shapes: int = 4,
        min_pixels: int = 4,
    ) -> None:
        super().__init__()
        self.check_name(name, channels)
        self.save_hyperparameters(logger=False)

    @override
    def dataset_settings(self) -> dict[str, Any]:
        return {**super().dataset_settings(), "min_pixels": self.hparams.min_pixels}

    @override
    def check_target(self, target: Any, where: str) -> None:
        check_unit_range(target[:, 1:], f"{where} boxes")
