"""Segmentation datasets as ``(image [3, H, W] in [0, 1], mask [H, W] int64)`` pairs.

``shapes`` is generated (see ``smoothcert.data.shapes``); ``cityscapes`` reads the official layout
through torchvision and maps the label ids to the 19 train ids, 255 elsewhere; ``pascal_context``
reads VOC2010 with the 59-class context labels (``smoothcert.data.pascal_context``). Nothing
normalizes and nothing downloads.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from smoothcert.data.classification import Splits
from smoothcert.data.pascal_context import PascalContextSegmentation, pascal_context_layout
from smoothcert.data.shapes import ShapesDataset
from smoothcert.errors import ConfigError

CITYSCAPES_NUM_CLASSES = 19
CITYSCAPES_HOW = (
    "download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
    "https://www.cityscapes-dataset.com, unzip both there (or set paths.data_dir)"
)


def check_label_map(mask: Tensor, num_classes: int, ignore_index: int, name: str = "mask") -> None:
    """Raises ConfigError (one line) if ``mask`` holds a value outside {0..K-1, ignore_index}."""
    bad = (mask < 0) | ((mask >= num_classes) & (mask != ignore_index))
    if bool(bad.any()):
        values = sorted({int(v) for v in mask[bad].unique()[:5]})
        raise ConfigError(
            f"{name} holds label ids {values} outside the {num_classes} classes and not the ignore "
            f"index {ignore_index}: map the labels to train ids (0..{num_classes - 1}) first"
        )


def cityscapes_label_lut() -> np.ndarray:
    """Label id (0..255) -> train id (0..18), 255 for ignored ids; -1 for ids Cityscapes lacks."""
    from torchvision.datasets import Cityscapes

    lut = np.full(256, -1, dtype=np.int64)
    lut[255] = 255
    for cls in Cityscapes.classes:
        if cls.id >= 0:
            lut[cls.id] = cls.train_id if 0 <= cls.train_id < CITYSCAPES_NUM_CLASSES else 255
    return lut


def cityscapes_root(data_dir: str | Path) -> Path:
    """The folder holding ``leftImg8bit/`` and ``gtFine/`` (``data_dir`` or ``data_dir/cityscapes``)
    with train and val splits; raises a one-line ConfigError naming the layout otherwise."""
    base = Path(data_dir)
    for root in (base, base / "cityscapes"):
        wanted = [
            root / top / split for top in ("leftImg8bit", "gtFine") for split in ("train", "val")
        ]
        if all(p.is_dir() for p in wanted):
            return root
    raise ConfigError(
        f"Cityscapes not found under paths.data_dir={base}: expected leftImg8bit/{{train,val}}/"
        f"CITY/*_leftImg8bit.png and gtFine/{{train,val}}/CITY/*_gtFine_labelIds.png there or in "
        f"{base / 'cityscapes'}: {CITYSCAPES_HOW}"
    )


class PairedAugment:
    """Training augmentation applied to image and mask alike: random rescale (bilinear / nearest),
    random crop padded with 0 / ignore index, horizontal flip."""

    def __init__(
        self,
        crop_size: Sequence[int] | None,
        scale_range: Sequence[float] | None = None,
        flip: bool = True,
        ignore_index: int = 255,
    ) -> None:
        self.crop = tuple(int(v) for v in crop_size) if crop_size else None
        self.scale_range = tuple(float(v) for v in scale_range) if scale_range else None
        self.flip, self.ignore_index = flip, ignore_index

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if self.scale_range:
            factor = random.uniform(*self.scale_range)
            size = [max(1, round(s * factor)) for s in image.shape[1:]]
            image = F.interpolate(image[None], size, mode="bilinear", align_corners=False)[0]
            image = image.clamp_(0, 1)
            mask = F.interpolate(mask[None, None].float(), size, mode="nearest")[0, 0].long()
        if self.crop:
            pad_h, pad_w = (max(0, c - s) for c, s in zip(self.crop, image.shape[1:], strict=True))
            if pad_h or pad_w:
                image = F.pad(image, (0, pad_w, 0, pad_h))
                mask = F.pad(mask, (0, pad_w, 0, pad_h), value=self.ignore_index)
            top = random.randint(0, image.shape[1] - self.crop[0])
            left = random.randint(0, image.shape[2] - self.crop[1])
            image = image[:, top : top + self.crop[0], left : left + self.crop[1]]
            mask = mask[top : top + self.crop[0], left : left + self.crop[1]]
        if self.flip and random.random() < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return image.contiguous(), mask.contiguous()


class CityscapesSegmentation(Dataset):
    """Cityscapes ``split`` (fine annotations) via torchvision, files in sorted order, labels
    mapped to the 19 train ids (255 ignored). Ids Cityscapes does not define are a ConfigError."""

    num_classes = CITYSCAPES_NUM_CLASSES

    def __init__(self, root: str | Path, split: str, augment: PairedAugment | None = None) -> None:
        from torchvision.datasets import Cityscapes

        try:
            self.base = Cityscapes(str(root), split=split, mode="fine", target_type="semantic")
        except RuntimeError as error:
            raise ConfigError(
                f"Cityscapes {split} under {root} is unreadable: {CITYSCAPES_HOW}"
            ) from error
        order = sorted(range(len(self.base.images)), key=lambda i: self.base.images[i])
        self.images = [self.base.images[i] for i in order]
        self.targets = [self.base.targets[i][0] for i in order]
        self.augment, self.lut = augment, cityscapes_label_lut()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        from PIL import Image

        image = np.asarray(Image.open(self.images[index]).convert("RGB"), dtype=np.float32)
        ids = np.asarray(Image.open(self.targets[index]), dtype=np.int64)
        mask = self.lut[ids]
        if (mask < 0).any():
            bad = sorted(set(np.unique(ids[mask < 0]).tolist()))[:5]
            raise ConfigError(
                f"{self.targets[index]} holds label ids {bad} that Cityscapes does not define "
                "(0..33, 255): use the *_gtFine_labelIds.png files"
            )
        pair = torch.from_numpy(image / 255.0).permute(2, 0, 1), torch.from_numpy(mask)
        return self.augment(*pair) if self.augment else (pair[0].contiguous(), pair[1])


def check_segmentation_dataset(name: str, data_dir: str | Path) -> None:
    """Cheap presence check (folders only) that runs before anything is built."""
    if name == "cityscapes":
        cityscapes_root(data_dir)
    elif name == "pascal_context":
        pascal_context_layout(data_dir)
    elif name != "shapes":
        raise ConfigError(
            f"data.name={name!r} is unknown for segmentation: use shapes, cityscapes or "
            "pascal_context"
        )


def build_segmentation_splits(
    name: str,
    data_dir: str | Path,
    seed: int = 0,
    image_size: int = 64,
    train_size: int = 2000,
    val_size: int = 100,
    test_size: int = 100,
    max_shapes: int = 4,
    ignore_boundary: int = 0,
    ignore_index: int = 255,
    crop_size: Sequence[int] | None = None,
    scale_range: Sequence[float] | None = None,
    flip: bool = True,
) -> Splits:
    """Train, val and test datasets of ``shapes``, ``cityscapes`` or ``pascal_context``.

    The test labels of Cityscapes and PASCAL-Context are not public, so their test split is the
    official val split; the augmentation (``crop_size``, ``scale_range``, ``flip``) applies to
    their training split only.
    """
    check_segmentation_dataset(name, data_dir)
    if name == "shapes":
        kw = dict(seed=seed, size=image_size, max_shapes=max_shapes, ignore_index=ignore_index)
        kw["ignore_boundary"] = ignore_boundary
        return Splits(
            ShapesDataset(train_size, "train", **kw),
            ShapesDataset(val_size, "val", **kw),
            ShapesDataset(test_size, "test", **kw),
        )
    augment = PairedAugment(crop_size, scale_range, flip, ignore_index)
    if name == "pascal_context":
        val = PascalContextSegmentation(data_dir, "val", ignore_index=ignore_index)
        train = PascalContextSegmentation(data_dir, "train", augment, ignore_index)
        return Splits(train, val, val)
    root = cityscapes_root(data_dir)
    val = CityscapesSegmentation(root, "val")
    return Splits(CityscapesSegmentation(root, "train", augment), val, val)
