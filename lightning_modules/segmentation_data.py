"""DataModule for semantic segmentation: yields (image in [0, 1], mask), never normalizes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from smoothcert.datasets import Splits
from smoothcert.errors import check_unit_range
from smoothcert.segmentation_data import (
    build_segmentation_splits,
    check_label_map,
    check_segmentation_dataset,
)

RANGE_CHECK_EXAMPLES = 8


class SegmentationDataModule(LightningDataModule):
    """Train/val/test loaders for ``shapes`` (generated) or ``cityscapes`` (official layout).

    A missing dataset is a one-line ConfigError when the module is built (before any training);
    when it is set up, the first examples of each split are checked: pixels in [0, 1] and labels in
    {0, ..., num_classes - 1, ignore_index}.
    """

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

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (train, val or test), set up on first use."""
        self.setup()
        assert self.splits is not None
        return self.splits.get(split)

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=shuffle and len(self.dataset(split)) > batch_size,
        )

    @override
    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.hparams.batch_size)

    @override
    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.hparams.eval_batch_size or self.hparams.batch_size)

    @override
    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.hparams.eval_batch_size or self.hparams.batch_size)
