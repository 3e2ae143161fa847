"""The part every smoothcert DataModule shares: named splits and their loaders."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from lightning_modules.settings import DeclaredSettings
from smoothcert.data.classification import Splits
from smoothcert.data.segmentation import build_segmentation_splits
from smoothcert.errors import check_count, check_unit_range, require


@dataclass
class Loading:
    """The settings every DataModule takes first: the data config's dataset keys, then the
    loaders' (``eval_batch_size`` None: ``batch_size``)."""

    name: str
    data_dir: str
    num_classes: int
    channels: int
    mean: Sequence[float]
    std: Sequence[float]
    batch_size: int = 32
    eval_batch_size: int | None = None
    num_workers: int = 0


# The pictures of the generated shapes (the images of data=shapes, with the same settings).
PICTURES = ("seed", "image_size", "train_size", "val_size", "test_size", "max_shapes")
SHAPES = (build_segmentation_splits, *PICTURES)


class SplitsDataModule(DeclaredSettings, LightningDataModule):
    """Loaders over ``self.splits`` (train/val/test), which ``setup`` builds once with the
    subclass's ``build_splits`` (or a subclass's own ``setup``).

    Uses ``hparams.batch_size``, ``hparams.eval_batch_size`` (falls back to ``batch_size``) and
    ``hparams.num_workers``. With ``drop_incomplete_train_batch`` the shuffled training loader
    drops a last, smaller batch (when the split holds more than one batch). When set up, the
    first ``checked_examples`` examples of each of ``checked_splits`` are checked: images in
    [0, 1] and, by ``check_target``, targets of the task's kind.
    """

    drop_incomplete_train_batch = False
    splits: Splits | None = None
    checked_splits: tuple[str, ...] = ("train", "val")
    checked_examples = 8
    # certify.py without certify.evaluate: the test loop gets one empty batch instead of the split,
    # so no example is loaded or evaluated. (Lightning skips every test hook, the certification
    # callback's ``on_test_end`` included, when its loop has no batch at all.)
    evaluate_test = True

    def __init__(self, **settings: Any) -> None:
        """A subclass's ``settings`` (groups, see ``lightning_modules/settings.py``) are its
        parameters, all saved as hparams (one with a constructor of its own saves its own)."""
        super().__init__()
        if settings:
            self.check_chosen(settings)
            self.save_hyperparameters(logger=False)

    def check_chosen(self, settings: dict[str, Any]) -> None:
        """One-line ConfigErrors for a dataset that is unknown or missing (on construction)."""

    def check_settings(self) -> None:
        """One-line ConfigErrors for loader settings out of range (called before training)."""
        h = self.hparams
        check_count(h.batch_size, "data.batch_size")
        for key, minimum in (("eval_batch_size", 1), ("num_workers", 0), ("val_size", 1)):
            if h.get(key) is not None:
                check_count(h[key], f"data.{key}", minimum=minimum)
        if h.get("test_size") is not None:
            check_count(h.test_size, "data.test_size")

    def build_splits(self) -> Splits:
        """The train, val and test datasets (called once, by ``setup``)."""
        raise NotImplementedError(f"{type(self).__name__} builds no splits: define build_splits")

    def settings_for(self, function: Callable[..., Any], **fixed: Any) -> dict[str, Any]:
        """The hparams that ``function``'s parameters name, and ``fixed``: how a DataModule hands
        its settings to the function that builds its splits."""
        names = inspect.signature(function).parameters
        return {**{k: self.hparams[k] for k in names if k in self.hparams}, **fixed}

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        self.splits = self.build_splits()
        for split in self.checked_splits:
            self.check_examples(split, self.splits.get(split))

    def check_examples(self, split: str, dataset: Dataset) -> None:
        """One-line ConfigErrors for the first examples of ``split`` that are not images in [0, 1]
        with a target of the task's kind."""
        where = f"data={self.hparams.get('name', type(self).__name__)} {split}"
        for i in range(min(self.checked_examples, len(dataset))):
            image, target = dataset[i]
            check_unit_range(image, f"{where} images")
            self.check_target(target, where)

    def check_target(self, target: Any, where: str) -> None:
        """One-line ConfigError for an example's target of another kind; none by default."""

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


class ShapesDataModule(SplitsDataModule):
    """Splits of a generated shapes dataset, ``dataset_class(size, split, **dataset_settings())``
    for each split (``train_size``, ``val_size``, ``test_size`` images); the data config's
    ``name`` must be ``dataset_name`` and its ``channels`` 3."""

    settings = (Loading, SHAPES)
    drop_incomplete_train_batch = True
    dataset_name = ""
    dataset_class: Any = None

    @override
    def check_chosen(self, settings: dict[str, Any]) -> None:
        """One-line ConfigErrors for another dataset's name or channel count."""
        name, channels, expected = settings["name"], settings["channels"], self.dataset_name
        require(name == expected, f"data.name={name!r} is unknown here: use {expected}")
        require(channels == 3, f"data.channels={channels}: shapes images have 3 channels")

    def dataset_settings(self) -> dict[str, Any]:
        h = self.hparams
        return dict(seed=h.seed, size=h.image_size, max_shapes=h.max_shapes)

    @override
    def build_splits(self) -> Splits:
        settings, h = self.dataset_settings(), self.hparams
        return Splits(
            *(self.dataset_class(h[f"{s}_size"], s, **settings) for s in ("train", "val", "test"))
        )


class OneEmptyBatch:
    """A loader of one batch, ``None``, which the modules' ``test_step`` skips (a plain list
    would be read by Lightning as a list of loaders)."""

    def __iter__(self):
        yield None

    def __len__(self) -> int:
        return 1
