"""LightningModule for detection on the shapes images: the base model of median smoothing, whose
detections become a fixed-length vector (Chiang et al.'s detection as regression)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor
from typing_extensions import override

from lightning_modules.base import ImageModel, SmoothcertModule, Trailing
from lightning_modules.box_regression import box_iou
from smoothcert.certifiers.median_detection import DetectionLayout
from smoothcert.data.detection import target_boxes
from smoothcert.errors import ConfigError, check_count, require
from smoothcert.metrics.detection import average_precision
from smoothcert.models.detector import decode, detection_loss


@dataclass
class Detections:
    """The detector's labels, its score threshold, and the layout of its detections as a vector
    (``DetectionLayout``: a ``location_grid`` lattice of bins of ``bin_capacity`` slots)."""

    num_labels: int = 4
    score_threshold: float = 0.5
    location_grid: int = 3
    bin_capacity: int = 2


class DetectionModule(SmoothcertModule):
    """Trains ``normalize -> net`` (a ``GridDetector``) on noisy inputs; logs ``train/loss``,
    ``val/loss``, ``val/ap50`` (AP@50 on clean inputs, per validation batch, averaged) and
    ``val/ap50_noisy``. ``structured_output`` is what median smoothing smooths: the detections
    above ``score_threshold`` as a ``[B, layout.length]`` vector (``DetectionLayout``: bins by
    label and centre cell on a ``location_grid`` lattice, ``bin_capacity`` slots each, +inf
    padding)."""

    task = "detection"
    evaluation_metrics = ("loss", "ap50", "ap50_noisy")
    base_attribute = "structured_output"
    output_kind = "detection"
    settings = (ImageModel, Detections, Trailing)

    @override
    def plain_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        plain = super().plain_settings(settings)
        plain["channels"] = check_count(settings["channels"], "model.channels")
        threshold = plain["score_threshold"] = float(settings["score_threshold"])
        require(0 < threshold < 1, f"model.score_threshold={threshold}: use (0, 1)")
        s = settings
        self.layout = DetectionLayout(s["num_labels"], s["location_grid"], s["bin_capacity"])
        return plain

    def detect(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(boxes ``[B, D, 4]``, scores ``[B, D]``, labels ``[B, D]``; 0 = no detection)."""
        return decode(self.model(x).float(), self.hparams.score_threshold)

    def structured_output(self, x: Tensor) -> Tensor:
        """The detections of images ``[B, C, H, W]`` as vectors ``[B, layout.length]``."""
        return self.layout.to_vector(*self.detect(x))

    @staticmethod
    def detections_of(boxes: Tensor, scores: Tensor, labels: Tensor) -> list[dict[str, Tensor]]:
        """Per image, the detections with a label (for ``average_precision``)."""
        kept = labels > 0
        return [
            {"boxes": b[k].cpu(), "scores": s[k].cpu(), "labels": lab[k].cpu()}
            for b, s, lab, k in zip(boxes, scores, labels, kept, strict=True)
        ]

    @staticmethod
    def truths_of(targets: Tensor) -> list[dict[str, Tensor]]:
        pairs = [target_boxes(t.cpu()) for t in targets]
        return [{"labels": labels, "boxes": boxes} for labels, boxes in pairs]

    @override
    def on_fit_start(self) -> None:
        shapes = self.shapes_on_first_training_example()
        if shapes is None:
            return
        want = (5 + self.hparams.num_labels,)
        require(
            isinstance(shapes[1], tuple) and shapes[1][:1] == want,
            f"model.net gives {shapes[1]} per image, expected {want[0]} channels per cell",
        )

    def check_first_batch(self, batch: tuple[Tensor, Tensor]) -> None:
        targets = batch[1]
        if targets.dim() != 3 or targets.shape[2] != 5:
            raise ConfigError(
                f"detection targets must be [B, T, 5] (label, x1, y1, x2, y2), got "
                f"{tuple(targets.shape)}: use data=shapes_detection"
            )

    def training_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, targets = batch
        return detection_loss(self.model(self.noise(x)), targets, box_iou)

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, targets = batch
        metrics = self.eval_metrics[stage]
        metrics["loss"](detection_loss(self.model(x), targets, box_iou), weight=len(x))
        truths = self.truths_of(targets)
        for name, inputs in (("ap50", x), ("ap50_noisy", self.noise(x))):
            metrics[name](average_precision(self.detections_of(*self.detect(inputs)), truths))
        self.log_metrics(stage, metrics, quiet="loss")

    def contract_fields(self) -> dict[str, Any]:
        return {"structured_output": self.structured_output, "detection_layout": self.layout}

    def checkpoint_fields(self) -> dict[str, Any]:
        return {"output_kind": self.output_kind, "box_format": "xyxy_normalized"}
