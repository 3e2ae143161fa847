"""A callback that kills its own process, for the test that resumes a killed training run (it is
imported by train.py in a subprocess, so it lives outside the test module)."""

from __future__ import annotations

import os
import signal

from pytorch_lightning import Callback, LightningModule, Trainer


class KillAtEpoch(Callback):
    """SIGKILLs the process when epoch ``epoch`` starts (after the previous epoch's checkpoints
    are written): no cleanup, no exception handler, as when a job is killed."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
