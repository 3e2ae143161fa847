"""CIFAR-10 read from its own files (``cifar-10-batches-py/``), checked by content, not by md5."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from torchvision import datasets

from smoothcert.errors import ConfigError


class CIFAR10Files(datasets.CIFAR10):
    """torchvision's CIFAR-10, reading ``data_batch_1..5``, ``test_batch`` and ``batches.meta`` as
    they are.

    torchvision compares each file's md5 with the original archive's on every construction; here
    the files must exist and hold what the format says (uint8 images of 3 x 32 x 32 = 3072 values,
    one label in 0..9 per image), which is what reading them needs. A re-pickled copy, or a few
    images written in the format (as the tests do), then read too. ``download=True`` still checks
    the downloaded archive's md5 (torchvision's ``download``).
    """

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        names = [name for name, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        return all((folder / name).is_file() for name in names)

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        with open(path, "rb") as file:
            self.classes = pickle.load(file, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    def __init__(self, root: str, train: bool = True, **kwargs) -> None:
        try:
            super().__init__(root, train=train, **kwargs)
        except (KeyError, ValueError, pickle.UnpicklingError, EOFError) as error:
            raise ConfigError(
                f"cifar10 under {root} is not in CIFAR-10's format ({type(error).__name__}: "
                f"{error}): re-download it (data.download=true)"
            ) from error
        labels = np.asarray(self.targets)
        if len(labels) != len(self.data) or not ((labels >= 0) & (labels < 10)).all():
            raise ConfigError(
                f"cifar10 under {root}: {len(self.data)} images but {len(labels)} labels, or "
                "labels outside 0..9: re-download it (data.download=true)"
            )
