"""The command that resumes an interrupted certification, said when one is stopped (Ctrl-C)."""

from __future__ import annotations

import shlex
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

# Overrides the resume command sets itself (or that must not be repeated).
REPLACED = (
    "hydra.run.dir=",
    "ckpt_path=",
    "+ckpt_path=",
    "certify.resume=",
    "certify.crash_after=",
)


def run_overrides() -> list[str]:
    """The command-line overrides of the running Hydra job (a sweep job's own values included);
    empty outside Hydra."""
    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def resume_command(output_dir: Path, checkpoint: str, overrides: list[str]) -> str:
    """``python certify.py ckpt_path=... hydra.run.dir=RUN certify.resume=true`` with the run's
    other ``overrides`` (so the settings match, which resuming requires). ``checkpoint`` is the
    certified checkpoint's path, or (at the end of training) a description of the last weights,
    which the run saved as ``RUN/checkpoints/last.ckpt``."""
    path = checkpoint if checkpoint.endswith(".ckpt") else str(output_dir / "checkpoints/last.ckpt")
    kept = [o for o in overrides if not o.startswith(REPLACED)]
    words = ["python", "certify.py", f"ckpt_path={path}", f"hydra.run.dir={output_dir}"]
    return shlex.join([*words, *kept, "certify.resume=true"])


def interrupted_message(output_dir: Path, checkpoint: str, overrides: list[str]) -> str:
    """What to print when certification is interrupted: the finished rows are kept, and how to
    continue from them."""
    return (
        f"certification interrupted: finished examples are saved in {output_dir}; continue "
        f"with:\n  {resume_command(output_dir, checkpoint, overrides)}"
    )
