"""A WandbLogger that never prompts: offline unless the user configured wandb otherwise."""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.loggers import WandbLogger

from callbacks.reporting import sweep_group, wandb_configured

__all__ = ["make_wandb_logger", "sweep_group", "wandb_configured"]


def make_wandb_logger(
    save_dir: str,
    project: str = "smoothcert",
    name: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    offline: bool | None = None,
    run_mode: object = None,
    task_name: str = "train",
    sweep_dir: str | None = None,
    log_checkpoint: bool = False,
) -> WandbLogger:
    """Builds the run's WandbLogger, its files under ``save_dir`` (the Hydra run directory).

    ``offline=None`` means: offline unless wandb was configured by the user (see wandb_configured).
    ``group=None`` in a multirun (``run_mode`` MULTIRUN) means one group per sweep, named after the
    sweep directory. ``log_checkpoint`` logs the checkpoints of a successful training run (the
    last and the best) as ``model`` artifacts at its end, offline too (``wandb sync`` uploads
    them): they can be large, so it is off by default.
    """
    if offline is None:
        offline = not wandb_configured()
    if group is None and str(run_mode).endswith("MULTIRUN") and sweep_dir:
        group = sweep_group(task_name, sweep_dir)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(
        save_dir=save_dir,
        project=project,
        name=name,
        group=group,
        tags=list(tags) if tags else None,
        offline=offline,
        log_model=False,
    )
    # Lightning always passes anonymous=None, which wandb warns about as a deprecated setting.
    logger._wandb_init.pop("anonymous", None)
    # Lightning refuses log_model with offline=True, as nothing can be uploaded then; but wandb
    # keeps an offline run's artifacts and `wandb sync` uploads them. So set it after the check:
    # Lightning's WandbLogger then logs the checkpoints in ``finalize`` on success.
    logger._log_model = bool(log_checkpoint)
    return logger
