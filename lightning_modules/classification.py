"""LightningModule for classification with a pluggable training objective (the ``regime``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from typing_extensions import override

from lightning_modules.base import (
    RegimeModel,
    SmoothcertModule,
    Trailing,
    clean_and_noisy_accuracy,
)
from smoothcert.models import NormalizedClassifier


@dataclass
class Stem:
    """Whether the ResNet's ImageNet stem is replaced by a CIFAR one (3x3 conv, no max-pool)."""

    cifar_stem: bool = False


class ClassificationModule(SmoothcertModule):
    """Trains ``normalize -> net`` with ``objective(model, x, y)``; validates clean and under noise.

    Logs ``train/loss``, ``val/loss``, ``val/acc`` (clean) and ``val/acc_noisy`` (inputs with the
    smoothing noise), and the same under ``test/`` when tested. Checkpoints carry the training
    sigma, the normalization and the class count under ``checkpoint["smoothcert"]``.
    """

    task = "classification"
    output_kind = "class_logits"
    evaluation_metrics = ("loss", "acc", "acc_noisy")
    settings = (RegimeModel, Stem, Trailing)

    @override
    def build_model(self, settings: dict[str, Any]) -> nn.Module:
        s = settings
        return NormalizedClassifier(s["net"], s["mean"], s["std"], cifar_stem=s["cifar_stem"])

    @override
    def new_metrics(self, settings: dict[str, Any]) -> nn.Module:
        return clean_and_noisy_accuracy(settings["num_classes"])

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
