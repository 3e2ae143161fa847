"""DataModule for point-cloud part segmentation: yields (cloud [C, N], part labels [N])."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset
from typing_extensions import override

from lightning_modules.data.splits import Loading, SplitsDataModule
from smoothcert.data.pointclouds import build_pointcloud_splits, check_pointcloud_dataset
from smoothcert.data.segmentation import check_label_map
from smoothcert.errors import ConfigError, require


class PointCloudDataModule(SplitsDataModule):
    """Train/val/test loaders for ``shapes3d`` (procedural, bundled) or ``shapenet_part``
    (official layout under ``data_dir``; a missing dataset is a one-line ConfigError when the
    module is built). Clouds are normalized to the unit ball (not [0, 1]: points are not pixels);
    the first examples of each split are checked for that, for ``channels`` (xyz, normals if
    ``normals``, one channel per category) and for part labels below ``num_classes``."""

    settings = (Loading, (build_pointcloud_splits,))
    drop_incomplete_train_batch = True

    @override
    def check_chosen(self, settings: dict[str, Any]) -> None:
        check_pointcloud_dataset(settings["name"], settings["data_dir"])

    @override
    def build_splits(self) -> Any:
        return build_pointcloud_splits(**self.settings_for(build_pointcloud_splits))

    @override
    def check_examples(self, split: str, dataset: Dataset) -> None:
        h, where = self.hparams, f"data={self.hparams.name} {split}"
        parts = sum(len(g.parts) for g in dataset.groups)
        require(
            parts == h.num_classes,
            f"data.num_classes={h.num_classes}, but {h.name} has {parts} parts: set it to {parts}",
        )
        for i in range(min(self.checked_examples, len(dataset))):
            cloud, labels = dataset[i]
            if cloud.dim() != 2 or cloud.shape[0] != h.channels:
                raise ConfigError(
                    f"{where} clouds have shape {tuple(cloud.shape)}, data.channels={h.channels}: "
                    f"give xyz + {'3 normals + ' if h.normals else ''}one channel per category"
                )
            reach = float(cloud[:3].norm(dim=0).max())
            require(reach <= 1 + 1e-4, f"{where} clouds reach norm {reach:.4g} > 1: normalize")
            check_label_map(labels, h.num_classes, 255, f"{where} part labels")
