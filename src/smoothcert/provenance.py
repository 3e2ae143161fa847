"""What produced a run: versions, git commit, command line (written into every run directory)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = ("smoothcert", "torch", "pytorch-lightning", "hydra-core", "timm", "torchmetrics")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_state(directory: str | Path) -> dict[str, object]:
    """The commit of ``directory``'s git checkout and whether it has uncommitted changes
    (empty when it is not a git checkout or git is missing)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {}


def provenance(root_dir: str | Path) -> dict[str, object]:
    """Versions of the packages that shape results, the git state of ``root_dir``, the command."""
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": sys.version.split()[0],
        "versions": {package: _version(package) for package in PACKAGES},
        "git": git_state(root_dir),
    }
