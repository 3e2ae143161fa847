"""Your own data: a folder of class folders (data=image_folder) and a DataModule of your own
plugged in through a config file, as docs/own_data.md describes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from conftest import TINY
from lightning_modules.data.splits import SplitsDataModule
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.data.classification import Splits
from smoothcert.errors import ConfigError

CLASSES = ("cat", "dog", "owl")


def write_folder(root: Path, per_class: int = 4, val_lacks: str | None = None) -> Path:
    """Random 10x12 RGB PNGs: ``per_class`` per class in train/, 2 per class in val/."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", 2)):
        for name in CLASSES:
            if split == "val" and name == val_lacks:
                continue
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def folder_cfg(make_cfg, root: Path, *overrides: str):
    return make_cfg(
        *TINY,
        "data=image_folder",
        f"data.data_dir={root}",
        "data.image_size=8",
        "data.val_size=3",
        "data.num_workers=0",
        *overrides,
    )


def test_image_folder_counts_its_classes_and_labels_val_as_train(make_cfg, tmp_path):
    root = write_folder(tmp_path / "images", val_lacks="dog")
    cfg = folder_cfg(make_cfg, root)
    assert cfg.data.num_classes == 3 and cfg.model.num_classes == 3
    run = build_run(cfg)
    train, test = run.datamodule.dataset("train"), run.datamodule.dataset("test")
    assert len(train) == 12 - 3 and len(run.datamodule.dataset("val")) == 3
    x, _ = train[0]
    assert tuple(x.shape) == (3, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
    # val/ lacks dog: owl keeps label 2, the label train/ gives it
    assert sorted(label for _, label in test) == [0, 0, 2, 2]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.num_classes=2"], r"^data.num_classes=2 but \S+/train holds 3 class folders: set"),
        (["model.net.num_classes=5"], r"^model.net.num_classes=5 but data=image_folder has 3 c"),
        (["data.val_size=12"], r"^data.val_size=12 leaves no training images"),
    ],
)
def test_class_counts_that_disagree_are_one_line(make_cfg, tmp_path, overrides, message):
    cfg = folder_cfg(make_cfg, write_folder(tmp_path / "images"), *overrides)
    with pytest.raises(Exception) as info:
        run = build_run(cfg)
        run.datamodule.setup()
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError), repr(info.value)
    assert "\n" not in str(error)

    assert re.search(message, str(error)), str(error)


def test_imagenet_with_another_number_of_class_folders_is_refused(make_cfg, tmp_path):
    root = write_folder(tmp_path / "images")
    with pytest.raises(Exception) as info:
        build_run(make_cfg(*TINY, "data=imagenet", f"paths.data_dir={root}"))
    message = str(config_error_in(info.value))
    assert message.startswith("data.num_classes=1000 but") and "data=image_folder" in message


def test_a_missing_folder_is_one_line(make_cfg, tmp_path):
    with pytest.raises(Exception) as info:
        build_run(folder_cfg(make_cfg, tmp_path / "nowhere"))
    message = str(config_error_in(info.value))
    assert message.startswith("image folder train/ not found at") and "data.data_dir" in message


class TinyDataModule(SplitsDataModule):
    """The smallest DataModule of one's own: random 1x8x8 images in [0, 1], 3 classes."""

    def __init__(
        self,
        name: str,
        num_classes: int,
        channels: int,
        mean: list[float],
        std: list[float],
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.num_classes = num_classes

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            generator = torch.Generator().manual_seed(0)

            def split(count: int) -> TensorDataset:
                images = torch.rand(count, self.hparams.channels, 8, 8, generator=generator)
                labels = torch.randint(0, self.num_classes, (count,), generator=generator)
                return TensorDataset(images, labels)

            self.splits = Splits(split(64), split(16), split(16))


TINY_YAML = """\
_target_: test_own_data.TinyDataModule
name: tiny
num_classes: 3
channels: 1
mean: [0.5]
std: [0.25]
batch_size: 16
"""


@pytest.mark.slow
def test_a_datamodule_of_ones_own_plugs_in_through_a_config_file(make_cfg, tmp_path):
    (tmp_path / "my_conf" / "data").mkdir(parents=True)
    (tmp_path / "my_conf" / "data" / "tiny.yaml").write_text(TINY_YAML)
    searchpath = f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]"
    cfg = make_cfg(*TINY, searchpath, "data=tiny", "certify.num_examples=4", "certify.n=200")
    run = build_run(cfg)
    assert isinstance(run.datamodule, TinyDataModule)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert (tmp_path / "certify.tsv").is_file()
    assert run.callbacks[-1].summary["cert/acr"] >= 0


@pytest.mark.slow
def test_image_folder_trains_and_certifies(make_cfg, tmp_path):
    cfg = folder_cfg(make_cfg, write_folder(tmp_path / "images"), "certify.n=200")
    run = build_run(cfg)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    rows = (tmp_path / "certify.tsv").read_text().splitlines()
    assert len([r for r in rows if r and not r.startswith("#")]) == 1 + 6  # header + val/ images
