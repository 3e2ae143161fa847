"""Builds a run from a composed Hydra config; shared by train.py and certify.py."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import Callback, LightningDataModule, LightningModule, Trainer
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from callbacks.run_config import RunConfigInCheckpoint
from smoothcert.errors import ConfigError
from smoothcert.provenance import provenance


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
    """Instantiates data, model, callbacks (certification last), loggers and the trainer, and
    (rank 0) writes the resolved config and the run's provenance into the run directory.

    Every check of the settings runs here, before any data is loaded for training.
    """
    resolved = OmegaConf.to_container(cfg, resolve=True)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="object")
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    stored = {key: resolved[key] for key in ("model", "data", "sigma") if key in resolved}
    callbacks = [RunConfigInCheckpoint(stored)]
    callbacks += instantiate_group(cfg.get("callbacks")) + instantiate_group(cfg.get("certify"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if rank_zero_only.rank == 0:
        write_provenance(Path(cfg.paths.output_dir), resolved, cfg.paths.get("root_dir", "."))
    for logger in loggers:
        logger.log_hyperparams(resolved)
    return Run(datamodule, module, trainer, callbacks, loggers)


def write_provenance(output_dir: Path, resolved: dict, root_dir: str) -> None:
    """``config_resolved.yaml`` (every interpolation resolved) and ``provenance.yaml`` (versions,
    git commit, command line). A second entry point in the same directory (certify.py after
    train.py) writes ``provenance-2.yaml`` and so on: nothing already written is replaced."""
    output_dir.mkdir(parents=True, exist_ok=True)
    suffix, number = "", 1
    while (output_dir / f"provenance{suffix}.yaml").exists():
        number += 1
        suffix = f"-{number}"
    OmegaConf.save(OmegaConf.create(resolved), output_dir / f"config_resolved{suffix}.yaml")
    OmegaConf.save(OmegaConf.create(provenance(root_dir)), output_dir / f"provenance{suffix}.yaml")


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
