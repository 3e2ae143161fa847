"""The part every smoothcert DataModule shares: named splits and their loaders."""

from __future__ import annotations

import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override


class SplitsDataModule(LightningDataModule):
    """Loaders over ``self.splits`` (train/val/test), which a subclass's ``setup`` builds.

    Uses ``hparams.batch_size``, ``hparams.eval_batch_size`` (falls back to ``batch_size``) and
    ``hparams.num_workers``. With ``drop_incomplete_train_batch`` the shuffled training loader
    drops a last, smaller batch (when the split holds more than one batch).
    """

    drop_incomplete_train_batch = False
    splits = None

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (train, val or test), set up on first use."""
        self.setup()
        assert self.splits is not None
        return self.splits.get(split)

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        workers = self.hparams.num_workers
        dataset = self.dataset(split)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=self.drop_incomplete_train_batch and shuffle and len(dataset) > batch_size,
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
