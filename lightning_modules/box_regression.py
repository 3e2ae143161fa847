"""LightningModule for single-box regression, the base model of center smoothing under the
Jaccard distance 1 - IoU (Kumar and Goldstein's Section 5.1, with our own small detector)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor
from typing_extensions import override

from lightning_modules.base import ImageModel, SmoothcertModule, Trailing, check_channels
from smoothcert.distances import BoxJaccardDistance
from smoothcert.errors import ConfigError, check_unit_range, require

JACCARD = BoxJaccardDistance()


def box_iou(predicted: Tensor, target: Tensor) -> Tensor:
    """IoU ``[B]`` of paired boxes ``[B, 4]`` (x1, y1, x2, y2); differentiable where the boxes
    overlap; an empty box has IoU 0 with a non-empty one and 1 with another empty one."""
    return 1.0 - JACCARD.paired(predicted.float(), target.float())


@dataclass
class BoxLoss:
    """The weight of the IoU term in the box regressor's loss."""

    iou_weight: float = 1.0


class BoxRegressionModule(SmoothcertModule):
    """Trains ``normalize -> net`` (boxes ``[B, 4]`` in normalized coordinates) on noisy inputs.

    Loss: smooth L1 between the coordinates + ``iou_weight`` * (1 - IoU), on ``x + N(0, sigma^2
    I)``. Logs ``train/loss``, ``val/loss``, ``val/iou`` (mean IoU on clean inputs) and
    ``val/iou_noisy`` (inputs with the smoothing noise), and the same under ``test/``.
    ``structured_output`` is the base function of center smoothing: boxes ``[B, 4]`` float,
    ``(x1, y1, x2, y2)`` in NORMALIZED [0, 1] image coordinates (not pixels). Checkpoints carry
    the task, training sigma, normalization and dataset under ``checkpoint["smoothcert"]``.

    Raises:
        ConfigError: one line, when constructed, for sigma < 0 or a negative ``iou_weight``; when
            fitting starts, for a network that does not output 4 numbers per image; at the first
            training step, for a batch outside [0, 1] or targets that are not boxes in [0, 1].
    """

    task = "box_regression"
    evaluation_metrics = ("loss", "iou", "iou_noisy")
    base_attribute = "structured_output"  # what center smoothing smooths
    output_kind = "box"
    settings = (ImageModel, BoxLoss, Trailing)

    @override
    def plain_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        plain = super().plain_settings(settings)
        plain["channels"] = check_channels(settings["channels"], plain["mean"])
        iou_weight = plain["iou_weight"] = float(settings["iou_weight"])
        require(iou_weight >= 0, f"model.iou_weight={iou_weight} must be >= 0")
        return plain

    def structured_output(self, x: Tensor) -> Tensor:
        """The base function f of center smoothing: boxes ``[B, 4]`` (x1, y1, x2, y2), float, in
        normalized [0, 1] image coordinates with x1 <= x2 and y1 <= y2, for images ``[B, C, H,
        W]`` (the certifier passes noisy inputs, outside [0, 1])."""
        return self.model(x).float()

    def loss_terms(self, predicted: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """(loss, IoU per box): smooth L1 over coordinates + iou_weight * mean(1 - IoU)."""
        iou = box_iou(predicted, target)
        loss = F.smooth_l1_loss(predicted, target) + self.hparams.iou_weight * (1 - iou).mean()
        return loss, iou

    @override
    def on_fit_start(self) -> None:
        # Before Lightning's sanity validation, so a wrong network fails in one line.
        shapes = self.shapes_on_first_training_example()
        if shapes is None:
            return
        shape = shapes[1]
        require(shape == (4,), f"model.net gives {shape} per image, expected 4 box coordinates")

    def check_first_batch(self, batch: tuple[Tensor, Tensor]) -> None:
        boxes = batch[1]
        if boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
            raise ConfigError(
                f"box targets must be float [B, 4] (x1, y1, x2, y2), got "
                f"{tuple(boxes.shape)} {boxes.dtype}: use data=shapes_boxes"
            )
        check_unit_range(boxes, "box targets (normalized coordinates)")

    def training_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, boxes = batch
        return self.loss_terms(self.model(self.noise(x)), boxes)[0]

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, boxes = batch
        metrics = self.eval_metrics[stage]
        loss, iou = self.loss_terms(self.model(x), boxes)
        metrics["loss"](loss, weight=len(x))
        metrics["iou"](iou)
        metrics["iou_noisy"](box_iou(self.model(self.noise(x)), boxes))
        self.log_metrics(stage, metrics, quiet="loss")

    def contract_fields(self) -> dict[str, Any]:
        return {"structured_output": self.structured_output}

    def checkpoint_fields(self) -> dict[str, Any]:
        return {
            "output_kind": self.output_kind,
            "box_format": "xyxy_normalized",
            "channels": int(self.hparams.channels),
        }
