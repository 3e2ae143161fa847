"""``python train.py ckpt_path=...``: the checkpoint a training run resumes from, checked before
anything is built (a missing file or a finished run is one line, not a traceback mid-run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_warn

from lightning_modules.run.checkpoints import upgrade_config
from smoothcert.errors import ConfigError, require

LAST = "last"


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint file ``trainer.fit`` resumes from: None for a fresh run (``ckpt_path``
    unset), the run's own ``<run dir>/checkpoints/last.ckpt`` for ``ckpt_path=last`` (the run
    directory is ``hydra.run.dir``: give the directory of the run to continue), else the path.

    Raises ConfigError unless the file exists, holds Lightning's training state, and has fewer
    epochs than ``trainer.max_epochs`` (otherwise nothing would be trained or certified)."""
    value = cfg.get("ckpt_path")
    if value is None:
        return None
    run_dir = Path(cfg.paths.output_dir)
    if str(value) == LAST:
        path = run_dir / "checkpoints" / "last.ckpt"
        require(
            path.is_file(),
            f"ckpt_path=last: this run's directory {run_dir} has no checkpoints/last.ckpt: "
            "continue a run in its own directory with hydra.run.dir=RUN ckpt_path=last, or give "
            "ckpt_path=RUN/checkpoints/last.ckpt",
        )
    else:
        path = Path(str(value))
        require(
            path.is_file(),
            f"ckpt_path={value} is not a file: give a checkpoint train.py wrote "
            "(RUN/checkpoints/last.ckpt), or hydra.run.dir=RUN ckpt_path=last",
        )
    shown = path if str(value) == LAST else value
    checkpoint = _training_state(path, shown)
    check_same_run(checkpoint, cfg, shown)
    check_epochs_left(checkpoint, cfg, shown)
    return str(path)


def _training_state(path: Path, value: Any) -> dict[str, Any]:
    try:  # mmap: only the few entries read here are loaded from disk
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"ckpt_path={value} cannot be read as a checkpoint ({first})") from error
    require(
        isinstance(checkpoint, dict) and "loops" in checkpoint and "optimizer_states" in checkpoint,
        f"ckpt_path={value} holds no training state (optimizer, epoch counters): resume from a "
        "checkpoint train.py wrote (RUN/checkpoints/last.ckpt); to certify weights use certify.py",
    )
    return checkpoint


# Settings a resumed run must share with the checkpoint's run (others, e.g. trainer.max_epochs or
# data.num_workers, may change): another value trains another model from the restored state.
SAME_RUN = ("sigma", "noise._target_", "data.name", "data.num_classes", "model._target_")
SAME_RUN_NODES = ("model.net", "model.objective")  # every setting inside (objective: the regime)


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}"))
        return out
    return {prefix: value}


def _settings(config: DictConfig) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in (*SAME_RUN, *SAME_RUN_NODES):
        value = OmegaConf.select(config, key)
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if value is not None:
            found.update(_flat(value, key))
    return found


def check_same_run(checkpoint: dict[str, Any], cfg: DictConfig, value: Any) -> None:
    """Refuses a resume whose model, data or noise differ from those the checkpoint stores (the
    command line must repeat the original run's overrides, e.g. its ``+experiment=...``). The
    stored ``_target_`` paths are compared at their modules' current places (``upgrade_config``)."""
    stored = (checkpoint.get("smoothcert") or {}).get("config")
    if not isinstance(stored, dict):
        return
    stored_cfg = OmegaConf.create({key: upgrade_config(key, node) for key, node in stored.items()})
    warn_scheduler_kept(stored_cfg, cfg, value)
    was, now = _settings(stored_cfg), _settings(cfg)
    for key in [*was, *(key for key in now if key not in was)]:  # sigma first
        if was.get(key) != now.get(key):
            raise ConfigError(
                f"ckpt_path={value} was trained with {key}={was.get(key)}, this run has "
                f"{key}={now.get(key)}: repeat the original command's overrides (provenance.yaml "
                "in its run directory) when resuming"
            )


def warn_scheduler_kept(stored: DictConfig, cfg: DictConfig, value: Any) -> None:
    """Lightning restores the scheduler's state, its settings included (e.g. a cosine schedule's
    ``T_max``, which follows ``trainer.max_epochs``): a changed ``model.scheduler`` setting has no
    effect on a resumed run, so say so."""
    was_node = OmegaConf.select(stored, "model.scheduler")
    now_node = OmegaConf.select(cfg, "model.scheduler")
    if not isinstance(was_node, DictConfig) or not isinstance(now_node, DictConfig):
        return
    before = _flat(OmegaConf.to_container(was_node, resolve=True), "model.scheduler")
    after = _flat(OmegaConf.to_container(now_node, resolve=True), "model.scheduler")
    for key, old in before.items():
        if key in after and after[key] != old:
            rank_zero_warn(
                f"ckpt_path={value}: the scheduler resumes with its saved state, {key}={old}; "
                f"this run's {key}={after[key]} does not apply"
            )
            return


def epochs_done(checkpoint: dict[str, Any]) -> int:
    """Epochs the checkpoint has completed (Lightning's fit loop counter)."""
    progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]
    return int(progress["completed"])


def check_epochs_left(checkpoint: dict[str, Any], cfg: DictConfig, value: Any) -> None:
    """Refuses a resume that would train nothing: ``trainer.max_epochs`` already reached."""
    done, limit = epochs_done(checkpoint), cfg.trainer.get("max_epochs")
    if limit is not None and limit >= 0 and done >= limit:
        raise ConfigError(
            f"ckpt_path={value} has trained {done} epochs and trainer.max_epochs={limit}: nothing "
            f"is left to train; raise it (e.g. trainer.max_epochs={done + 10}), or certify the "
            f"checkpoint with python certify.py ckpt_path={value}"
        )
