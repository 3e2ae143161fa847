"""Train a base model and certify it at the end of fitting.

python train.py                                  # digits, sigma 0.25, Cohen CERTIFY
python train.py +experiment=cifar10_cohen        # an experiment from conf/experiment/
python train.py -m sigma=0.12,0.25,0.5           # one job per sigma
python train.py trainer.devices=2 trainer.strategy=ddp
python train.py hydra.run.dir=RUN ckpt_path=last  # resume RUN in place (+ its overrides)
"""

from __future__ import annotations

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_info

from callbacks.certification import CertificationCallback
from lightning_modules.run.quiet import quiet_known_noise
from lightning_modules.run.resume import resume_checkpoint
from lightning_modules.run.runner import (
    RUN_LOG,
    build_run,
    close_process_group,
    finish_wandb,
    log_to_run_file,
    one_line_config_errors,
)
from lightning_modules.run.threads import apply_threads


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the certifier's objective (for sweepers), on every rank: Cohen's average certified
    radius, SegCertify's certified mIoU, center smoothing's eps_out (lower is better); None
    without certification."""
    log_to_run_file()
    quiet_known_noise()
    try:
        with one_line_config_errors():
            apply_threads(cfg)  # before any work: torch threads for the cores left free
            pl.seed_everything(cfg.seed, workers=True)
            resume_from = resume_checkpoint(cfg)  # None: a fresh run
            run = build_run(cfg)
            if resume_from:
                rank_zero_info(f"resuming training from {resume_from}")
            run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=resume_from)
            rank_zero_info(f"run directory: {cfg.paths.output_dir}")
            for checkpoint in run.trainer.checkpoint_callbacks:
                if getattr(checkpoint, "best_model_path", ""):
                    rank_zero_info(f"checkpoint: {checkpoint.best_model_path}")
            for callback in run.callbacks:
                if isinstance(callback, CertificationCallback) and callback.summary:
                    value = callback.objective_value()
                    trainer, mode = run.trainer, callback.objective_mode
                    where = f"; rank {trainer.global_rank} of {trainer.world_size}"
                    line = f"objective: {callback.objective}={value} ({mode}"
                    line += f"{where if trainer.world_size > 1 else ''})"
                    print(line, flush=True)  # every rank returns it (sweepers read it there)
                    RUN_LOG.info(line)
                    return value
            return None
    finally:
        finish_wandb()
        close_process_group()


if __name__ == "__main__":
    main()
