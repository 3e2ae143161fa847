"""Checkpoints written before the core moved into folders (DESIGN.md) still name their classes by
the old ``_target_`` paths: ``upgrade_config`` maps them to the new places. The slow end-to-end
check (the pre-move checkpoint certified with the same rows) is in test_certify_checkpoint.py."""

from __future__ import annotations

import importlib

import hydra
import pytest
import torch

from conftest import ROOT
from lightning_modules.run.checkpoints import MOVED_MODULES, moved_target, upgrade_config

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
]


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
