"""certify.sequential=true through the certification callback (the pre-move digits checkpoint,
certified in-process as certify.py does): the records do not depend on the batch size or the
grouping, a crash or an interrupt followed by a resume gives the records of an uninterrupted run,
and the settings that cannot work are refused in one line."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from callbacks.certification.cohen import CohenCertification
from conftest import ROOT, TINY, compose_config, table_rows
from lightning_modules.run.runner import build_run
from smoothcert.certifiers.randomized import example_uniform
from smoothcert.certifiers.sequential import SequentialRun
from smoothcert.errors import ConfigError
from smoothcert.records import RANDOMIZED_SCHEMA, SEQUENTIAL_COLUMNS, SEQUENTIAL_SCHEMA

FIXTURE = ROOT / "tests" / "fixtures" / "pre_move"
SETTINGS = ["certify.n=2000", "certify.n0=50", "certify.num_examples=6", "ckpt_path=none"]
SEQUENTIAL = ["certify.sequential=true", "certify.radii=[0.0,0.25,0.5]"]
COLUMNS = tuple(c for c in SEQUENTIAL_COLUMNS if c != "time")


def certify(out: Path, *overrides: str):
    """Certifies the fixture's weights with ``trainer.test`` (as certify.py does)."""
    cfg = compose_config([*TINY, *SETTINGS, *SEQUENTIAL, *overrides], out, "certify_checkpoint")
    run = build_run(cfg, fitting=False)
    state = torch.load(FIXTURE / "digits_last.ckpt", map_location="cpu", weights_only=False)
    run.module.load_state_dict(state["state_dict"])
    run.trainer.test(run.module, datamodule=run.datamodule)
    return run.callbacks[-1]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[tuple]:
    out = tmp_path_factory.mktemp("sequential")
    callback = certify(out, "certify.batch_size=20")
    assert callback.group_size == 1
    metadata, records = SEQUENTIAL_SCHEMA.read(out / "certify.tsv")
    assert metadata["sequential"] == "True" and len(records) == 6
    assert all(r.stop in ("decided", "cap") and 0 < r.samples <= 2000 for r in records)
    assert sum(r.samples for r in records) < 6 * 2000  # stops early
    return table_rows(out / "certify.tsv", COLUMNS)


def test_records_do_not_depend_on_the_batch_size_or_the_grouping(tmp_path, uninterrupted):
    callback = certify(tmp_path, "certify.batch_size=80")
    assert callback.group_size == 5  # examples certified together, sharing forward passes
    assert table_rows(tmp_path / "certify.tsv", COLUMNS) == uninterrupted


def test_a_crash_then_resume_gives_the_uninterrupted_records(tmp_path, uninterrupted):
    with pytest.raises(RuntimeError, match="simulated crash"):
        certify(tmp_path, "certify.batch_size=20", "certify.crash_after=2")
    certify(tmp_path, "certify.batch_size=20", "certify.resume=true")
    assert table_rows(tmp_path / "certify.tsv", COLUMNS) == uninterrupted


def test_an_interrupt_writes_valid_records_and_resume_redoes_them(
    tmp_path, uninterrupted, monkeypatch
):
    # SIGTERM as Lightning reports it (trainer.received_sigterm), here at the 21st check of the
    # run (the second example's 7th): its record is written with its bound at that check (stop
    # "interrupted"), the run stops, and resume certifies it again from scratch.
    start = SequentialRun.start
    checks = iter(range(1000))

    def flagged(self, examples, world, interrupted):
        start(self, examples, world, lambda: next(checks) == 20)

    monkeypatch.setattr(SequentialRun, "start", flagged)
    try:
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown after KeyboardInterrupt
            certify(tmp_path, "certify.batch_size=20")
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores SIGINT then
    shards = list(tmp_path.glob("certify*.tsv"))
    rows = [r for path in shards for r in SEQUENTIAL_SCHEMA.read(path)[1]]
    (written,) = [r for r in rows if r.stop == "interrupted"]
    assert len(rows) == 2 and written.idx == 1
    assert written.stop == "interrupted" and written.samples < 2000
    before = {row[0]: row for row in uninterrupted}[str(written.idx)]
    assert written.p_lower <= float(before[COLUMNS.index("p_lower")]) or written.radius == 0.0
    monkeypatch.setattr(SequentialRun, "start", start)
    certify(tmp_path, "certify.batch_size=20", "certify.resume=true")
    assert table_rows(tmp_path / "certify.tsv", COLUMNS) == uninterrupted


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"budget": "10m"}, "certify.budget='10m' needs certify.sequential=true"),
        ({"sequential": True, "budget": "soon"}, "certify.budget='soon' must be a number"),
        ({"sequential": True, "bound": "randomized_cp"}, "and cp with certify.sequential=true"),
        ({"bound": "wilson"}, "certify.bound='wilson' must be cp or randomized_cp"),
        ({"bound": "randomized_cp", "topk": [1, 2]}, "certify.topk=null"),
        ({"futility": "projected"}, "certify.futility need certify.sequential=true"),
        ({"sequential": True, "futility": "often"}, "certify.futility='often' must be one of"),
        ({"sequential": True, "stop_alpha": 0.0001}, "certify.stop_alpha=0.0001 must be"),
    ],
)
def test_bad_sequential_settings_are_one_line(tmp_path, settings, message):
    with pytest.raises(ConfigError) as info:
        CohenCertification(0.25, str(tmp_path), **settings)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_randomized_bound_records_its_draw(tmp_path):
    certify(tmp_path, "certify.sequential=false", "certify.bound=randomized_cp")
    metadata, records = RANDOMIZED_SCHEMA.read(tmp_path / "certify.tsv")
    assert metadata["bound"] == "randomized_cp" and len(records) == 6
    assert [r.u for r in records] == [example_uniform(0, i) for i in range(6)]


def test_the_stopping_settings_reach_the_run_and_its_header(tmp_path, uninterrupted):
    certify(
        tmp_path, "certify.batch_size=20", "certify.stop_alpha=0.05", "certify.futility=projected"
    )
    metadata, records = SEQUENTIAL_SCHEMA.read(tmp_path / "certify.tsv")
    assert metadata["stop_alpha"] == "0.05" and metadata["futility"] == "projected"
    assert sum(r.samples for r in records) <= sum(
        int(row[COLUMNS.index("samples")]) for row in uninterrupted
    )
