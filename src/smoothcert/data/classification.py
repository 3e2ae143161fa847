"""Datasets as ``(image in [0, 1], label)`` pairs; nothing here normalizes or downloads unasked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset, random_split

from smoothcert.errors import ConfigError


@dataclass
class Splits:
    """Train, validation and test datasets of one classification task."""

    train: Dataset
    val: Dataset
    test: Dataset

    def get(self, split: str) -> Dataset:
        if split not in ("train", "val", "test"):
            raise ConfigError(f"split={split!r} is not one of train, val, test")
        return getattr(self, split)


def _split_sizes(total: int, val_size: int, test_size: int) -> list[int]:
    if val_size + test_size >= total:
        raise ConfigError(f"val_size + test_size = {val_size + test_size} leaves no training data")
    return [total - val_size - test_size, val_size, test_size]


def _digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits as (1797, 1, 8, 8) images in [0, 1] and their labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    return images, torch.tensor(bunch.target, dtype=torch.long)


def _split(
    images: torch.Tensor, labels: torch.Tensor, seed: int, val_size: int, test_size: int
) -> Splits:
    full = TensorDataset(images, labels)
    sizes = _split_sizes(len(full), val_size, test_size)
    train, val, test = random_split(full, sizes, generator=torch.Generator().manual_seed(seed))
    return Splits(train, val, test)


def digits_splits(seed: int = 0, val_size: int = 180, test_size: int = 360) -> Splits:
    """scikit-learn's bundled 8x8 digits (1797 images) scaled to [0, 1], split with a fixed seed."""
    images, labels = _digits_tensors()
    return _split(images, labels, seed, val_size, test_size)


KNOWN_DATASETS = "digits, digits32, mnist, cifar10, imagenet or image_folder"
# Datasets whose class count is fixed; folder datasets have one class per folder in train/.
CLASS_COUNTS = {"digits": 10, "digits32": 10, "mnist": 10, "cifar10": 10}
FOLDER_LAYOUT = "DATA_DIR/train/<class>/*.png and DATA_DIR/val/<class>/*.png"
DIGITS32_CANVAS = 32
DIGITS32_DIGIT = 20


def upsample_onto_canvas(
    images: torch.Tensor, digit: int = DIGITS32_DIGIT, canvas: int = DIGITS32_CANVAS
) -> torch.Tensor:
    """Bilinearly resizes ``(N, C, h, w)`` images to ``digit x digit`` and centers them on a black
    ``canvas x canvas`` image; values stay in the input's range (bilinear weights are convex)."""
    import torch.nn.functional as F

    if not 0 < digit <= canvas:
        raise ConfigError(f"digit size {digit} must lie in (0, canvas={canvas}]")
    resized = F.interpolate(images, size=(digit, digit), mode="bilinear", align_corners=False)
    out = images.new_zeros(images.shape[0], images.shape[1], canvas, canvas)
    top = (canvas - digit) // 2
    out[:, :, top : top + digit, top : top + digit] = resized
    return out


def digits32_splits(seed: int = 0, val_size: int = 180, test_size: int = 360) -> Splits:
    """The 8x8 digits upsampled (bilinear) to 20x20 and centered on a black 32x32 canvas.

    Why: an 8x8 image is too coarse for rotation and translation (one pixel is 12% of the digit,
    and a rotation of a few degrees moves no sample point by more than a fraction of a pixel, so
    the interpolation error dominates). At 20x20 the digit's corners lie within 10*sqrt(2) = 14.1
    pixels of the center, inside the inscribed disc of radius 16 that the rotation vignette keeps,
    and the 6-pixel black margin keeps it in frame under translations of up to 6 pixels. Same
    images, labels and seeded split as ``digits``.
    """
    images, labels = _digits_tensors()
    return _split(upsample_onto_canvas(images), labels, seed, val_size, test_size)


def _require_dir(root: Path, what: str, how: str, splits: tuple[str, ...] = ("",)) -> None:
    """ConfigError unless each ``root / split`` is a folder (``what`` may name ``{split}``)."""
    for split in splits:
        if not (root / split).is_dir():
            raise ConfigError(f"{what.format(split=split)} not found at {root / split}: {how}")


def check_dataset(name: str, data_dir: str | Path, download: bool = False) -> None:
    """Raises ConfigError (one line: where the files are expected, how to get them) unless the
    dataset can be read; cheap (looks at folders only), so it runs before anything is built."""
    root = Path(data_dir)
    if name in ("digits", "digits32"):
        return
    if name in ("mnist", "cifar10"):
        folder = root / ("MNIST/raw" if name == "mnist" else "cifar-10-batches-py")
        if not download:
            _require_dir(
                folder,
                f"{name} dataset",
                f"place torchvision's {name} files under paths.data_dir={root} "
                "or run once with data.download=true",
            )
        return
    if name == "imagenet":
        _require_dir(
            root,
            "ImageNet {split} folder",
            "download ILSVRC2012 from image-net.org, arrange train/ and val/ as one folder per "
            "class (wnid) and set paths.data_dir to the folder holding them",
            ("train", "val"),
        )
        return
    if name == "image_folder":
        how = f"set data.data_dir to a folder laid out as {FOLDER_LAYOUT} (one folder per class)"
        _require_dir(root, "image folder {split}/", how, ("train", "val"))
        return
    raise ConfigError(f"data.name={name!r} is unknown: use {KNOWN_DATASETS}")


def class_folders(data_dir: str | Path, name: str = "image_folder") -> list[str]:
    """The class names of a folder dataset: the sub-folders of ``data_dir/train``, sorted (a
    class's label is its position), as torchvision's ImageFolder reads them. ConfigError if there
    are none."""
    from torchvision.datasets.folder import find_classes

    check_dataset(name, data_dir)
    try:
        return find_classes(str(Path(data_dir) / "train"))[0]
    except FileNotFoundError as error:
        raise ConfigError(
            f"{Path(data_dir) / 'train'} holds no class folders: lay the images out as "
            f"{FOLDER_LAYOUT}"
        ) from error


def class_count(name: str, data_dir: str | Path) -> int | None:
    """How many classes the dataset has (counted for folder datasets), None if not known."""
    if name in ("imagenet", "image_folder"):
        return len(class_folders(data_dir, name))
    return CLASS_COUNTS.get(name)


def _train_val(train_full: Dataset, val_full: Dataset, val_size: int, seed: int):
    """Carves a fixed, seeded validation subset out of the training set (two transform views)."""
    order = np.random.default_rng(seed).permutation(len(train_full))
    return Subset(train_full, order[val_size:].tolist()), Subset(
        val_full, order[:val_size].tolist()
    )


def torchvision_splits(
    name: str,
    data_dir: str | Path,
    download: bool = False,
    val_size: int = 5000,
    seed: int = 0,
    augment: bool = True,
) -> Splits:
    """MNIST or CIFAR-10 from ``data_dir`` (torchvision layout), pixels in [0, 1].

    Raises ConfigError naming the expected location unless the files are there or ``download``.
    """
    from torchvision import datasets, transforms

    check_dataset(name, data_dir, download)
    root = Path(data_dir)
    plain = transforms.ToTensor()
    if name == "mnist":
        cls = datasets.MNIST
        train_tf = plain
    elif name == "cifar10":
        from smoothcert.data.cifar import CIFAR10Files

        cls = CIFAR10Files  # checks the files' content; torchvision's md5 check needs the originals
        train_tf = (
            transforms.Compose(
                [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), plain]
            )
            if augment
            else plain
        )
    else:
        raise ConfigError(f"data.name={name!r} is not a torchvision dataset smoothcert knows")
    try:
        train_full = cls(str(root), train=True, transform=train_tf, download=download)
        val_full = cls(str(root), train=True, transform=plain, download=False)
        test = cls(str(root), train=False, transform=plain, download=False)
    except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
        raise ConfigError(f"{name} under {root} is unreadable ({error}): re-download it") from error
    train, val = _train_val(train_full, val_full, val_size, seed)
    return Splits(train, val, test)


def imagenet_splits(
    data_dir: str | Path, val_size: int = 10000, seed: int = 0, image_size: int = 224
) -> Splits:
    """ImageNet as ImageFolder trees ``data_dir/train/<wnid>/*`` and ``data_dir/val/<wnid>/*``.

    The official validation set is the test split; validation is carved from the training set.
    """
    return image_folder_splits(
        data_dir, val_size, seed, image_size, name="imagenet", resize=256 / 224
    )


def _folder(root: Path, classes: list[str], transform, allow_empty: bool = False) -> Dataset:
    """torchvision's ImageFolder over ``root`` with the labels of ``classes`` (those of train/),
    so that a val/ folder lacking a class still labels the others as train/ does."""
    from torchvision import datasets

    class Folder(datasets.ImageFolder):
        def find_classes(self, directory):
            return classes, {c: i for i, c in enumerate(classes)}

    return Folder(str(root), transform=transform, allow_empty=allow_empty)


def image_folder_splits(
    data_dir: str | Path,
    val_size: int = 100,
    seed: int = 0,
    image_size: int = 64,
    augment: bool = True,
    channels: int = 3,
    name: str = "image_folder",
    resize: float = 1.0,
) -> Splits:
    """Images in class folders, ``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*``
    (torchvision's ImageFolder; labels are the class folders of train/, sorted).

    val/ is the test split (evaluated and certified); ``val_size`` training images, picked with
    ``seed``, are the validation split. Evaluation images are resized (shorter side to
    ``resize * image_size``) and center-cropped to ``image_size``; training images with
    ``augment`` get a random resized crop and a horizontal flip instead. Pixels in [0, 1]; RGB,
    or grayscale with ``channels=1``.
    """
    from torchvision import transforms

    root = Path(data_dir)
    classes = class_folders(root, name)
    if channels not in (1, 3):
        raise ConfigError(f"data.channels={channels} must be 1 (grayscale) or 3 (RGB)")
    color = [transforms.Grayscale(1)] if channels == 1 else []
    eval_tf = transforms.Compose(
        [
            transforms.Resize(int(image_size * resize)),
            transforms.CenterCrop(image_size),
            *color,
            transforms.ToTensor(),
        ]
    )
    train_tf = eval_tf
    if augment or name == "imagenet":
        train_tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(image_size),
                transforms.RandomHorizontalFlip(),
                *color,
                transforms.ToTensor(),
            ]
        )
    unknown = sorted(set(class_folders_in(root / "val")) - set(classes))
    if unknown:
        raise ConfigError(
            f"{root / 'val'} has class folders that train/ lacks ({', '.join(unknown)}): every "
            "class needs training images; rename or remove them"
        )
    train_full = _folder(root / "train", classes, train_tf)
    val_full = _folder(root / "train", classes, eval_tf)
    test = _folder(root / "val", classes, eval_tf, allow_empty=True)
    if val_size >= len(train_full):
        raise ConfigError(
            f"data.val_size={val_size} leaves no training images ({root / 'train'} holds "
            f"{len(train_full)}): set data.val_size smaller, e.g. {max(1, len(train_full) // 10)}"
        )
    train, val = _train_val(train_full, val_full, val_size, seed)
    return Splits(train, val, test)


def class_folders_in(folder: Path) -> list[str]:
    """Names of the sub-folders of ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def build_splits(
    name: str,
    data_dir: str | Path,
    seed: int = 0,
    val_size: int | None = None,
    test_size: int | None = None,
    download: bool = False,
    augment: bool = True,
    image_size: int = 224,
    channels: int = 3,
) -> Splits:
    """Dispatches on the dataset name: digits, digits32, mnist, cifar10, imagenet or image_folder.

    ``val_size``/``test_size`` of None keep each dataset's default; ``test_size`` applies to digits
    only (the others have an official test split).
    """
    if name == "digits":
        return digits_splits(seed, val_size or 180, test_size or 360)
    if name == "digits32":
        return digits32_splits(seed, val_size or 180, test_size or 360)
    if name in ("mnist", "cifar10"):
        return torchvision_splits(name, data_dir, download, val_size or 5000, seed, augment)
    if name == "imagenet":
        return imagenet_splits(data_dir, val_size or 10000, seed, image_size)
    if name == "image_folder":
        return image_folder_splits(data_dir, val_size or 100, seed, image_size, augment, channels)
    raise ConfigError(f"data.name={name!r} is unknown: use {KNOWN_DATASETS}")
