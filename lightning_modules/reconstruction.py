"""LightningModule for image reconstruction (an autoencoder), the base model of center smoothing
under image distances (total variation, l2) in Kumar and Goldstein's Section 5.3."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanSquaredError
from typing_extensions import override

from lightning_modules.base import ImageModel, SmoothcertModule, Trailing, check_channels
from smoothcert.errors import require


class ReconstructionModule(SmoothcertModule):
    """Trains ``normalize -> net`` to map ``x + N(0, sigma^2 I)`` back to the clean ``x``.

    The loss is the mean squared error to the clean image (labels are ignored). Logs
    ``train/loss``, ``val/mse`` (clean inputs) and ``val/mse_noisy`` (inputs with the smoothing
    noise), both torchmetrics means over every pixel of the split, and the same under ``test/``.
    ``structured_output`` is the base function of center smoothing: reconstructions
    ``[B, C, H, W]`` in [0, 1]. Checkpoints carry the task, training sigma, normalization and
    dataset under ``checkpoint["smoothcert"]``.

    Raises:
        ConfigError: one line, when constructed, for sigma < 0 or a bad channel count; when
            fitting starts, for a network whose output shape differs from its input's; at the
            first training step, for a batch outside [0, 1].
    """

    task = "reconstruction"
    evaluation_metrics = ("mse", "mse_noisy")
    base_attribute = "structured_output"  # what center smoothing smooths
    output_kind = "image"
    settings = (ImageModel, Trailing)

    @override
    def plain_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        plain = super().plain_settings(settings)
        plain["channels"] = check_channels(settings["channels"], plain["mean"])
        return plain

    @override
    def new_metrics(self, settings: dict[str, Any]) -> nn.Module:
        return nn.ModuleDict({"mse": MeanSquaredError(), "mse_noisy": MeanSquaredError()})

    def structured_output(self, x: Tensor) -> Tensor:
        """The base function f of center smoothing: reconstructions ``[B, C, H, W]`` in [0, 1]
        of a batch ``[B, C, H, W]`` (the certifier passes noisy inputs, outside [0, 1])."""
        return self.model(x)

    @override
    def on_fit_start(self) -> None:
        # Before Lightning's sanity validation, so a wrong network fails in one line.
        shapes = self.shapes_on_first_training_example()
        if shapes is None:
            return
        x_shape, shape = shapes
        require(
            shape == x_shape,
            f"model.net maps {x_shape} images to {shape}: the reconstruction must "
            "have the input's shape (check model.net.image_size and in_channels)",
        )

    def training_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, _ = batch  # labels are not used: the target is the clean image
        return F.mse_loss(self.model(self.noise(x)), x)

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, _ = batch
        metrics = self.eval_metrics[stage]
        metrics["mse"](self.model(x), x)
        metrics["mse_noisy"](self.model(self.noise(x)), x)
        self.log(f"{stage}/mse", metrics["mse"], prog_bar=True)
        self.log(f"{stage}/mse_noisy", metrics["mse_noisy"], prog_bar=True)

    def contract_fields(self) -> dict[str, Any]:
        return {"structured_output": self.structured_output}

    def checkpoint_fields(self) -> dict[str, Any]:
        return {"output_kind": self.output_kind, "channels": int(self.hparams.channels)}
