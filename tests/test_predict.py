"""certify=predict: Cohen's PREDICT through certify.py, with their predict.py columns, streamed
and resumed by the same loop as CERTIFY."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, run_script, table_rows

CHECKPOINT = ROOT / "tests" / "fixtures" / "pre_move" / "digits_last.ckpt"
PREDICT = ["certify=predict", "certify.n=200", "certify.num_examples=6", "logger=none"]
COLUMNS = ("idx", "label", "predict", "correct")


@pytest.mark.slow
def test_predict_writes_cohens_columns_and_resumes_to_the_same_rows(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = [f"ckpt_path={CHECKPOINT}", *PREDICT]
    done = run_script("certify.py", *args, f"hydra.run.dir={whole}")
    assert done.returncode == 0, done.stderr[-3000:]
    tsv = whole / "predict.tsv"
    header = [ln for ln in tsv.read_text().splitlines() if not ln.startswith("#")][0]
    assert header.split("\t") == ["idx", "label", "predict", "correct", "time"]
    assert "# certifier: predict" in tsv.read_text() and "# n: 200" in tsv.read_text()
    rows = table_rows(tsv, COLUMNS)
    assert [int(r[0]) for r in rows] == list(range(6))
    for _, label, predict, correct in rows:
        assert int(correct) == int(predict == label)
    summary = json.loads((whole / "certification_summary.json").read_text())
    assert summary["objective"] == "predict/acc"
    assert summary["value"] == pytest.approx(sum(int(r[3]) for r in rows) / 6)

    crashed = run_script("certify.py", *args, "certify.crash_after=2", f"hydra.run.dir={cut}")
    assert crashed.returncode != 0 and len(table_rows(cut / "predict.tsv", COLUMNS)) == 2
    resumed = run_script("certify.py", *args, "certify.resume=true", f"hydra.run.dir={cut}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "predicting 4 of 6" in resumed.stderr + resumed.stdout
    assert table_rows(cut / "predict.tsv", COLUMNS) == rows
