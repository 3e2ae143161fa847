"""What each task module declares it logs (the checkpoint monitor is checked against it before
training) is what its validation really logs."""

from __future__ import annotations

import hydra
import pytest
from pytorch_lightning import Trainer

from conftest import TINY


@pytest.mark.parametrize(
    "experiment", [None, "digits_autoencoder_tv", "shapes_seg", "shapes_box_center"]
)
def test_declared_evaluation_metrics_are_the_logged_ones(make_cfg, experiment):
    cfg = make_cfg(*TINY, *([f"+experiment={experiment}"] if experiment else []))
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="object")
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    trainer = Trainer(
        accelerator="cpu",
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, datamodule=datamodule, verbose=False)
    logged = {key for key in trainer.callback_metrics if key.startswith("val/")}
    assert logged == {f"val/{name}" for name in module.evaluation_metrics}
    assert cfg.callbacks.best_checkpoint.monitor in module.monitorable()
