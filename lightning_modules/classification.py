"""LightningModule for classification with a pluggable training objective (the ``regime``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from typing_extensions import override

from lightning_modules.base import (
    NOT_HYPERPARAMETERS,
    SmoothcertModule,
    clean_and_noisy_accuracy,
    per_stage,
    plain_floats,
)
from smoothcert.models import NormalizedClassifier
from smoothcert.noise import Noise
from smoothcert.regimes import TrainingObjective


class ClassificationModule(SmoothcertModule):
    """Trains ``normalize -> net`` with ``objective(model, x, y)``; validates clean and under noise.

    Logs ``train/loss``, ``val/loss``, ``val/acc`` (clean) and ``val/acc_noisy`` (inputs with the
    smoothing noise), and the same under ``test/`` when tested. Checkpoints carry the training
    sigma, the normalization and the class count under ``checkpoint["smoothcert"]``.
    """

    task = "classification"
    output_kind = "class_logits"
    evaluation_metrics = ("loss", "acc", "acc_noisy")

    def __init__(
        self,
        net: nn.Module,
        objective: TrainingObjective,
        noise: Noise,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        cifar_stem: bool = False,
        scheduler: Callable[..., Any] | None = None,
        dataset: str = "",
    ) -> None:
        super().__init__()
        mean, std = plain_floats(mean), plain_floats(std)
        self.save_hyperparameters(ignore=NOT_HYPERPARAMETERS)
        model = NormalizedClassifier(net, mean, std, cifar_stem=cifar_stem)
        self.keep_parts(model, noise, optimizer, scheduler, objective)
        self.eval_metrics = per_stage(lambda: clean_and_noisy_accuracy(num_classes))

    @override
    def on_train_epoch_start(self) -> None:
        self.objective.on_epoch_start(self.current_epoch)

    def training_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return self.objective(self.model, x, y)

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        logits = self.model(x)
        accuracy, noisy_accuracy = self.eval_metrics[stage]
        accuracy(logits, y)
        augment = self.objective.contract().augment  # the regime's noise, or a transformation
        noisy_accuracy(self.model(augment(x)), y)
        self.log(f"{stage}/loss", nn.functional.cross_entropy(logits, y), sync_dist=True)
        self.log(f"{stage}/acc", accuracy, prog_bar=True)
        self.log(f"{stage}/acc_noisy", noisy_accuracy, prog_bar=True)

    def contract_fields(self) -> dict[str, Any]:
        return {"num_classes": int(self.hparams.num_classes)}

    def checkpoint_fields(self) -> dict[str, Any]:
        return {"num_classes": int(self.hparams.num_classes)}
