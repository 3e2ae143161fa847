"""End-to-end training + certification through the real config, and bad input caught early."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import smoothcert.data.classification
from conftest import TINY, run_script, table_rows
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.errors import ConfigError
from smoothcert.records import COHEN_COLUMNS, read_records


def fit(cfg):
    run = build_run(cfg)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    return run


@pytest.mark.slow
def test_debug_run_trains_and_certifies(make_cfg, tmp_path):
    run = fit(make_cfg(*TINY, "logger=csv"))
    metadata, records = read_records(tmp_path / "certify.tsv")
    assert [r.idx for r in records] == list(range(6))
    assert metadata["sigma"] == "0.25" and metadata["n0"] == "100" and metadata["n"] == "10000"
    assert metadata["normalization"].startswith("mean=[0.3053]")
    header = [ln for ln in (tmp_path / "certify.tsv").read_text().splitlines() if ln[0] != "#"][0]
    assert tuple(header.split("\t")) == COHEN_COLUMNS
    for record in records:
        assert record.correct == int(record.predict == record.label)
        assert record.radius >= 0 and (record.radius > 0 or record.predict == -1)
    assert (tmp_path / "certified_accuracy.tsv").is_file()
    assert (tmp_path / "certified_accuracy.png").stat().st_size > 1000
    callback = run.callbacks[-1]
    expected = sum(r.correct and r.radius >= 0.25 for r in records) / len(records)
    assert callback.summary["cert/acc@0.25"] == pytest.approx(expected)
    metrics = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    for key in (
        "train/loss",
        "val/acc",
        "val/acc_noisy",
        "cert/acc@0.25",
        "cert/acr",
        "cert/abstain",
        "cert/clean_acc",
    ):
        assert key in metrics
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["smoothcert"]["train_sigma"] == 0.25
    assert ckpt["smoothcert"]["normalization"]["mean"] == [0.3053]


@pytest.mark.slow
def test_certify_none_turns_certification_off(make_cfg, tmp_path):
    run = fit(make_cfg(*TINY, "certify=none"))
    assert not (tmp_path / "certify.tsv").exists()
    assert not any(hasattr(c, "summary") for c in run.callbacks)


@pytest.mark.parametrize(
    "override,setting",
    [
        ("sigma=0", "certify.sigma"),
        ("sigma=-0.5", "sigma"),
        ("certify.alpha=0", "certify.alpha"),
        ("certify.alpha=1.5", "certify.alpha"),
        ("certify.n0=0", "certify.n0"),
        ("certify.n=0", "certify.n"),
    ],
)
def test_bad_settings_fail_before_training(make_cfg, tmp_path, override, setting):
    with pytest.raises(Exception) as info:
        fit(make_cfg(*TINY, override))
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError), info.value
    assert setting in str(error) and "\n" not in str(error)
    assert not (tmp_path / "checkpoints").exists()


def test_too_many_examples_fails_before_training(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"certify.num_examples=1000 exceeds the 360"):
        fit(make_cfg(*TINY, "certify.num_examples=1000"))
    assert not (tmp_path / "checkpoints").exists()


def test_inputs_outside_unit_range_fail_before_training(make_cfg, tmp_path, monkeypatch):
    real = smoothcert.data.classification.digits_splits

    def unscaled(*args, **kwargs):  # the classic mistake: pixels left in [0, 16]
        splits = real(*args, **kwargs)
        splits.train.dataset.tensors = (
            splits.train.dataset.tensors[0] * 16,
            splits.train.dataset.tensors[1],
        )
        return splits

    monkeypatch.setattr(smoothcert.data.classification, "digits_splits", unscaled)
    with pytest.raises(ConfigError, match=r"must lie in \[0, 1\]"):
        fit(make_cfg(*TINY))
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_train_py_end_to_end_and_one_line_errors(tmp_path):
    good = run_script("train.py", *TINY, f"hydra.run.dir={tmp_path / 'ok'}")
    assert good.returncode == 0, good.stderr[-3000:]
    assert "certify.tsv" in good.stderr + good.stdout
    assert len(table_rows(tmp_path / "ok" / "certify.tsv")) == 6
    log = (tmp_path / "ok" / "train.log").read_text()  # the run's log outlives the terminal
    lines = ("Seed set to 0", "epoch 0: train/loss=", "certifying 6 of 6", "certified: acc@0.00=")
    for line in lines:
        assert line in log

    bad = run_script("train.py", *TINY, "certify.alpha=2", f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("smoothcert: error: certify.alpha=2.0 must lie in (0, 1)")
    assert "Traceback" not in bad.stderr
    assert not (Path(tmp_path / "bad") / "checkpoints").exists()
    assert last in (tmp_path / "bad" / "train.log").read_text()


# The best-by-monitor checkpoint is epoch 0 here, so a last.ckpt tied to it would be stale.
NOT_LAST_IS_BEST = [
    "trainer.max_epochs=3",
    "callbacks.best_checkpoint.monitor=epoch",
    "callbacks.best_checkpoint.mode=min",
]


@pytest.mark.slow
def test_last_checkpoint_is_the_final_state_and_certify_py_reproduces_rows(make_cfg, tmp_path):
    run = fit(make_cfg(*TINY, *NOT_LAST_IS_BEST))
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2
    final = run.module.state_dict()
    assert all(torch.equal(final[k].cpu(), v) for k, v in last["state_dict"].items())
    assert (tmp_path / "checkpoints" / "best-epoch000.ckpt").is_file()

    again = tmp_path / "again"
    result = run_script(
        "certify.py",
        *TINY,
        f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={again}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert table_rows(again / "certify.tsv") == table_rows(tmp_path / "certify.tsv")


@pytest.mark.slow
def test_weights_best_certifies_the_best_checkpoint(make_cfg, tmp_path):
    fit(make_cfg(*TINY, *NOT_LAST_IS_BEST, "certify.weights=best"))
    metadata, _ = read_records(tmp_path / "certify.tsv")
    assert metadata["checkpoint"].endswith("best-epoch000.ckpt")
