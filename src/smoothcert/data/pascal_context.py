"""PASCAL-Context (59 classes) read from its official files, as ``(image [3, H, W] in [0, 1],
mask [H, W] int64)`` pairs with background and unlabelled pixels at the ignore index.

Two label layouts are accepted under a VOC2010 folder (``data_dir``, ``data_dir/VOC2010`` or
``data_dir/VOCdevkit/VOC2010``), each beside ``JPEGImages/``:

* ``SegmentationClassContext/<id>.png`` with ``ImageSets/SegmentationContext/{train,val}.txt``,
  mmsegmentation's converted layout: values 0..59, 0 = background (mmseg's PascalContextDataset59
  reads it with ``reduce_zero_label``: value v is class v - 1, background is ignored).
* ``trainval/<id>.mat`` from the dataset site's ``trainval.tar.gz``: a uint16 ``LabelMap`` over
  the full 459-class vocabulary (0 = unlabelled). The 59 classes are the 60 ids of
  ``CONTEXT_IDS`` (HRNet's ``pascal_ctx.py``, identical in mmseg's converter) ranked 0..59 (0 =
  background); every other id of the 459 is background, as in the 59-class benchmark. The splits
  are ``ImageSets/SegmentationContext/{train,val}.txt`` if present, else VOC2010's
  ``ImageSets/Main/{train,val}.txt`` (4998 / 5105 images, the benchmark's split).

The Detail API's ``trainval_merged.json`` is not read: decoding it needs that API (not on PyPI);
convert it once with mmsegmentation's ``tools/dataset_converters/pascal_context.py``, which writes
the PNG layout above. Nothing normalizes and nothing downloads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from smoothcert.errors import ConfigError

PASCAL_CONTEXT_NUM_CLASSES = 59
FULL_VOCABULARY = 459
# The 60 full-vocabulary ids kept by the 59-class benchmark (0 = background), HRNet's order.
CONTEXT_IDS = np.sort(
    np.array(
        [0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33,
         162, 420, 454, 295, 296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68,
         326, 72, 458, 34, 207, 80, 355, 85, 347, 220, 349, 360, 98, 187, 104, 105, 366, 189, 368,
         113, 115]
    )
)  # fmt: skip
PASCAL_CONTEXT_HOW = (
    "put VOC2010's JPEGImages/ (VOCtrainval_03-May-2010.tar from host.robots.ox.ac.uk) there with "
    "either SegmentationClassContext/*.png + ImageSets/SegmentationContext/{train,val}.txt (the "
    "layout mmsegmentation's tools/dataset_converters/pascal_context.py writes from the Detail "
    "API's trainval_merged.json) or trainval/*.mat (trainval.tar.gz from "
    "cs.stanford.edu/~roozbeh/pascal-context) with ImageSets/Main/{train,val}.txt, or set "
    "paths.data_dir"
)
PNG_LABELS, MAT_LABELS = "SegmentationClassContext", "trainval"
SPLIT_LISTS = (Path("ImageSets/SegmentationContext"), Path("ImageSets/Main"))


def full_vocabulary_lut(ignore_index: int = 255) -> np.ndarray:
    """Full-vocabulary id (0..459) -> class (0..58); background and the ids outside the 59
    classes -> ``ignore_index``. The 60 kept ids go to their rank minus one, as HRNet's
    ``np.digitize(mask, CONTEXT_IDS, right=True) - 1``."""
    lut = np.full(FULL_VOCABULARY + 1, ignore_index, dtype=np.int64)
    lut[CONTEXT_IDS[1:]] = np.arange(PASCAL_CONTEXT_NUM_CLASSES)
    return lut


def pascal_context_layout(data_dir: str | Path) -> tuple[Path, str, Path]:
    """``(VOC2010 folder, label folder name, folder of the split lists)`` of the first accepted
    layout found under ``data_dir``; a one-line ConfigError naming the layouts otherwise."""
    base = Path(data_dir)
    images = None
    for root in (base, base / "VOC2010", base / "VOCdevkit" / "VOC2010"):
        if not (root / "JPEGImages").is_dir():
            continue
        images = images or root
        for labels in (PNG_LABELS, MAT_LABELS):
            lists = [
                root / lst for lst in SPLIT_LISTS[: 1 if labels == PNG_LABELS else 2]
                if all((root / lst / f"{s}.txt").is_file() for s in ("train", "val"))
            ]  # fmt: skip
            if (root / labels).is_dir() and lists:
                return root, labels, lists[0]
    what = f"no context labels beside {images / 'JPEGImages'}" if images else "not found"
    raise ConfigError(
        f"PASCAL-Context {what} under paths.data_dir={base} (or its VOC2010/ or "
        f"VOCdevkit/VOC2010/): {PASCAL_CONTEXT_HOW}"
    )


class PascalContextSegmentation(Dataset):
    """The ``split`` (train | val) of the list file, in its order; labels mapped to the 59
    classes (0..58), background and unlabelled pixels at ``ignore_index``. A label value the
    layout does not define is a one-line ConfigError naming the file."""

    num_classes = PASCAL_CONTEXT_NUM_CLASSES

    def __init__(
        self, data_dir: str | Path, split: str, augment=None, ignore_index: int = 255
    ) -> None:
        self.root, self.labels, lists = pascal_context_layout(data_dir)
        names = (lists / f"{split}.txt").read_text().split()
        self.ids = [n for n in names if n and not n.startswith("#")]
        self.augment, self.ignore_index = augment, ignore_index
        self.lut = full_vocabulary_lut(ignore_index)

    def __len__(self) -> int:
        return len(self.ids)

    def label_file(self, index: int) -> Path:
        suffix = ".png" if self.labels == PNG_LABELS else ".mat"
        return self.root / self.labels / f"{self.ids[index]}{suffix}"

    def read_mask(self, index: int) -> np.ndarray:
        """The label file's values mapped to 0..58 / ``ignore_index``."""
        from PIL import Image

        path = self.label_file(index)
        if not path.is_file():
            raise ConfigError(f"{path} is missing (image {self.ids[index]}): {PASCAL_CONTEXT_HOW}")
        if self.labels == PNG_LABELS:
            values = np.asarray(Image.open(path), dtype=np.int64)
            top, lut = PASCAL_CONTEXT_NUM_CLASSES, None
        else:
            from scipy.io import loadmat

            values = np.asarray(loadmat(str(path))["LabelMap"], dtype=np.int64)
            top, lut = FULL_VOCABULARY, self.lut
        if values.min() < 0 or values.max() > top:
            bad = sorted(set(np.unique(values[(values < 0) | (values > top)]).tolist()))[:5]
            raise ConfigError(
                f"{path} holds label values {bad} outside 0..{top}: use the "
                f"{'59-class context PNGs' if lut is None else '459-class LabelMap .mat files'}"
            )
        if lut is not None:
            return lut[values]
        return np.where(values == 0, self.ignore_index, values - 1)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        from PIL import Image

        path = self.root / "JPEGImages" / f"{self.ids[index]}.jpg"
        image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        mask = self.read_mask(index)
        if mask.shape != image.shape[:2]:
            raise ConfigError(
                f"{self.label_file(index)} is {mask.shape} but {path} is {image.shape[:2]}: "
                "use labels of the same image"
            )
        pair = torch.from_numpy(image / 255.0).permute(2, 0, 1), torch.from_numpy(mask)
        return self.augment(*pair) if self.augment else (pair[0].contiguous(), pair[1])
