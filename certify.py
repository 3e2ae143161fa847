"""Certify an existing checkpoint with the same certification callback as the end of training.

    python certify.py ckpt_path=outputs/train/runs/<date>/checkpoints/last.ckpt
    python certify.py ckpt_path=... certify.n=100000 trainer.devices=2 trainer.strategy=ddp
    python certify.py ckpt_path=RUN/checkpoints/last.ckpt hydra.run.dir=RUN certify.resume=true
    python certify.py ckpt_path=... certify.evaluate=true   # evaluate the split too (test/*)

The model and data configs and sigma come from the checkpoint unless overridden on the command line;
so does the certifier (a segmentation checkpoint gets certify=segcertify) unless one is chosen.

Weights not written by train.py (a state dict, a TorchScript archive, a checkpoint of Cohen et al.'s
code) are certified on the architecture that model= names; inputs are always pixels in [0, 1]:

    python certify.py weights=checkpoint.pth.tar model=cifar_resnet110 data=cifar10
    python certify.py weights=net.pt model=timm model.net.model_name=resnet18 data=cifar10
"""

from __future__ import annotations

import sys

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from pytorch_lightning.utilities import rank_zero_info

from lightning_modules.run.checkpoints import (
    apply_checkpoint,
    certifier_for_checkpoint,
    load_external_weights,
    read_certify_source,
)
from lightning_modules.run.quiet import quiet_known_noise
from lightning_modules.run.runner import (
    build_run,
    close_process_group,
    finish_wandb,
    log_to_run_file,
    one_line_config_errors,
)
from lightning_modules.run.threads import apply_threads


@hydra.main(version_base="1.3", config_path="conf", config_name="certify_checkpoint")
def main(cfg: DictConfig) -> None:
    log_to_run_file()
    quiet_known_noise(certifying=True)
    try:
        with one_line_config_errors():
            apply_threads(cfg)  # before any work: torch threads for the cores left free
            meta, weights = read_certify_source(cfg)
            apply_checkpoint(cfg, meta, HydraConfig.get().overrides.task)
            if cfg.certify.get("evaluate") is False:  # no evaluation: no empty "Testing" bar
                with open_dict(cfg):
                    cfg.trainer.enable_progress_bar = False  # (certifying has its own)
            pl.seed_everything(cfg.seed, workers=True)
            # weights=: the file's weights go into the model before any logger starts.
            load = None if weights is None else lambda m: load_external_weights(m, weights)
            run = build_run(cfg, fitting=False, prepare_module=load)
            # Lightning's test loop restores the checkpoint and sets up the processes; the
            # certification callback certifies in on_test_end (build_run has made the loop
            # evaluate nothing unless certify.evaluate=true).
            run.trainer.test(run.module, datamodule=run.datamodule, ckpt_path=cfg.ckpt_path)
            rank_zero_info(f"run directory: {cfg.paths.output_dir}")
    finally:
        finish_wandb()
        close_process_group()


if __name__ == "__main__":
    sys.argv += certifier_for_checkpoint(sys.argv[1:])  # as if typed: Hydra records it
    main()
