"""Certify an existing checkpoint with the same certification callback as the end of training.

    python certify.py ckpt_path=outputs/train/runs/.../checkpoints/last.ckpt
    python certify.py ckpt_path=... certify.n=100000 trainer.devices=2 trainer.strategy=ddp

The data and model configs are the ones composed here (pass the same overrides as for training).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_info

from lightning_modules.runner import build_run, finish_wandb, one_line_config_errors
from smoothcert.errors import ConfigError


@hydra.main(version_base="1.3", config_path="conf", config_name="certify_checkpoint")
def main(cfg: DictConfig) -> None:
    try:
        with one_line_config_errors():
            ckpt = cfg.get("ckpt_path")
            if not ckpt or not Path(ckpt).is_file():
                raise ConfigError(f"ckpt_path={ckpt} is not a checkpoint file: pass ckpt_path=PATH")
            if "_target_" not in (cfg.get("certify") or {}):
                raise ConfigError("certify=none leaves nothing to do: choose certify=cohen")
            pl.seed_everything(cfg.seed, workers=True)
            run = build_run(cfg)
            run.trainer.test(run.module, datamodule=run.datamodule, ckpt_path=ckpt)
            rank_zero_info(f"run directory: {cfg.paths.output_dir}")
    finally:
        finish_wandb()


if __name__ == "__main__":
    main()
