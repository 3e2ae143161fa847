"""Sequential records on 1 and 2 processes (CPU DDP) are the same, and a run killed with SIGKILL
(no handler runs) resumes to the records of an uninterrupted one (certify.py subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

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
    "certify.batch_size=31",  # one example per group (the kill lands between records)
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

    # The run kills itself with SIGKILL (no handler, no flush, no cleanup runs) right after its
    # third record is written: deterministic, unlike a kill from outside timed against a fast run.
    run = tmp_path / "killed"
    kill_after_three = (
        "import os, runpy, signal, sys\n"
        "from smoothcert.records import tsv\n"
        "write, seen = tsv.RecordWriter.write, []\n"
        "def killing_write(self, record):\n"
        "    write(self, record)\n"
        "    seen.append(record)\n"
        "    if len(seen) == 3:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "tsv.RecordWriter.write = killing_write\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path('certify.py', run_name='__main__')\n"
    )
    process = subprocess.run(
        [sys.executable, "-c", kill_after_three, "certify.py", *SETTINGS, f"hydra.run.dir={run}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=600,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]
    records = run / "certify.tsv"
    written = table_rows(records, COLUMNS)
    assert 3 <= len(written) < 8, "the run ended before it was killed"
    assert written == single[: len(written)]  # every written record is a finished one
    assert certify(run, "certify.resume=true") == single
