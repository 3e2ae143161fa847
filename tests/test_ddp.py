"""Certification results depend on neither the device count nor the batch size (2-process DDP)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import TINY, run_script, table_rows

# Subprocess runs of train.py / certify.py: `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow

DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
CERT = ["certify.num_examples=9", "certify.n=300"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train")
    result = run_script("train.py", *TINY, "certify=none", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "checkpoints" / "last.ckpt"


def certify(checkpoint: Path, out: Path, *overrides: str) -> list[tuple[str, ...]]:
    result = run_script(
        "certify.py", *TINY, *CERT, f"ckpt_path={checkpoint}", f"hydra.run.dir={out}", *overrides
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(out.glob("certify.rank*.tsv")), "shard files must be merged and removed"
    return table_rows(out / "certify.tsv")


def test_same_rows_for_one_or_two_processes_and_any_batch_size(checkpoint, tmp_path):
    single = certify(checkpoint, tmp_path / "single", "certify.batch_size=64")
    other_batch = certify(checkpoint, tmp_path / "batch", "certify.batch_size=23")
    ddp = certify(checkpoint, tmp_path / "ddp", "certify.batch_size=50", *DDP)
    assert [row[0] for row in single] == [str(i) for i in range(9)]
    assert single == other_batch == ddp
    # The rows are a real certification, not all abstentions.
    assert any(float(row[2]) > 0 for row in single)


def test_ddp_training_certifies_each_example_exactly_once(tmp_path):
    result = run_script("train.py", *TINY, *DDP, *CERT, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    indices = [int(row[0]) for row in table_rows(tmp_path / "certify.tsv")]
    assert indices == list(range(9))
    assert not list(tmp_path.glob("certify.rank*.tsv"))
    assert (tmp_path / "certified_accuracy.png").is_file()
    # train.py returns the objective (for sweepers) on every rank, and the same value.
    pattern = r"objective: cert/acr=(\S+) \(max; rank {} of 2\)"
    values = [re.search(pattern.format(rank), result.stdout) for rank in (0, 1)]
    assert all(values), result.stdout[-2000:]
    assert values[0].group(1) == values[1].group(1) != "None"
    summary = json.loads((tmp_path / "certification_summary.json").read_text())
    assert summary["objective"] == "cert/acr" and summary["value"] == float(values[0].group(1))
