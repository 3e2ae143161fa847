"""LightningModule for semantic segmentation with a pluggable, per-pixel training objective."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
from typing_extensions import override

from lightning_modules.base import RegimeModel, SmoothcertModule, Trailing
from smoothcert.data.segmentation import check_label_map
from smoothcert.errors import ConfigError
from smoothcert.models.segmenters import IGNORE, NormalizedSegmenter, ScaledInference, check_scales


@dataclass
class Inference:
    """The label of unlabelled pixels, and the scale(s) and flip of evaluation."""

    ignore_index: int = 255
    scale: float | Sequence[float] = 1.0
    flip: bool = False


class SegmentationModule(SmoothcertModule):
    """Trains ``normalize -> net`` (logits ``[B, K, H, W]``) with ``objective(model, x, y)``.

    The objective sees targets whose ignored pixels are -100 (F.cross_entropy's default), so the
    classification regimes (``regime=gaussian``) are per-pixel cross-entropy averaged over the
    pixels that are not ignored. Training runs at the data's resolution; validation and testing
    run at ``scale`` (one scale or a list, plus mirrored views if ``flip``) with logits upsampled
    to full resolution, and log ``val/loss``, ``val/pixel_acc``, ``val/miou`` (torchmetrics,
    ignored pixels excluded) and ``val/pixel_acc_noisy`` (inputs with the smoothing noise).
    Checkpoints carry the task, training sigma, normalization, class count and dataset under
    ``checkpoint["smoothcert"]``. ``structured_output`` (label maps) is the base function of
    center smoothing.
    """

    task = "segmentation"
    evaluation_metrics = ("loss", "pixel_acc", "miou", "pixel_acc_noisy")
    output_kind = "label_map"
    settings = (RegimeModel, Inference, Trailing)

    @override
    def plain_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        plain = super().plain_settings(settings)
        scales = check_scales(settings["scale"], "model.scale")
        plain["scale"] = scales[0] if len(scales) == 1 else list(scales)
        return plain

    @override
    def build_model(self, settings: dict[str, Any]) -> nn.Module:
        return NormalizedSegmenter(settings["net"], settings["mean"], settings["std"])

    @override
    def new_metrics(self, settings: dict[str, Any]) -> nn.Module:
        num_classes, ignore_index = settings["num_classes"], settings["ignore_index"]
        metrics = {
            "pixel_acc": lambda: MulticlassAccuracy(
                num_classes, average="micro", ignore_index=ignore_index
            ),
            "miou": lambda: MulticlassJaccardIndex(
                num_classes, average="macro", ignore_index=ignore_index
            ),
            "pixel_acc_noisy": lambda: MulticlassAccuracy(
                num_classes, average="micro", ignore_index=ignore_index
            ),
        }
        return nn.ModuleDict({name: make() for name, make in metrics.items()})

    def inference_model(
        self, scale: float | Sequence[float] | None = None, flip: bool | None = None
    ) -> nn.Module:
        """The base model f used for evaluation and certification: [0, 1] pixels -> full-resolution
        logits at ``scale`` (default: the module's). Shares this module's weights."""
        scale = self.hparams.scale if scale is None else scale
        flip = self.hparams.flip if flip is None else flip
        return ScaledInference(self.model, scale, flip)

    @override
    def forward(self, x: Tensor) -> Tensor:
        return self.inference_model()(x)

    def base_function(self) -> nn.Module:
        """What SegCertify smooths: full-resolution logits at the module's scale."""
        return self.inference_model()

    def structured_output(self, x: Tensor) -> Tensor:
        """The base function f of center smoothing: label maps ``[B, H, W]`` (int64 in
        0..num_classes-1) at full resolution, the argmax of ``inference_model()`` (the module's
        scale and flip) on images ``[B, C, H, W]`` (noisy ones lie outside [0, 1])."""
        return self.inference_model()(x).argmax(dim=1)

    def _targets(self, y: Tensor) -> Tensor:
        return y.masked_fill(y == self.hparams.ignore_index, IGNORE)

    @override
    def on_train_epoch_start(self) -> None:
        self.objective.on_epoch_start(self.current_epoch)

    def check_first_batch(self, batch: tuple[Tensor, Tensor]) -> None:
        check_label_map(batch[1], self.hparams.num_classes, self.hparams.ignore_index)

    def training_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return self.objective(self.model, x, self._targets(y))

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        model = self.inference_model()
        logits = model(x)
        metrics = self.eval_metrics[stage]
        metrics["pixel_acc"](logits, y)
        metrics["miou"](logits, y)
        metrics["pixel_acc_noisy"](model(self.noise(x)), y)
        loss = nn.functional.cross_entropy(logits, self._targets(y), ignore_index=IGNORE)
        self.log(f"{stage}/loss", loss, sync_dist=True)
        self.log_metrics(stage, metrics, quiet="pixel_acc_noisy")

    def contract_fields(self) -> dict[str, Any]:
        return {
            "num_classes": int(self.hparams.num_classes),
            "structured_output": self.structured_output,
            "logits_at": self.inference_model,
            "ignore_index": int(self.hparams.ignore_index),
        }

    def checkpoint_fields(self) -> dict[str, Any]:
        h = self.hparams
        return {"num_classes": int(h.num_classes), "ignore_index": int(h.ignore_index)}


class PointSegmentationModule(SegmentationModule):
    """Part segmentation of point clouds: ``net`` maps clouds ``[B, C, N]`` (xyz, normals, a
    category code; normalized to the unit ball by the data) to part logits ``[B, K, N]``, and is
    the base function as it is: there is no per-channel normalization layer (``mean`` 0 and
    ``std`` 1 are recorded) and no scale or flip (``scale`` must be 1). Training noise goes
    through the regime's perturbation (``perturbation=xyz``: coordinates only); so does
    ``val/pixel_acc_noisy`` (the per-point accuracy on noisy clouds). Everything else (metrics
    over points, checkpoints, the contract that SegCertify reads) is ``SegmentationModule``'s."""

    @override
    def plain_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        plain = super().plain_settings(settings)
        if plain["scale"] != 1.0 or settings["flip"]:
            raise ConfigError("model.scale and model.flip: point clouds have no scale; use 1.0")
        return plain

    @override
    def build_model(self, settings: dict[str, Any]) -> nn.Module:
        return settings["net"]

    @override
    def inference_model(
        self, scale: float | Sequence[float] | None = None, flip: bool | None = None
    ) -> nn.Module:
        """The base model: the net itself (``scale`` 1 and no ``flip`` only)."""
        if (scale is not None and check_scales(scale) != (1.0,)) or flip:
            raise ConfigError("certify.scale and certify.flip: point clouds have no scale; use 1")
        return self.model

    def noisy(self, x: Tensor) -> Tensor:
        """One draw of the training distribution per cloud (the regime's perturbation)."""
        augment = getattr(self.objective, "augment", None)
        return augment(x) if augment is not None else self.noise(x)

    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0 and self.current_epoch == 0:  # the unit ball, not [0, 1]
            reach = float(batch[0][:, :3].norm(dim=1).max())
            if reach > 1 + 1e-4:
                raise ConfigError(f"training clouds reach norm {reach:.4g} > 1: normalize them")
            self.check_first_batch(batch)

    @override
    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        logits = self.model(x)
        metrics = self.eval_metrics[stage]
        metrics["pixel_acc"](logits, y)
        metrics["miou"](logits, y)
        metrics["pixel_acc_noisy"](self.model(self.noisy(x)), y)
        loss = nn.functional.cross_entropy(logits, self._targets(y), ignore_index=IGNORE)
        self.log(f"{stage}/loss", loss, sync_dist=True)
        self.log_metrics(stage, metrics, quiet="pixel_acc_noisy")
