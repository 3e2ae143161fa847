"""LightningModule for denoised smoothing: train a denoiser D in front of a frozen classifier f.

Salman et al. (2020), "Denoised Smoothing" / "Black-box Smoothing". The classifier is a checkpoint
written by ``train.py`` (``classifier_ckpt``); it is frozen (no gradients to its weights, eval mode
forever), so its parameters and BatchNorm statistics stay bit-identical. ``.model`` is the
composition ``f(D(x))``, which the Cohen certification callback smooths like any base classifier.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from lightning_modules.base import SmoothcertModule, clean_and_noisy_accuracy, per_stage
from smoothcert.errors import ConfigError, require
from smoothcert.models.denoisers import (
    DenoisedClassifier,
    FrozenClassifier,
    denoiser_loss_terms,
    load_classifier,
    load_denoiser,
)
from smoothcert.noise import Noise
from smoothcert.regimes import check_weight

OBJECTIVES = ("mse", "stability", "mse+stability")
ACCESS_MODES = ("full", "query")
# Modules and factories stay out of hparams, so checkpoints load with torch.load(weights_only=True).
NOT_HYPERPARAMETERS = [
    "denoiser",
    "classifier_net",
    "surrogate_net",
    "noise",
    "optimizer",
    "scheduler",
]


class DenoiserModule(SmoothcertModule):
    """Trains ``D`` so that ``f(D(x + delta))`` is accurate; ``f`` never changes.

    Objectives (``delta ~ N(0, sigma^2 I)``; no labels are used, as in the paper):
    ``mse`` = ||D(x + delta) - x||^2 (mean); ``stability`` = CE(f(D(x + delta)), argmax f(x));
    ``mse+stability`` = mse + ``stability_weight`` * stability (one joint loss). The paper's
    "Stab+MSE" denoisers are MSE-trained denoisers fine-tuned with the stability loss: train with
    ``mse``, then with ``stability`` and ``denoiser_init_ckpt`` = the first run's checkpoint
    (D starts from its weights; nothing else is read from it). Access modes:
    ``full``: the stability loss back-propagates through the frozen target classifier;
    ``query``: it uses a frozen surrogate classifier (``surrogate_ckpt``) instead, so the target is
    only ever evaluated, never differentiated.

    Logs ``train/loss`` (and its terms), ``val/loss``, ``val/mse``, ``val/acc`` (f(D(x)) on clean
    inputs) and ``val/acc_noisy`` (f(D(x + delta))). The frozen classifier (and surrogate) are in
    the state dict, so checkpoints certify without re-reading ``classifier_ckpt`` weights.

    Raises:
        ConfigError: one line, when constructed, for an unknown objective or access mode, sigma <=
            0, a negative stability weight, or a missing/unreadable/incompatible checkpoint.
    """

    task = "denoised_classification"
    output_kind = "class_logits"
    evaluation_metrics = ("loss", "mse", "acc", "acc_noisy")

    def __init__(
        self,
        denoiser: nn.Module,
        classifier_net: nn.Module,
        noise: Noise,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_classes: int,
        channels: int,
        classifier_ckpt: str | None = None,
        objective: str = "mse",
        access: str = "full",
        surrogate_ckpt: str | None = None,
        surrogate_net: nn.Module | None = None,
        stability_weight: float = 1.0,
        denoiser_init_ckpt: str | None = None,
        scheduler: Callable[..., Any] | None = None,
        dataset: str = "",
    ) -> None:
        super().__init__()
        require(objective in OBJECTIVES, f"model.objective={objective!r}: use one of {OBJECTIVES}")
        require(access in ACCESS_MODES, f"model.access={access!r}: use full or query")
        require(
            min(noise.levels) > 0,
            f"sigma={noise.sigma}: a denoiser learns to remove noise, so it trains at sigma > 0",
        )
        stability_weight = check_weight(stability_weight, "model.stability_weight")
        needs_surrogate = access == "query" and "stability" in objective
        surrogate_net = copy.deepcopy(surrogate_net or classifier_net) if needs_surrogate else None
        fit = {"num_classes": num_classes, "channels": channels, "dataset": dataset}
        classifier, meta = load_classifier(
            classifier_ckpt, classifier_net, "classifier_ckpt", **fit
        )
        if denoiser_init_ckpt:
            load_denoiser(denoiser_init_ckpt, denoiser, "model.denoiser_init_ckpt")
        surrogate = None
        if needs_surrogate:
            surrogate, _ = load_classifier(surrogate_ckpt, surrogate_net, "surrogate_ckpt", **fit)
        self.save_hyperparameters(ignore=NOT_HYPERPARAMETERS)
        # The certification callback reads the normalization from hparams: the classifier's own.
        self.hparams.update(mean=list(meta["normalization"]["mean"]))
        self.hparams.update(std=list(meta["normalization"]["std"]))
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.model = DenoisedClassifier(denoiser, FrozenClassifier(classifier))
        self.surrogate = FrozenClassifier(surrogate) if surrogate is not None else None
        self.noise = noise
        self.eval_metrics = per_stage(lambda: clean_and_noisy_accuracy(num_classes))

    def objective_terms(self, x: Tensor, denoised: Tensor) -> dict[str, Tensor]:
        """The configured loss terms for clean ``x`` and ``denoised = D(x + delta)``: the stability
        term uses the target classifier (full access) or the surrogate (query access)."""
        classifier = self.surrogate if self.surrogate is not None else self.model.classifier
        h = self.hparams
        return denoiser_loss_terms(classifier, x, denoised, h.objective, h.stability_weight)

    def check_first_batch(self, batch: tuple[Tensor, Tensor]) -> None:
        x = batch[0]
        try:
            with torch.no_grad():
                outputs = self.model.classifier(x[:1])
        except RuntimeError as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(
                f"classifier_ckpt does not accept {tuple(x.shape[1:])} inputs ({message})"
            ) from None
        require(
            outputs.shape[-1] == self.hparams.num_classes,
            f"classifier_ckpt gives {outputs.shape[-1]} outputs, expected "
            f"{self.hparams.num_classes} classes",
        )

    @override
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, _ = batch  # labels are not used: the denoiser learns from f's own predictions
        terms = self.objective_terms(x, self.model.denoiser(self.noise(x)))
        for name, value in terms.items():
            key = "train/loss" if name == "loss" else f"train/{name}"
            self.log(key, value, on_step=False, on_epoch=True, prog_bar=name == "loss")
        return terms["loss"]

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        denoised = self.model.denoiser(self.noise(x))
        terms = self.objective_terms(x, denoised)
        accuracy, noisy_accuracy = self.eval_metrics[stage]
        accuracy(self.model(x), y)
        noisy_accuracy(self.model.classifier(denoised), y)
        self.log(f"{stage}/loss", terms["loss"], sync_dist=True)
        self.log(f"{stage}/mse", F.mse_loss(denoised, x), sync_dist=True)
        self.log(f"{stage}/acc", accuracy, prog_bar=True)
        self.log(f"{stage}/acc_noisy", noisy_accuracy, prog_bar=True)

    def trained_parameters(self) -> Iterator[nn.Parameter]:
        return self.model.denoiser.parameters()  # the classifier stays frozen

    def contract_fields(self) -> dict[str, Any]:
        return {"num_classes": int(self.hparams.num_classes)}

    def checkpoint_fields(self) -> dict[str, Any]:
        h = self.hparams
        return {
            "num_classes": int(h.num_classes),
            "classifier_ckpt": str(h.classifier_ckpt),
            "objective": h.objective,
            "access": h.access,
        }
