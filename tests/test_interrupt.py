"""Ctrl-C during certification says how to resume, and the command it prints resumes."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from callbacks.certification.cohen import CohenCertification
from callbacks.certification.interrupt import resume_command
from conftest import ROOT, run_script, table_rows

CHECKPOINT = ROOT / "tests" / "fixtures" / "pre_move" / "digits_last.ckpt"


class FakeTrainer:
    global_rank = 0


def test_the_handler_prints_the_resume_command_only_while_certifying(tmp_path, capsys, monkeypatch):
    # No Hydra job here (another test's composed config may linger in HydraConfig): no overrides.
    monkeypatch.setattr("callbacks.certification.base.run_overrides", lambda: [])
    callback = CohenCertification(0.25, str(tmp_path))
    callback.on_exception(FakeTrainer(), None, KeyboardInterrupt())
    assert capsys.readouterr().err == ""  # interrupted before certification started: no advice
    callback.certifying = "last weights of this run"
    callback.on_exception(FakeTrainer(), None, ValueError("not an interrupt"))
    assert capsys.readouterr().err == ""
    callback.certifying = "last weights of this run"
    callback.on_exception(FakeTrainer(), None, KeyboardInterrupt())
    said = capsys.readouterr().err
    run = tmp_path
    expected = (
        f"python certify.py ckpt_path={run}/checkpoints/last.ckpt hydra.run.dir={run} "
        "certify.resume=true"
    )
    assert "certification interrupted" in said and expected in said


def test_the_command_keeps_the_runs_settings_and_replaces_its_own():
    overrides = ["certify.n=500", "hydra.run.dir=old", "ckpt_path=old.ckpt", "sigma=0.5"]
    command = resume_command(Path("out dir"), "a/b.ckpt", overrides)
    assert command == (
        "python certify.py ckpt_path=a/b.ckpt 'hydra.run.dir=out dir' certify.n=500 sigma=0.5 "
        "certify.resume=true"
    )


@pytest.mark.slow
def test_ctrl_c_prints_a_command_that_resumes(tmp_path):
    run = tmp_path / "run"
    settings = [f"ckpt_path={CHECKPOINT}", "certify.num_examples=60", "logger=none"]
    process = subprocess.Popen(
        [sys.executable, "certify.py", *settings, f"hydra.run.dir={run}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    records, deadline = run / "certify.tsv", time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if records.exists() and len(table_rows(records)) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0, "the run ended before it was interrupted"
    done = len(table_rows(records))
    assert done < 60
    line = next(ln for ln in stderr.splitlines() if ln.strip().startswith("python certify.py"))
    command = shlex.split(line.strip())
    assert command[2:] == [
        f"ckpt_path={CHECKPOINT}",
        f"hydra.run.dir={run}",
        "certify.num_examples=60",
        "logger=none",
        "certify.resume=true",
    ]
    resumed = run_script(*command[1:])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"certifying {60 - done} of 60" in resumed.stderr + resumed.stdout
    assert [int(row[0]) for row in table_rows(records)] == list(range(60))
