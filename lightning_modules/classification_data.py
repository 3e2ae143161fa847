"""DataModule for image classification: yields (image in [0, 1], label), never normalizes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from smoothcert.datasets import Splits, build_splits, check_dataset
from smoothcert.errors import check_unit_range

RANGE_CHECK_EXAMPLES = 64


class ClassificationDataModule(LightningDataModule):
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
            first = torch.stack([torch.as_tensor(dataset[i][0]) for i in range(count)])
            check_unit_range(first, f"data={h.name} {split} images")

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
            drop_last=False,
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
