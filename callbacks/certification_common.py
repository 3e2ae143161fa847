"""What the certification callbacks share: the settings every certifier has, which examples and
which weights to certify, when to run, the metadata header, autocast and what is logged where."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

import smoothcert
from callbacks.reporting import wandb_run_dir
from smoothcert.certification import select_indices
from smoothcert.errors import ConfigError, check_count, check_sigma, require
from smoothcert.record_store import RecordStore
from smoothcert.records import Record


class CertificationCallback(Callback):
    """Base of the certification callbacks: certifies ``num_examples`` examples of ``split`` (every
    ``skip``-th) with the ``last`` weights or the ``best`` checkpoint, at the end of fitting
    (``on_train_end``) or testing (``on_test_end``, how certify.py certifies a checkpoint).

    Subclasses implement ``certify(trainer, pl_module, checkpoint)`` and call ``check_selection``
    from their ``setup`` so that a bad selection fails before training. ``summary`` holds the
    ``cert/*`` scalars of the last certification (its first value is what train.py returns).
    """

    option = ""  # its certify= option, for messages
    tasks: tuple[str, ...] = ()  # the model tasks (``pl_module.task``) it certifies
    noun = "examples"  # what the examples are called in messages

    def __init__(
        self,
        sigma: float,
        output_dir: str,
        batch_size: int,
        num_examples: int | None,
        skip: int,
        split: str,
        weights: str,
        seed: int,
        bf16: bool = False,
    ) -> None:
        super().__init__()
        self.sigma = check_sigma(sigma, "certify.sigma")
        self.batch_size = check_count(batch_size, "certify.batch_size")
        self.num_examples = (
            None if num_examples is None else check_count(num_examples, "certify.num_examples")
        )
        self.skip = check_count(skip, "certify.skip")
        require(split in ("train", "val", "test"), f"certify.split={split!r}: use train/val/test")
        require(weights in ("last", "best"), f"certify.weights={weights!r}: use last or best")
        self.split, self.weights, self.seed = split, weights, int(seed)
        self.output_dir, self.bf16 = Path(output_dir), bool(bf16)
        self.summary: dict[str, float] = {}
        self.sigmas = [self.sigma]  # every noise level certified (a subclass may certify several)

    def indices(self, trainer: Trainer) -> list[int]:
        """The dataset indices to certify; ConfigError if the split has too few examples."""
        size = len(trainer.datamodule.dataset(self.split))
        return select_indices(size, self.num_examples, self.skip, self.split, self.noun)

    def check_model(self, pl_module: LightningModule) -> None:
        """Raises a one-line ConfigError if ``pl_module``'s task is not one this certifier
        certifies (run before training: a mismatch would otherwise fail after it)."""
        check_task(self.option, self.tasks, getattr(pl_module, "task", ""))

    def check_selection(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Checks that the certifier fits the model and the example selection, and warns about
        the noise levels (``sigmas``) the model was not trained at (its ``hparams.train_sigma``:
        a number or a list)."""
        self.check_model(pl_module)
        self.indices(trainer)
        train_sigma = pl_module.hparams.get("train_sigma")
        if train_sigma is None:
            return
        trained = sigma_levels(train_sigma)
        untrained = [sigma for sigma in self.sigmas if sigma not in trained]
        if untrained:
            rank_zero_warn(
                f"certifying at sigma={_number_or_list(untrained)} a model trained at "
                f"sigma={_number_or_list(trained)}: certificates are valid, but usually worse "
                f"than at {'the training sigma' if len(trained) == 1 else 'a training sigma'}"
            )

    def load_weights(self, trainer: Trainer, pl_module: LightningModule) -> str:
        """Loads the best checkpoint's weights if ``weights=best``; returns what is certified."""
        if self.weights == "last":
            return "last weights of this run"
        monitored = [
            c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor
        ]
        path = monitored[0].best_model_path if monitored else ""
        if not path:
            raise ConfigError("certify.weights=best needs a ModelCheckpoint with a monitor")
        state = torch.load(path, map_location=pl_module.device, weights_only=False)
        pl_module.load_state_dict(state["state_dict"])
        return path

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.certify(trainer, pl_module, self.load_weights(trainer, pl_module))

    @override
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # certify.py: trainer.test(ckpt_path=...) has restored the checkpoint's weights.
        self.certify(trainer, pl_module, str(trainer.ckpt_path or "weights given to trainer.test"))

    def certify(self, trainer: Trainer, pl_module: LightningModule, checkpoint: str) -> None:
        """Certifies the selected examples with ``pl_module``'s current weights (``checkpoint``
        says which, for the records) and writes and logs the results."""
        raise NotImplementedError

    def header(
        self,
        pl_module: LightningModule,
        checkpoint: str,
        certifier: str,
        settings: Mapping[str, object],
        model_keys: Iterable[str] = (),
    ) -> dict[str, object]:
        """The ``#`` metadata of a record file: version, certifier, sigma (and the training sigma),
        the certifier's ``settings``, the example selection, the dataset, the hyperparameters
        ``model_keys`` of the model, the checkpoint and the model's input normalization."""
        h = pl_module.hparams
        return {
            "smoothcert": smoothcert.__version__,
            "certifier": certifier,
            "sigma": self.sigma,
            "train_sigma": h.get("train_sigma"),
            **settings,
            "seed": self.seed,
            "split": self.split,
            "skip": self.skip,
            "num_examples": self.num_examples,
            "dataset": h.get("dataset"),
            **{key: h.get(key) for key in model_keys},
            "checkpoint": checkpoint,
            "normalization": f"mean={list(h.get('mean', []))} std={list(h.get('std', []))}",
        }

    def autocast(self, device: torch.device):
        """bfloat16 autocast of the forward passes if ``bf16`` (a no-op otherwise)."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)


# The certifier that fits each model task, for messages.
CERTIFIER_FOR_TASK = {
    "classification": "cohen",
    "denoised_classification": "cohen",
    "segmentation": "segcertify (or center)",
    "reconstruction": "center",
    "box_regression": "center",
}


def check_task(option: str, tasks: Sequence[str], task: str) -> None:
    """One-line ConfigError unless a ``certify=option`` certifier (of ``tasks``) fits ``task``."""
    if tasks and task not in tasks:
        suggestion = CERTIFIER_FOR_TASK.get(task)
        fix = f"use certify={suggestion}" if suggestion else "choose a certifier for it"
        raise ConfigError(
            f"certify={option} certifies {' or '.join(tasks)} models, but the model is a "
            f"{task or 'custom'} model: {fix}, or certify=none to train without certifying"
        )


def sigma_levels(value: float | Iterable[float]) -> list[float]:
    """A noise level or several (a number or a list, e.g. a model's ``train_sigma``) as floats."""
    return [float(value)] if isinstance(value, (int, float, str)) else [float(v) for v in value]


def _number_or_list(values: Sequence[float]) -> float | list[float]:
    return values[0] if len(values) == 1 else list(values)


def check_records(stores: Iterable[RecordStore], resume: bool) -> None:
    """In ``setup``: with ``resume``, checks the settings of the rows already written; without,
    refuses to overwrite existing record files (one-line ConfigErrors)."""
    for store in stores:
        store.existing() if resume else store.check_fresh()


def previous_records(
    trainer: Trainer, stores: Sequence[RecordStore], resume: bool
) -> list[list[Record]]:
    """The finished records of each store (none without ``resume``), read on every rank; rank 0
    then folds each store's files (a crashed run's shards included) into its merged file."""
    previous = [store.existing() if resume else [] for store in stores]
    trainer.strategy.barrier("certification_read")
    if trainer.global_rank == 0:
        for store, records in zip(stores, previous, strict=True):
            if records:
                store.merge(records)
    trainer.strategy.barrier("certification_merged")
    return previous


def log_images(trainer: Trainer, key: str, paths: Sequence[Path]) -> None:
    """Logs the PNG files ``paths`` under ``key`` to every wandb logger (call on rank 0)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and paths:
            import wandb

            images = [wandb.Image(str(p), caption=p.stem) for p in paths]
            logger.experiment.log({key: images, "trainer/global_step": trainer.global_step})


def log_locations(trainer: Trainer, records: str, curves: Sequence[Mapping[str, Path]]) -> None:
    """Says (rank 0) where the records, the curves and the wandb run are."""
    rank_zero_info(f"records: {records}")
    for paths in curves:
        rank_zero_info(f"curve:   {paths['tsv']} and {paths['png']}")
    run_dir = wandb_run_dir(trainer)
    if run_dir:
        rank_zero_info(f"wandb:   {run_dir} (offline runs upload with `wandb sync {run_dir}`)")
