"""What certify.py certifies: a smoothcert checkpoint and what it says about itself, or weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_info

from callbacks.certification.checks import check_task
from smoothcert.errors import ConfigError
from smoothcert.models import NormalizedClassifier
from smoothcert.models.loading import Weights, load_into, read_weights


def checkpoint_metadata(path: str | Path | None) -> dict[str, Any]:
    """``checkpoint["smoothcert"]`` of the file at ``path``; one-line ConfigError if the file is
    missing, unreadable, or not written by smoothcert."""
    if not path or not Path(path).is_file():
        raise ConfigError(f"ckpt_path={path} is not a file: pass ckpt_path=PATH/TO/last.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise ConfigError(
            f"ckpt_path={path} is not a readable checkpoint (torch.load: {type(error).__name__}): "
            "pass a .ckpt file written by train.py"
        ) from error
    meta = checkpoint.get("smoothcert") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        raise ConfigError(
            f"ckpt_path={path} was not written by smoothcert's train.py: for a state dict, a "
            "TorchScript archive or a Cohen-format checkpoint pass weights=PATH with its "
            "architecture, e.g. `python certify.py weights=PATH model=cifar_resnet110 data=cifar10`"
        )
    return meta


# The certifier certify.py uses for a checkpoint of each task when none is chosen (classification:
# the config's default, certify=cohen).
TASK_CERTIFIER = {
    "segmentation": "segcertify",
    "reconstruction": "center",
    "box_regression": "center",
    "detection": "median",
}


def certifier_for_checkpoint(args: Sequence[str]) -> list[str]:
    """``["certify=NAME"]`` for certify.py's command line ``args`` when they name a checkpoint
    (``ckpt_path=`` or ``weights=``) of a task whose certifier is not the default and choose no
    certifier (nor an experiment, which chooses its own); else ``[]``. Any problem with the file
    is left to certify.py's own checks, which report it in one line."""
    names = [arg.split("=", 1)[0].lstrip("+~") for arg in args]
    if any(name in ("certify", "experiment") for name in names):
        return []
    paths = [
        a.split("=", 1)[1]
        for a, n in zip(args, names, strict=True)
        if n in ("ckpt_path", "weights")
    ]
    if len(paths) != 1 or not Path(paths[0]).is_file():
        return []
    try:  # mmap: only the task is read here, not the weights (certify.py reads them next)
        checkpoint = torch.load(paths[0], map_location="cpu", weights_only=True, mmap=True)
        task = checkpoint["smoothcert"]["task"]
    except Exception:  # not a smoothcert checkpoint: the default certifier, checked later
        return []
    return [f"certify={TASK_CERTIFIER[task]}"] if task in TASK_CERTIFIER else []


def read_certify_source(cfg: DictConfig) -> tuple[dict[str, Any], Weights | None]:
    """What certify.py certifies: a smoothcert checkpoint (``ckpt_path=``; ``weights=`` naming
    one is taken as that) with its metadata, or other weights (``weights=``: a state dict,
    TorchScript archive or Cohen-format checkpoint) for the configured classifier. One-line
    ConfigError unless exactly one of the two is given and readable."""
    ckpt_path, weights = cfg.get("ckpt_path"), cfg.get("weights")
    if ckpt_path and weights:
        raise ConfigError(
            f"ckpt_path={ckpt_path} and weights={weights} are both set: pass ckpt_path= for a "
            "checkpoint written by train.py, or weights= for other weights"
        )
    if not ckpt_path and not weights:
        raise ConfigError(
            "nothing to certify: pass ckpt_path=RUN/checkpoints/last.ckpt (written by train.py), "
            "or weights=PATH and its architecture (model=...) for other weights"
        )
    if not weights:
        return checkpoint_metadata(ckpt_path), None
    loaded = read_weights(weights, "weights")
    if loaded.format == "smoothcert":
        with open_dict(cfg):
            cfg.ckpt_path, cfg.weights = str(weights), None
        return checkpoint_metadata(weights), None
    return {"task": "classification"}, loaded


def load_external_weights(module: Any, weights: Weights) -> str:
    """Puts ``weights`` into ``module.model`` (a classifier that normalizes inside) and marks the
    module as trained elsewhere (``external_weights``: its training sigma is unknown). Logs (rank
    0) and returns the one line that says how inputs are normalized."""
    model = getattr(module, "model", None)
    if not isinstance(model, NormalizedClassifier):
        raise ConfigError(
            f"weights={weights.path}: model={type(module).__name__} is not a classifier; "
            "weights= certifies classifiers (model=cifar_resnet110, resnet50, timm, ...)"
        )
    load_into(model, weights, "weights")
    module.external_weights = weights.describe()
    mean, std = (model.normalize.mean.flatten().tolist(), model.normalize.std.flatten().tolist())
    said = "the file's" if weights.mean is not None else "model.mean/model.std's"
    line = (
        f"certifying {weights.describe()}; inputs are pixels in [0, 1], normalized inside the "
        f"model with {said} mean={[round(v, 6) for v in mean]} std={[round(v, 6) for v in std]}"
    )
    rank_zero_info(line)
    return line


def _overridden(overrides: Sequence[str], key: str) -> bool:
    for override in overrides:
        name = override.split("=", 1)[0].lstrip("+~")
        if name == key or name.startswith(key + ".") or name in ("experiment", "+experiment"):
            return True
    return False


def apply_checkpoint(cfg: DictConfig, meta: dict[str, Any], overrides: Sequence[str]) -> None:
    """Makes ``cfg`` certify the checkpoint described by ``meta``.

    The model and data configs, the noise distribution and sigma come from the checkpoint unless
    the command line set them (or chose an experiment). Raises ConfigError if the certifier is for
    another task.
    """
    certify_target = (cfg.get("certify") or {}).get("_target_")
    if not certify_target:
        raise ConfigError(
            "certify=none leaves nothing to do: choose a certifier, e.g. certify=cohen"
        )
    certifier = hydra.utils.get_class(certify_target)
    option, tasks = getattr(certifier, "option", ""), getattr(certifier, "tasks", ())
    check_task(option, tasks, meta.get("task"), training=False)
    stored = meta.get("config") or {}
    with open_dict(cfg):
        for key in ("model", "data"):
            if key in stored and not _overridden(overrides, key):
                cfg[key] = OmegaConf.create(upgrade_config(key, stored[key]))
        # The training noise's distribution (its level: sigma, below); older checkpoints: Gaussian.
        noise = stored.get("noise") or {}
        if "_target_" in noise and "noise" in cfg and not _overridden(overrides, "noise"):
            cfg.noise._target_ = moved_target(noise["_target_"])
        if (
            "train_sigma" in meta
            and not _overridden(overrides, "sigma")
            and not _overridden(overrides, "certify.sigma")
        ):
            stored_sigma = meta["train_sigma"]  # a number, or a list of training noise levels
            if isinstance(stored_sigma, (list, tuple)):
                cfg.sigma = [float(v) for v in stored_sigma]
            elif stored_sigma:
                cfg.sigma = float(stored_sigma)
        _restore_training_noise(cfg, meta, overrides)


# Keys that older checkpoints' configs hold and today's modules no longer take, by config group:
# model.train_sigma (the training level is read from the noise the model trains with).
RETIRED_KEYS = {"model": ("train_sigma",)}


# Where the modules that checkpoints' ``_target_`` paths may name live now (the core was reorganized
# into folders named after the config groups; see DESIGN.md). Longest names first.
MOVED_MODULES = {
    "smoothcert.structured_models": "smoothcert.models.structured",
    "smoothcert.segmentation_data": "smoothcert.data.segmentation",
    "smoothcert.center_records": "smoothcert.records.center",
    "smoothcert.record_store": "smoothcert.records.legacy",
    "smoothcert.certification": "smoothcert.certifiers.examples",
    "smoothcert.regimes_adv": "smoothcert.regimes.smoothadv",
    "smoothcert.seg_records": "smoothcert.records.segmentation",
    "smoothcert.statistics": "smoothcert.stats.binomial",
    "smoothcert.seg_models": "smoothcert.models.segmenters",
    "smoothcert.segcertify": "smoothcert.certifiers.segmentation",
    "smoothcert.denoisers": "smoothcert.models.denoisers",
    "smoothcert.datasets": "smoothcert.data.classification",
    "smoothcert.box_data": "smoothcert.data.boxes",
    "smoothcert.center": "smoothcert.certifiers.center",
    "smoothcert.curves": "smoothcert.metrics.certified",
    "smoothcert.shapes": "smoothcert.data.shapes",
    "smoothcert.smooth": "smoothcert.certifiers.classification",
    "smoothcert.plots": "smoothcert.report.plots",
    "callbacks.cohen_certification": "callbacks.certification.cohen",
    "callbacks.segcertify_certification": "callbacks.certification.segcertify",
    "callbacks.center_certification": "callbacks.certification.center",
    # lightning_modules was split into task modules, data/ (DataModules) and run/ (assembly).
    "lightning_modules.classification_data": "lightning_modules.data.classification",
    "lightning_modules.segmentation_data": "lightning_modules.data.segmentation",
    "lightning_modules.detection_data": "lightning_modules.data.detection",
    "lightning_modules.splits_data": "lightning_modules.data.splits",
    "lightning_modules.box_data": "lightning_modules.data.boxes",
    "lightning_modules.config_checks": "lightning_modules.run.config_checks",
    "lightning_modules.wandb_setup": "lightning_modules.run.wandb_setup",
    "lightning_modules.checkpoints": "lightning_modules.run.checkpoints",
    "lightning_modules.resolvers": "lightning_modules.run.resolvers",
    "lightning_modules.runner": "lightning_modules.run.runner",
    "lightning_modules.threads": "lightning_modules.run.threads",
    "lightning_modules.resume": "lightning_modules.run.resume",
    "lightning_modules.quiet": "lightning_modules.run.quiet",
}


# Classes that left their module (issue 22: the per-pixel consistency regime left models/ for
# regimes/, so that models never import regimes).
MOVED_TARGETS = {
    "smoothcert.models.segmenters.SegmentationConsistency": (
        "smoothcert.regimes.segmentation.SegmentationConsistency"
    ),
}


def moved_target(target: str) -> str:
    """``target`` (``module.Name``) at its module's current place."""
    module, _, name = target.rpartition(".")
    target = f"{MOVED_MODULES.get(module, module)}.{name}" if module else target
    return MOVED_TARGETS.get(target, target)


def upgrade_config(group: str, node: Any) -> Any:
    """A stored config node of ``group`` as today's code reads it: retired keys dropped and every
    ``_target_`` (nested ones too) moved to its module's current place."""
    if isinstance(node, dict):
        retired = RETIRED_KEYS.get(group, ())
        return {
            key: moved_target(value) if key == "_target_" and isinstance(value, str)
            else upgrade_config("", value)
            for key, value in node.items()
            if key not in retired
        }  # fmt: skip
    if isinstance(node, list):
        return [upgrade_config("", value) for value in node]
    return node


def _restore_training_noise(
    cfg: DictConfig, meta: dict[str, Any], overrides: Sequence[str]
) -> None:
    """Gives the regime the checkpoint's training level when it differs from ``sigma`` (e.g. 0 for
    a clean classifier certified at sigma > 0), so headers and warnings state how the model was
    trained; nothing is trained by certify.py."""
    regime = cfg.get("regime")
    trained = meta.get("train_sigma")
    if trained is None or not isinstance(regime, DictConfig) or "noise" not in regime:
        return
    if _overridden(overrides, "regime"):
        return
    trained = [float(v) for v in trained] if isinstance(trained, (list, tuple)) else float(trained)
    sigma = cfg.get("sigma")
    sigma = list(sigma) if isinstance(sigma, ListConfig) else sigma
    if trained != sigma:
        target = OmegaConf.select(cfg, "noise._target_") or "smoothcert.noise.GaussianNoise"
        cfg.regime.noise = OmegaConf.create({"_target_": target, "sigma": trained})


def pop_evaluate(cfg: DictConfig) -> bool:
    """Removes certify.py's ``certify.evaluate`` from ``cfg`` (the certifier does not take it) and
    returns it: whether to run an evaluation pass over the split (logging ``test/*``) as well."""
    with open_dict(cfg):
        evaluate = cfg.certify.pop("evaluate", False)
    if not isinstance(evaluate, bool):
        raise ConfigError(f"certify.evaluate={evaluate} must be true or false")
    return evaluate
