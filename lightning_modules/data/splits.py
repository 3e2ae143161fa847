"""The part every smoothcert DataModule shares: named splits and their loaders."""

from __future__ import annotations

import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from smoothcert.errors import check_count


class SplitsDataModule(LightningDataModule):
    """Loaders over ``self.splits`` (train/val/test), which a subclass's ``setup`` builds.

    Uses ``hparams.batch_size``, ``hparams.eval_batch_size`` (falls back to ``batch_size``) and
    ``hparams.num_workers``. With ``drop_incomplete_train_batch`` the shuffled training loader
    drops a last, smaller batch (when the split holds more than one batch).
    """

    drop_incomplete_train_batch = False
    splits = None
    # certify.py without certify.evaluate: the test loop gets one empty batch instead of the split,
    # so no example is loaded or evaluated. (Lightning skips every test hook, the certification
    # callback's ``on_test_end`` included, when its loop has no batch at all.)
    evaluate_test = True

    def check_settings(self) -> None:
        """One-line ConfigErrors for loader settings out of range (called before training)."""
        h = self.hparams
        check_count(h.batch_size, "data.batch_size")
        for key, minimum in (("eval_batch_size", 1), ("num_workers", 0), ("val_size", 1)):
            if h.get(key) is not None:
                check_count(h[key], f"data.{key}", minimum=minimum)
        if h.get("test_size") is not None:
            check_count(h.test_size, "data.test_size")

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
        return self._loader(
            "val", False, self.hparams.get("eval_batch_size") or self.hparams.batch_size
        )

    @override
    def test_dataloader(self) -> DataLoader | OneEmptyBatch:
        if not self.evaluate_test:
            return OneEmptyBatch()
        return self._loader(
            "test", False, self.hparams.get("eval_batch_size") or self.hparams.batch_size
        )


class OneEmptyBatch:
    """A loader of one batch, ``None``, which the modules' ``test_step`` skips (a plain list
    would be read by Lightning as a list of loaders)."""

    def __iter__(self):
        yield None

    def __len__(self) -> int:
        return 1
