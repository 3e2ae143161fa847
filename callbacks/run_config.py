"""Stores the run's resolved model and data configs in every checkpoint (for certify.py)."""

from __future__ import annotations

from typing import Any

from pytorch_lightning import Callback, LightningModule, Trainer
from typing_extensions import override


class RunConfigInCheckpoint(Callback):
    """Adds ``checkpoint["smoothcert"]["config"]`` = the resolved ``model``/``data``/``sigma``/
    ``noise`` configs, plain Python values only, so a checkpoint can be rebuilt and certified later
    and still loads with ``torch.load(weights_only=True)``."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config

    @override
    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint.setdefault("smoothcert", {})["config"] = self.config
