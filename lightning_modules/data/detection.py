"""DataModule for detection on the generated shapes: yields (image in [0, 1], targets)."""

from __future__ import annotations

from collections.abc import Sequence

from typing_extensions import override

from lightning_modules.data.splits import SplitsDataModule
from smoothcert.data.classification import Splits
from smoothcert.data.detection import ShapeDetectionDataset
from smoothcert.errors import check_unit_range, require


class ShapeDetectionDataModule(SplitsDataModule):
    """Train/val/test loaders of ``smoothcert.data.detection.ShapeDetectionDataset``: shapes
    images and ``[max_shapes, 5]`` targets ``(label, x1, y1, x2, y2)`` (label 0: padding). The
    first examples of each split are checked when set up (pixels and boxes in [0, 1])."""

    drop_incomplete_train_batch = True

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
        require(name == "shapes_detection", f"data.name={name!r}: use shapes_detection")
        require(channels == 3, f"data.channels={channels}: shapes images have 3 channels")
        self.save_hyperparameters(logger=False)
        self.splits: Splits | None = None

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        h = self.hparams
        kw = dict(seed=h.seed, size=h.image_size, max_shapes=h.max_shapes, min_pixels=h.min_pixels)
        self.splits = Splits(
            ShapeDetectionDataset(h.train_size, "train", **kw),
            ShapeDetectionDataset(h.val_size, "val", **kw),
            ShapeDetectionDataset(h.test_size, "test", **kw),
        )
        for split in ("train", "val"):
            image, targets = self.splits.get(split)[0]
            check_unit_range(image, f"data={h.name} {split} images")
            check_unit_range(targets[:, 1:], f"data={h.name} {split} boxes")
