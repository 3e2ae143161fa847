"""DataModule for box regression on the generated shapes: yields (image in [0, 1], box)."""

from __future__ import annotations

from collections.abc import Sequence

from typing_extensions import override

from lightning_modules.data.splits import SplitsDataModule
from smoothcert.data.boxes import ShapeBoxesDataset
from smoothcert.data.classification import Splits
from smoothcert.errors import check_unit_range, require

RANGE_CHECK_EXAMPLES = 8


class ShapeBoxesDataModule(SplitsDataModule):
    """Train/val/test loaders of ``smoothcert.data.boxes.ShapeBoxesDataset``: shapes images and the
    box ``(x1, y1, x2, y2)`` of their largest visible shape, in normalized [0, 1] coordinates.

    The splits are the images of ``data=shapes`` (same seed, split and size give the same
    pictures). When set up, the first examples of each split are checked: pixels and box
    coordinates in [0, 1].

    Args:
        name: must be ``shapes_boxes``; recorded in checkpoints as the dataset.
        data_dir: unused (nothing is read from disk); kept so every data config has it.
        num_classes: the shape classes drawn in the images (background included); the box target
            ignores them, and models that do not predict classes do not read it.
    """

    drop_incomplete_train_batch = True

    def __init__(
        self,
        name: str,
        data_dir: str,
        num_classes: int,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        image_size: int = 64,
        train_size: int = 2000,
        val_size: int = 100,
        test_size: int = 100,
        max_shapes: int = 4,
    ) -> None:
        super().__init__()
        require(name == "shapes_boxes", f"data.name={name!r} is unknown here: use shapes_boxes")
        require(channels == 3, f"data.channels={channels}: shapes images have 3 channels")
        self.save_hyperparameters(logger=False)
        self.splits: Splits | None = None

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        h = self.hparams
        kw = dict(seed=h.seed, size=h.image_size, max_shapes=h.max_shapes)
        self.splits = Splits(
            ShapeBoxesDataset(h.train_size, "train", **kw),
            ShapeBoxesDataset(h.val_size, "val", **kw),
            ShapeBoxesDataset(h.test_size, "test", **kw),
        )
        for split in ("train", "val"):
            dataset = self.splits.get(split)
            for i in range(min(RANGE_CHECK_EXAMPLES, len(dataset))):
                image, box = dataset[i]
                check_unit_range(image, f"data={h.name} {split} images")
                check_unit_range(box, f"data={h.name} {split} boxes")
