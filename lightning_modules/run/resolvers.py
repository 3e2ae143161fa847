"""OmegaConf resolvers the configs use; registered when ``lightning_modules`` is imported.

``${folder_classes:DIR}``: the number of class folders in ``DIR/train`` (data=image_folder reads
its ``num_classes`` from the folder this way, so the model is built with the right head)."""

from __future__ import annotations

from omegaconf import OmegaConf

from smoothcert.data.classification import class_folders
from smoothcert.errors import ConfigError


def folder_classes(data_dir: str) -> int:
    """How many class folders ``data_dir/train`` holds; 0 where there are none or no folder, so
    that the config still composes: the DataModule, built before the model, then refuses it in
    one line that says which folder is missing and how to lay it out."""
    try:
        return len(class_folders(data_dir))
    except ConfigError:
        return 0


OmegaConf.register_new_resolver("folder_classes", folder_classes, replace=True)
