"""DataModule for image classification: yields (image in [0, 1], label), never normalizes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from typing_extensions import override

from lightning_modules.splits_data import SplitsDataModule
from smoothcert.data.classification import Splits, build_splits, check_dataset
from smoothcert.errors import check_unit_range

RANGE_CHECK_EXAMPLES = 64


class ClassificationDataModule(SplitsDataModule):
    """Train/val/test loaders for digits, MNIST, CIFAR-10 or ImageNet.

    A missing dataset is reported when the module is built (before any training), and the first
    examples of each split are checked to lie in [0, 1] when it is set up.
    """

    def __init__(
        self,
        name: str,
        data_dir: str,
        num_classes: int,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        download: bool = False,
        val_size: int | None = None,
        test_size: int | None = None,
        seed: int = 0,
        augment: bool = True,
        image_size: int = 224,
    ) -> None:
        super().__init__()
        check_dataset(name, data_dir, download)
        self.save_hyperparameters(logger=False)
        self.splits: Splits | None = None

    @override
    def prepare_data(self) -> None:
        if self.hparams.download:
            build_splits(self.hparams.name, self.hparams.data_dir, download=True)

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        h = self.hparams
        self.splits = build_splits(
            h.name,
            h.data_dir,
            seed=h.seed,
            val_size=h.val_size,
            test_size=h.test_size,
            augment=h.augment,
            image_size=h.image_size,
        )
        for split in ("train", "test"):
            dataset = self.splits.get(split)
            count = min(RANGE_CHECK_EXAMPLES, len(dataset))
            if not count:  # e.g. no training images left beside val_size (certify.py reads test)
                continue
            first = torch.stack([torch.as_tensor(dataset[i][0]) for i in range(count)])
            check_unit_range(first, f"data={h.name} {split} images")
