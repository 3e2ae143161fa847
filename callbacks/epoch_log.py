"""One log line per epoch with its metrics, so ``train.log`` tells how training went."""

from __future__ import annotations

from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info
from typing_extensions import override


class EpochLog(Callback):
    """At the end of each training epoch (after its validation), logs ``epoch N: key=value ...``
    with every ``train/*`` and ``val/*`` metric, through Lightning's logger (console and run log).
    """

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = {
            key: float(value)
            for key, value in sorted(trainer.callback_metrics.items())
            if key.startswith(("train/", "val/")) and value.numel() == 1
        }
        if metrics:
            shown = " ".join(f"{key}={value:.4g}" for key, value in metrics.items())
            rank_zero_info(f"epoch {trainer.current_epoch}: {shown}")
