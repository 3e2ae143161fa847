"""DataModule for semantic segmentation: yields (image in [0, 1], mask), never normalizes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from typing_extensions import override

from lightning_modules.data.splits import SplitsDataModule
from smoothcert.data.classification import Splits
from smoothcert.data.segmentation import (
    build_segmentation_splits,
    check_label_map,
    check_segmentation_dataset,
)


class SegmentationDataModule(SplitsDataModule):
    """Train/val/test loaders for ``shapes`` (generated) or ``cityscapes`` (official layout).

    A missing dataset is a one-line ConfigError when the module is built (before any training);
    when it is set up, the first examples of each split are checked: pixels in [0, 1] and labels in
    {0, ..., num_classes - 1, ignore_index}.
    """

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
        ignore_index: int = 255,
        image_size: int = 64,
        train_size: int = 2000,
        val_size: int = 100,
        test_size: int = 100,
        max_shapes: int = 4,
        ignore_boundary: int = 0,
        crop_size: Sequence[int] | None = None,
        scale_range: Sequence[float] | None = None,
        flip: bool = True,
    ) -> None:
        super().__init__()
        check_segmentation_dataset(name, data_dir)
        self.save_hyperparameters(logger=False)

    @override
    def build_splits(self) -> Splits:
        return build_segmentation_splits(**self.settings_for(build_segmentation_splits))

    @override
    def check_target(self, target: Any, where: str) -> None:
        h = self.hparams
        check_label_map(target, h.num_classes, h.ignore_index, f"{where} mask")
