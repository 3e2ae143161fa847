"""Builds a run from a composed Hydra config; shared by train.py and certify.py."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import Callback, LightningDataModule, LightningModule, Trainer
from pytorch_lightning.loggers import Logger

from smoothcert.errors import ConfigError


@dataclass
class Run:
    datamodule: LightningDataModule
    module: LightningModule
    trainer: Trainer
    callbacks: list[Callback]
    loggers: list[Logger]


def instantiate_group(node: DictConfig | None) -> list[Any]:
    """Instantiates a node with a ``_target_``, or each such entry of a ``name: config`` mapping.

    Entries without a target (e.g. settings a debug config left on a disabled group) are skipped.
    """
    if not isinstance(node, DictConfig):
        return []
    if "_target_" in node:
        return [hydra.utils.instantiate(node)]
    return [
        hydra.utils.instantiate(v)
        for v in node.values()
        if isinstance(v, DictConfig) and "_target_" in v
    ]


def build_run(cfg: DictConfig) -> Run:
    """Instantiates data, model, callbacks (certification last), loggers and the trainer.

    Every check of the settings runs here, before any data is loaded for training.
    """
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="object")
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    callbacks = instantiate_group(cfg.get("callbacks")) + instantiate_group(cfg.get("certify"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(resolved)
    return Run(datamodule, module, trainer, callbacks, loggers)


def config_error_in(error: BaseException) -> ConfigError | None:
    """The ConfigError behind ``error`` (Hydra wraps errors raised while instantiating)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ConfigError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def one_line_config_errors() -> Iterator[None]:
    """Turns a ConfigError (possibly wrapped by Hydra) into one line on stderr and exit status 2."""
    try:
        yield
    except Exception as error:
        config_error = config_error_in(error)
        if config_error is None:
            raise
        print(f"smoothcert: error: {config_error}", file=sys.stderr)
        raise SystemExit(2) from None


def finish_wandb() -> None:
    """Closes the wandb run, if wandb was used, so its files are complete."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()
