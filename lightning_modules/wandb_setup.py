"""A WandbLogger that never prompts: offline unless the user configured wandb otherwise."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from pytorch_lightning.loggers import WandbLogger


def wandb_configured() -> bool:
    """True when the user chose a mode (WANDB_MODE) or has credentials (WANDB_API_KEY, netrc)."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def make_wandb_logger(
    save_dir: str,
    project: str = "smoothcert",
    name: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    offline: bool | None = None,
) -> WandbLogger:
    """Builds the run's WandbLogger, its files under ``save_dir`` (the Hydra run directory).

    ``offline=None`` means: offline unless wandb was configured by the user (see wandb_configured).
    """
    if offline is None:
        offline = not wandb_configured()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        name=name,
        group=group,
        tags=list(tags) if tags else None,
        offline=offline,
        log_model=False,
    )
