"""Checkpoints written before the core moved into folders (DESIGN.md) still name their classes by
the old ``_target_`` paths: ``upgrade_config`` maps them to the new places. The slow end-to-end
check (the pre-move checkpoint certified with the same rows) is in test_certify_checkpoint.py."""

from __future__ import annotations

import importlib

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from pytorch_lightning import LightningDataModule

from conftest import ROOT
from lightning_modules.base import SmoothcertModule
from lightning_modules.run import resume
from lightning_modules.run.checkpoints import (
    MOVED_MODULES,
    RETIRED_KEYS,
    moved_target,
    upgrade_config,
)
from smoothcert.errors import ConfigError

FIXTURE = ROOT / "tests" / "fixtures" / "pre_move" / "digits_last.ckpt"

# Targets that configs and checkpoints of the first wave named (conf/ before the move).
OLD_TARGETS = [
    "smoothcert.regimes_adv.SmoothAdv",
    "smoothcert.seg_models.timm_segmenter",
    "smoothcert.seg_models.SegmentationConsistency",
    "smoothcert.structured_models.ConvAutoencoder",
    "smoothcert.structured_models.BoxRegressor",
    "smoothcert.denoisers.DnCNN",
    "smoothcert.denoisers.UNet",
    "smoothcert.datasets.digits_splits",
    "callbacks.cohen_certification.CohenCertification",
    "callbacks.segcertify_certification.SegCertifyCertification",
    "callbacks.center_certification.CenterCertification",
    # lightning_modules before it was split into task modules, data/ and run/: the DataModules
    # (which every checkpoint's data config names) and what a run's configs may name.
    "lightning_modules.classification_data.ClassificationDataModule",
    "lightning_modules.segmentation_data.SegmentationDataModule",
    "lightning_modules.detection_data.ShapeDetectionDataModule",
    "lightning_modules.box_data.ShapeBoxesDataModule",
    "lightning_modules.splits_data.SplitsDataModule",
    "lightning_modules.wandb_setup.make_wandb_logger",
    "lightning_modules.runner.build_run",
    "lightning_modules.config_checks.check_config",
    "lightning_modules.checkpoints.upgrade_config",
    "lightning_modules.resume.resume_checkpoint",
    "lightning_modules.threads.apply_threads",
    "lightning_modules.resolvers.folder_classes",
    "lightning_modules.quiet.quiet_known_noise",
]
OLD_PLACE = {new: old for old, new in MOVED_MODULES.items()}
# Data options whose DataModule was written after the move (no old path to upgrade from).
BORN_AFTER_THE_MOVE = {"shapes3d", "shapenet_part"}  # lightning_modules.data.pointclouds
DATA_CONFIGS = sorted(
    p for p in (ROOT / "conf" / "data").glob("*.yaml") if p.stem not in BORN_AFTER_THE_MOVE
)


def targets(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["_target_"]] if isinstance(node.get("_target_"), str) else []
        return own + [t for key, value in node.items() if key != "_target_" for t in targets(value)]
    if isinstance(node, list):
        return [t for value in node for t in targets(value)]
    return []


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_each_old_module_is_gone_and_its_new_place_imports(old):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)
    importlib.import_module(MOVED_MODULES[old])


@pytest.mark.parametrize("old", OLD_TARGETS)
def test_old_targets_resolve_at_their_new_place(old):
    module = old.rpartition(".")[0]
    assert module in MOVED_MODULES, f"{old}: its module is not in the map"
    assert callable(hydra.utils.get_object(moved_target(old)))


def test_the_pre_move_checkpoint_config_upgrades_to_loadable_targets():
    meta = torch.load(FIXTURE, map_location="cpu", weights_only=True)["smoothcert"]
    stored = meta["config"]
    assert "train_sigma" in stored["model"]  # a retired key: not vacuous
    upgraded = {group: upgrade_config(group, node) for group, node in stored.items()}
    assert "train_sigma" not in upgraded["model"]
    found = targets(upgraded)
    assert found and all(not t.startswith(tuple(f"{m}." for m in MOVED_MODULES)) for t in found)
    for target in found:
        hydra.utils.get_object(target)


def test_every_old_module_a_target_names_is_in_the_map():
    named = {target.rpartition(".")[0] for target in OLD_TARGETS}
    assert named <= set(MOVED_MODULES)
    assert {m for m in MOVED_MODULES if m.startswith("lightning_modules.")} <= named


@pytest.mark.parametrize("path", DATA_CONFIGS, ids=lambda p: p.stem)
def test_a_data_config_naming_the_old_datamodule_path_upgrades_to_todays(path):
    node = OmegaConf.to_container(OmegaConf.load(path))
    module, _, name = node["_target_"].rpartition(".")
    assert module in OLD_PLACE, f"{path.name}: its DataModule did not move"  # not vacuous
    old = {**node, "_target_": f"{OLD_PLACE[module]}.{name}"}
    assert upgrade_config("data", old) == node
    assert issubclass(hydra.utils.get_class(node["_target_"]), LightningDataModule)


def test_the_pre_move_checkpoint_rebuilds_its_module_and_datamodule_with_the_same_hparams():
    checkpoint = torch.load(FIXTURE, map_location="cpu", weights_only=True)
    stored = checkpoint["smoothcert"]["config"]
    assert stored["data"]["_target_"].startswith("lightning_modules.classification_data.")
    data = hydra.utils.instantiate(OmegaConf.create(upgrade_config("data", stored["data"])))
    assert dict(data.hparams) == checkpoint["datamodule_hyper_parameters"]
    module = SmoothcertModule.load_from_checkpoint(FIXTURE)
    retired = RETIRED_KEYS["model"]
    kept = {k: v for k, v in checkpoint["hyper_parameters"].items() if k not in retired}
    assert dict(module.hparams) == kept


def test_resuming_a_checkpoint_that_names_old_paths_compares_them_at_their_new_place():
    """train.py ckpt_path=OLD.ckpt: the same run, although its stored config names old paths."""
    now = {
        "sigma": 0.25,
        "model": {"_target_": "lightning_modules.segmentation.SegmentationModule",
                  "net": {"_target_": "smoothcert.models.segmenters.timm_segmenter", "width": 8}},
        "data": {"_target_": "lightning_modules.data.segmentation.SegmentationDataModule"},
    }  # fmt: skip
    old = {
        **now,
        "model": {**now["model"], "net": {"_target_": "smoothcert.seg_models.timm_segmenter",
                                          "width": 8}},
        "data": {"_target_": "lightning_modules.segmentation_data.SegmentationDataModule"},
    }  # fmt: skip
    resume.check_same_run({"smoothcert": {"config": old}}, OmegaConf.create(now), "OLD.ckpt")
    other = {**now, "model": {**now["model"], "net": {**now["model"]["net"], "width": 16}}}
    with pytest.raises(ConfigError, match="model.net.width=8"):
        resume.check_same_run({"smoothcert": {"config": old}}, OmegaConf.create(other), "OLD.ckpt")
