"""Builds a run from a composed Hydra config; shared by train.py and certify.py."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import Callback, LightningDataModule, LightningModule, Trainer
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from callbacks.certification.base import CertificationCallback
from callbacks.rng_state import RngStateInCheckpoint
from callbacks.run_config import RunConfigInCheckpoint
from lightning_modules.run.checkpoints import pop_evaluate
from lightning_modules.run.config_checks import check_added_keys, check_config, check_launcher
from smoothcert.errors import ConfigError, require
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


def build_run(
    cfg: DictConfig, fitting: bool = True, prepare_module: Callable[[Any], None] | None = None
) -> Run:
    """Instantiates data, model, callbacks (certification last), loggers and the trainer, and
    (rank 0) writes the resolved config and the run's provenance into the run directory.

    Every check of the settings runs here, before any data is loaded for training: the keys and
    types of every node (``check_config``), each object's own range checks as it is built, and
    how the pieces fit (``check_run``). ``fitting`` is False for certify.py, whose
    ``certify.evaluate`` says whether its test loop evaluates the split before certifying (without
    it the loop gets one empty batch: nothing is evaluated and no ``test/*`` metric is logged).
    ``prepare_module`` (certify.py's ``weights=``) gets the model as soon as it is built, so what
    it refuses is refused before any logger starts.
    """
    evaluate = None if fitting else pop_evaluate(cfg)
    choices, launcher = hydra_choices_and_launcher()
    check_config(cfg, choices)
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        check_added_keys(cfg, hydra_cfg.overrides.task, hydra_cfg.runtime.choices.keys())
    if fitting:
        check_launcher(launcher, cfg.trainer)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="object")
    if callable(getattr(datamodule, "check_settings", None)):
        datamodule.check_settings()
    check_model_classes(cfg, datamodule, choices)
    if evaluate is not None:
        datamodule.evaluate_test = evaluate
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    if prepare_module is not None:
        prepare_module(module)
    saved = ("model", "data", "sigma", "noise")
    stored = {key: resolved[key] for key in saved if key in resolved}
    callbacks: list[Callback] = [RunConfigInCheckpoint(stored)]
    if fitting:  # so that train.py ckpt_path=... resumes the same random stream
        callbacks.append(RngStateInCheckpoint())
    callbacks += instantiate_group(cfg.get("callbacks")) + instantiate_group(cfg.get("certify"))
    # attack= after certify=: it attacks what was certified (callbacks run in this order).
    callbacks += instantiate_group(cfg.get("attack"))
    check_run(cfg, module, callbacks, choices, fitting)
    loggers = instantiate_group(cfg.get("logger"))
    try:
        trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    except Exception as error:  # Lightning checks its own arguments (MisconfigurationException)
        raise ConfigError(
            f"trainer: {_first_line(error)}: fix the trainer.* setting it names"
        ) from error

    if rank_zero_only.rank == 0:
        write_provenance(Path(cfg.paths.output_dir), resolved, cfg.paths.get("root_dir", "."))
    for logger in loggers:
        logger.log_hyperparams(resolved)
    return Run(datamodule, module, trainer, callbacks, loggers)


def hydra_choices_and_launcher() -> tuple[dict[str, str], DictConfig | None]:
    """Hydra's group choices (``{"certify": "cohen", ...}``) and launcher config, if Hydra runs."""
    if not HydraConfig.initialized():
        return {}, None
    hydra_cfg = HydraConfig.get()
    choices = {str(k): str(v) for k, v in hydra_cfg.runtime.choices.items() if v is not None}
    return choices, hydra_cfg.get("launcher")


def check_run(
    cfg: DictConfig,
    module: LightningModule,
    callbacks: list[Callback],
    choices: dict[str, str],
    fitting: bool,
) -> None:
    """How the built pieces fit, before training: the certifier certifies this kind of model,
    every monitored metric is one the model logs, ``certify.weights=best`` has a monitored
    checkpoint, and a training run that certifies at its end trains at least one epoch."""
    certifiers = [c for c in callbacks if isinstance(c, CertificationCallback)]
    for certifier in certifiers:
        certifier.check_model(module)
    model = f"model={choices['model']}" if "model" in choices else type(module).__name__
    monitorable = getattr(module, "monitorable", lambda: None)()
    monitored = False
    for name, node in (cfg.get("callbacks") or {}).items():
        monitor = node.get("monitor") if isinstance(node, DictConfig) else None
        monitored = monitored or bool(monitor)
        if monitor and monitorable is not None and monitor not in monitorable:
            raise ConfigError(
                f"callbacks.{name}.monitor={monitor} is a metric {model} does not log (it logs "
                f"{', '.join(monitorable)}): set callbacks.{name}.monitor to one of them and "
                f"callbacks.{name}.mode to max or min, or use the model's experiment"
            )
    if not fitting:
        return
    check_optimizer(module, choices)
    for certifier in certifiers:
        require(
            certifier.weights != "best" or monitored,
            "certify.weights=best needs a checkpoint callback with a monitor "
            "(callbacks=default): use certify.weights=last or callbacks=default",
        )
    epochs, steps = cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps")
    if certifiers and (epochs == 0 or steps == 0):
        setting = "trainer.max_epochs=0" if epochs == 0 else "trainer.max_steps=0"
        raise ConfigError(
            f"{setting} trains nothing, and certification runs at the end of training: to "
            "certify a checkpoint use `python certify.py ckpt_path=PATH/TO/last.ckpt`, or "
            "train at least one epoch"
        )


def check_model_classes(
    cfg: DictConfig, datamodule: LightningDataModule, choices: dict[str, str]
) -> None:
    """Every ``num_classes`` in the model's settings equals the data's (the DataModule's
    ``num_classes``, else its ``hparams.num_classes``), before the model is built: a head of
    another size trains on wrong labels or fails mid-epoch with an IndexError."""
    classes = getattr(datamodule, "num_classes", None)
    if classes is None:
        classes = getattr(datamodule, "hparams", {}).get("num_classes")
    model = cfg.get("model")
    if not isinstance(classes, int) or not isinstance(model, DictConfig):
        return
    data = f"data={choices['data']}" if "data" in choices else type(datamodule).__name__

    def walk(path: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                setting = f"{path}.{key}"
                if key == "num_classes" and isinstance(value, int) and value != classes:
                    raise ConfigError(
                        f"{setting}={value} but {data} has {classes} classes: the model needs "
                        f"one output per class; set {setting}={classes} (or drop the override)"
                    )
                walk(setting, value)

    walk("model", OmegaConf.to_container(model, resolve=True))


def check_optimizer(module: LightningModule, choices: dict[str, str]) -> None:
    """Builds the model's optimizer and scheduler on a stand-in parameter, so that a setting they
    refuse (a negative learning rate, a scheduler argument of the wrong kind) fails before
    training, as one line, rather than inside Lightning's ``configure_optimizers``."""
    make_optimizer = getattr(module, "optimizer_factory", None)
    if make_optimizer is None:
        return
    try:
        optimizer = make_optimizer(params=[torch.zeros(1, requires_grad=True)])
        make_scheduler = getattr(module, "scheduler_factory", None)
        if make_scheduler is not None:
            make_scheduler(optimizer=optimizer)
    except (ValueError, TypeError) as error:
        model = f"model={choices['model']}" if "model" in choices else type(module).__name__
        raise ConfigError(
            f"{model}: its optimizer or scheduler refuses a setting ({_first_line(error)}): "
            "fix model.optimizer.* or model.scheduler.*"
        ) from error


def _first_line(error: BaseException) -> str:
    """The first line of the innermost error's message (Hydra wraps instantiation errors)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


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
        discard_wandb_run()  # a refusal may come after the logger started (callbacks' setup)
        print(f"smoothcert: error: {config_error}", file=sys.stderr)
        RUN_LOG.error(f"smoothcert: error: {config_error}")
        raise SystemExit(2) from None


RUN_LOG = logging.getLogger("smoothcert.run")  # lines for the run's log file only


def log_to_run_file() -> None:
    """Sends Lightning's and the project's log lines, and warnings, to the run's log file.

    Hydra writes the root logger to ``<run dir>/<task>.log``, but Lightning's loggers print with a
    handler of their own and do not propagate to the root: without this the file stays empty.
    The console is unchanged.
    """
    RUN_LOG.setLevel(logging.INFO)
    RUN_LOG.propagate = False
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    for name in ("pytorch_lightning", "lightning_fabric", RUN_LOG.name):
        logger = logging.getLogger(name)
        if not logger.propagate:  # what propagates reaches the root's file handler already
            for handler in files:
                if handler not in logger.handlers:
                    logger.addHandler(handler)
    logging.captureWarnings(True)


def discard_wandb_run() -> None:
    """After a refusal: closes the wandb run, if one started, without wandb's closing lines, and
    if it is an offline run that logged nothing (no history step: the refusal came before
    training, e.g. in a callback's ``setup``) deletes its folder, with the ``wandb/`` folder
    around it when nothing else is left there. A run that logged something is kept (marked
    failed, exit code 2); an online run cannot be deleted from here and is marked failed too."""
    if "wandb" not in sys.modules:
        return
    import wandb

    run = wandb.run
    if run is None:
        return
    folder = Path(run.dir).parent  # <save_dir>/wandb/offline-run-<time>-<id>
    empty = run.offline and run.step == 0 and folder.name.endswith(f"-{run.id}")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run.finish(exit_code=2)
    if not empty or not folder.is_dir():
        return
    shutil.rmtree(folder, ignore_errors=True)
    around = folder.parent
    for entry in around.iterdir():  # latest-run, debug.log, ...: links into the deleted run
        if entry.is_symlink() and not entry.exists():
            entry.unlink()
    if around.name == "wandb" and not any(around.iterdir()):
        around.rmdir()


def finish_wandb() -> None:
    """Closes the wandb run, if wandb was used, so its files are complete."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def close_process_group() -> None:
    """Ends torch.distributed's process group, if DDP started one, before the interpreter exits.
    A gloo group left open can abort a process at exit ("terminate called without an active
    exception", exit status -6) after every output was written; CI saw this once in a DDP test."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
