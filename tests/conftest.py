"""Shared fixtures: the real Hydra config composed for tests (CPU, tiny, outputs in tmp_path)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small certification settings used by the end-to-end tests.
TINY = ["debug=default", "logger=none"]


def compose_config(
    overrides: list[str], output_dir: Path, config_name: str = "train"
) -> DictConfig:
    """The config train.py would see for ``overrides``, with outputs in ``output_dir``."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} interpolations resolve
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def _make(*overrides: str, config_name: str = "train") -> DictConfig:
        return compose_config(list(overrides), tmp_path, config_name)

    return _make


_current_test_is_slow = False


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Remembers whether the test about to run (and its fixtures) carries the ``slow`` marker."""
    global _current_test_is_slow
    _current_test_is_slow = item.get_closest_marker("slow") is not None


def run_script(
    script: str, *overrides: str, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Runs ``python SCRIPT overrides...`` from the repository root, never reading stdin.

    Only tests marked ``slow`` may start a subprocess, so ``pytest -m "not slow"`` stays quick.
    """
    if not _current_test_is_slow:
        raise RuntimeError(f"a test that runs {script} in a subprocess must be marked slow")
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, script, *overrides],
        cwd=ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def table_rows(path: Path, columns: tuple[str, ...] = ("idx", "predict", "radius", "correct")):
    """The rows of a certify.tsv as tuples of the named columns (strings, exact)."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    header = lines[0].split("\t")
    picks = [header.index(c) for c in columns]
    return [tuple(line.split("\t")[i] for i in picks) for line in lines[1:]]
