"""Sequential records on 1 and 2 processes (CPU DDP) are the same, and a run killed with SIGKILL
(no handler runs) resumes to the records of an uninterrupted one (certify.py subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, TINY, run_script, table_rows
from smoothcert.records import SEQUENTIAL_COLUMNS

CHECKPOINT = ROOT / "tests" / "fixtures" / "pre_move" / "digits_last.ckpt"
SETTINGS = [
    *TINY,
    f"ckpt_path={CHECKPOINT}",
    "certify.sequential=true",
    "certify.num_examples=8",
    "certify.n=2000",
    "certify.n0=50",
    "certify.radii=[0.0,0.25,0.5]",
    "certify.batch_size=256",
]
DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
COLUMNS = tuple(c for c in SEQUENTIAL_COLUMNS if c != "time")


def certify(out, *overrides: str) -> list[tuple[str, ...]]:
    result = run_script("certify.py", *SETTINGS, f"hydra.run.dir={out}", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return table_rows(out / "certify.tsv", COLUMNS)


@pytest.mark.slow
def test_same_records_on_two_processes_and_after_a_sigkill_and_resume(tmp_path):
    single = certify(tmp_path / "single")
    assert [row[0] for row in single] == [str(i) for i in range(8)]
    assert certify(tmp_path / "ddp", "certify.batch_size=100", *DDP) == single

    run = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "certify.py", *SETTINGS, f"hydra.run.dir={run}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    records, deadline = run / "certify.tsv", time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if records.exists() and len(table_rows(records)) >= 3:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    written = table_rows(records, COLUMNS)
    assert 3 <= len(written) < 8, "the run ended before it was killed"
    assert written == single[: len(written)]  # every written record is a finished one
    assert certify(run, "certify.resume=true") == single
