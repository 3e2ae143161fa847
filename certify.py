"""Certify an existing checkpoint with the same certification callback as the end of training.

    python certify.py ckpt_path=outputs/train/runs/<date>/checkpoints/last.ckpt
    python certify.py ckpt_path=... certify.n=100000 trainer.devices=2 trainer.strategy=ddp
    python certify.py ckpt_path=RUN/checkpoints/last.ckpt hydra.run.dir=RUN certify.resume=true
    python certify.py ckpt_path=... certify.evaluate=true   # evaluate the split too (test/*)

The model and data configs and sigma come from the checkpoint unless overridden on the command line.
"""

from __future__ import annotations

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from pytorch_lightning.utilities import rank_zero_info

from lightning_modules.checkpoints import apply_checkpoint, checkpoint_metadata
from lightning_modules.quiet import quiet_known_noise
from lightning_modules.runner import (
    build_run,
    finish_wandb,
    log_to_run_file,
    one_line_config_errors,
)
from lightning_modules.threads import apply_threads


@hydra.main(version_base="1.3", config_path="conf", config_name="certify_checkpoint")
def main(cfg: DictConfig) -> None:
    log_to_run_file()
    quiet_known_noise(certifying=True)
    try:
        with one_line_config_errors():
            apply_threads(cfg)  # before any work: torch threads for the cores left free
            meta = checkpoint_metadata(cfg.get("ckpt_path"))
            apply_checkpoint(cfg, meta, HydraConfig.get().overrides.task)
            if cfg.certify.get("evaluate") is False:  # no evaluation: no empty "Testing" bar
                with open_dict(cfg):
                    cfg.trainer.enable_progress_bar = False  # (certifying has its own)
            pl.seed_everything(cfg.seed, workers=True)
            run = build_run(cfg, fitting=False)
            # Lightning's test loop restores the checkpoint and sets up the processes; the
            # certification callback certifies in on_test_end (build_run has made the loop
            # evaluate nothing unless certify.evaluate=true).
            run.trainer.test(run.module, datamodule=run.datamodule, ckpt_path=cfg.ckpt_path)
            rank_zero_info(f"run directory: {cfg.paths.output_dir}")
    finally:
        finish_wandb()


if __name__ == "__main__":
    main()
