"""certify.batch_size: ``auto`` (the default) times the first example and certifies with the fastest
batch size, and examples whose samples fit a batch several times share forward passes; neither
changes a record (the pre-move checkpoint's rows, certified in-process)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from callbacks.certification.segcertify import SegCertifyCertification
from conftest import ROOT, TINY, compose_config, table_rows
from lightning_modules.run.runner import build_run
from smoothcert.certifiers.examples import auto_batch_candidates
from smoothcert.errors import ConfigError

FIXTURE = ROOT / "tests" / "fixtures" / "pre_move"
# The fixture's settings (tests/fixtures/pre_move/README.md), but for the batch size.
SETTINGS = ["certify.n=500", "certify.n0=50", "certify.num_examples=6", "ckpt_path=none"]


def certify(out: Path, *overrides: str):
    """Certifies the fixture's weights with ``trainer.test`` (as certify.py does)."""
    cfg = compose_config([*TINY, *SETTINGS, *overrides], out, "certify_checkpoint")
    run = build_run(cfg, fitting=False)
    state = torch.load(FIXTURE / "digits_last.ckpt", map_location="cpu", weights_only=False)
    run.module.load_state_dict(state["state_dict"])
    run.trainer.test(run.module, datamodule=run.datamodule)
    return run.callbacks[-1]


@pytest.mark.parametrize(("batch_size", "group"), [("250", 1), ("1100", 2), ("3300", 6)])
def test_examples_packed_into_shared_batches_give_the_fixture_rows(tmp_path, batch_size, group):
    callback = certify(tmp_path, f"certify.batch_size={batch_size}")
    assert (callback.samples_per_batch, callback.group_size) == (int(batch_size), group)
    assert table_rows(tmp_path / "certify.tsv") == table_rows(FIXTURE / "certify.tsv")


def test_auto_chooses_a_timed_batch_size_and_gives_the_fixture_rows(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        callback = certify(tmp_path, "certify.batch_size=auto")
    assert callback.batch_size == "auto"
    chosen = callback.samples_per_batch
    assert chosen in auto_batch_candidates(50, 500) and chosen * 64 <= 1 << 19  # the CPU cap
    assert 550 in auto_batch_candidates(50, 500) and max(auto_batch_candidates(50, 500)) == 64 * 550
    assert callback.group_size == max(1, min(64, chosen // 550))
    lines = [r.getMessage() for r in caplog.records if "certify.batch_size=auto" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(f"certify.batch_size=auto: chose {chosen} (")
    assert table_rows(tmp_path / "certify.tsv") == table_rows(FIXTURE / "certify.tsv")


def test_a_crash_inside_a_group_keeps_the_records_written_and_resume_completes(tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        certify(tmp_path, "certify.batch_size=4000", "certify.crash_after=2")
    shards = list(tmp_path.glob("certify*.tsv"))
    assert sum(len(table_rows(path)) for path in shards) == 2
    certify(tmp_path, "certify.batch_size=4000", "certify.resume=true")
    assert table_rows(tmp_path / "certify.tsv") == table_rows(FIXTURE / "certify.tsv")


def test_cohen_default_is_auto_and_other_certifiers_keep_numbers(make_cfg):
    assert build_run(make_cfg("logger=none")).callbacks[-1].batch_size == "auto"
    with pytest.raises(ConfigError) as info:
        SegCertifyCertification(sigma=0.25, output_dir=".", batch_size="auto")
    message = str(info.value)
    assert "certify.batch_size=auto: certify=segcertify does not choose" in message
    assert "\n" not in message
