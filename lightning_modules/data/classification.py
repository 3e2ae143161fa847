"""DataModule for image classification: yields (image in [0, 1], label), never normalizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset
from typing_extensions import override

from lightning_modules.data.splits import Loading, SplitsDataModule
from smoothcert.data.classification import (
    FOLDER_LAYOUT,
    Splits,
    build_splits,
    check_dataset,
    class_count,
)
from smoothcert.errors import ConfigError, check_unit_range


@dataclass
class ClassificationData:
    """The settings of the classification datasets beside the loaders' (``val_size`` and
    ``test_size`` None: the dataset's own split)."""

    batch_size: int = 128
    download: bool = False
    val_size: int | None = None
    test_size: int | None = None
    seed: int = 0
    augment: bool = True
    image_size: int = 224


class ClassificationDataModule(SplitsDataModule):
    """Train/val/test loaders for digits, MNIST, CIFAR-10, ImageNet or your own class folders
    (``data=image_folder``: ``data_dir/train/<class>/*``, ``data_dir/val/<class>/*``).

    A missing dataset, and a ``num_classes`` other than the dataset's (the class folders of a
    folder dataset are counted), are reported when the module is built and checked (before any
    training); the first examples of each split are checked to lie in [0, 1] when it is set up.
    """

    checked_splits = ("train", "test")  # certify.py reads test
    checked_examples = 64
    settings = (Loading, ClassificationData)

    @override
    def check_chosen(self, settings: dict[str, Any]) -> None:
        check_dataset(settings["name"], settings["data_dir"], settings["download"])

    @property
    def num_classes(self) -> int:
        """The number of classes; labels are 0 .. num_classes - 1."""
        return int(self.hparams.num_classes)

    @override
    def check_settings(self) -> None:
        super().check_settings()
        h = self.hparams
        actual = class_count(h.name, h.data_dir)
        if actual is None or actual == h.num_classes:
            return
        if h.name in ("imagenet", "image_folder"):
            counted = f"{h.data_dir}/train holds {actual} class folders"
            fix = f"set data.num_classes={actual}"
            if h.name == "imagenet":
                fix += f" (or use data=image_folder, which counts them: {FOLDER_LAYOUT})"
            else:
                fix += " or leave it unset (the folders are counted)"
        else:
            counted, fix = f"data={h.name} has {actual} classes", f"set data.num_classes={actual}"
        raise ConfigError(f"data.num_classes={h.num_classes} but {counted}: {fix}")

    @override
    def prepare_data(self) -> None:
        if self.hparams.download:
            build_splits(self.hparams.name, self.hparams.data_dir, download=True)

    @override
    def build_splits(self) -> Splits:
        # download=False: prepare_data downloads (once, on one process)
        return build_splits(**self.settings_for(build_splits, download=False))

    @override
    def check_examples(self, split: str, dataset: Dataset) -> None:
        count = min(self.checked_examples, len(dataset))
        if not count:  # e.g. no training images left beside val_size (certify.py reads test)
            return
        first = torch.stack([torch.as_tensor(dataset[i][0]) for i in range(count)])
        check_unit_range(first, f"data={self.hparams.name} {split} images")
