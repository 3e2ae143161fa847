"""DataModule for semantic segmentation: yields (image in [0, 1], mask), never normalizes."""

from __future__ import annotations

from collections.abc import Sequence

from typing_extensions import override

from lightning_modules.data.splits import SplitsDataModule
from smoothcert.data.classification import Splits
from smoothcert.data.segmentation import (
    build_segmentation_splits,
    check_label_map,
    check_segmentation_dataset,
)
from smoothcert.errors import check_unit_range

RANGE_CHECK_EXAMPLES = 8


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
        self.splits: Splits | None = None

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        h = self.hparams
        self.splits = build_segmentation_splits(
            h.name,
            h.data_dir,
            seed=h.seed,
            image_size=h.image_size,
            train_size=h.train_size,
            val_size=h.val_size,
            test_size=h.test_size,
            max_shapes=h.max_shapes,
            ignore_boundary=h.ignore_boundary,
            ignore_index=h.ignore_index,
            crop_size=h.crop_size,
            scale_range=h.scale_range,
            flip=h.flip,
        )
        for split in ("train", "val"):
            dataset = self.splits.get(split)
            for i in range(min(RANGE_CHECK_EXAMPLES, len(dataset))):
                image, mask = dataset[i]
                check_unit_range(image, f"data={h.name} {split} images")
                check_label_map(mask, h.num_classes, h.ignore_index, f"data={h.name} {split} mask")
