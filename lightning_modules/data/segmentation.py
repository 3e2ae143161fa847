"""DataModule for semantic segmentation: yields (image in [0, 1], mask), never normalizes."""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from lightning_modules.data.splits import Loading, SplitsDataModule
from smoothcert.data.classification import Splits
from smoothcert.data.segmentation import (
    build_segmentation_splits,
    check_label_map,
    check_segmentation_dataset,
)


class SegmentationDataModule(SplitsDataModule):
    """Train/val/test loaders for ``shapes`` (generated), ``cityscapes`` or ``pascal_context``
    (official layouts).

    A missing dataset is a one-line ConfigError when the module is built (before any training);
    when it is set up, the first examples of each split are checked: pixels in [0, 1] and labels in
    {0, ..., num_classes - 1, ignore_index}.
    """

    # The loaders', then those of the function that builds the splits (ignore_index after seed:
    # the order of the hparams that checkpoints hold).
    settings = (
        Loading,
        (build_segmentation_splits, "seed", "ignore_index"),
        (build_segmentation_splits,),
    )
    drop_incomplete_train_batch = True

    @override
    def check_chosen(self, settings: dict[str, Any]) -> None:
        check_segmentation_dataset(settings["name"], settings["data_dir"])

    @override
    def build_splits(self) -> Splits:
        return build_segmentation_splits(**self.settings_for(build_segmentation_splits))

    @override
    def check_target(self, target: Any, where: str) -> None:
        h = self.hparams
        check_label_map(target, h.num_classes, h.ignore_index, f"{where} mask")
