"""certify.py: checkpoint-driven config, one-line errors, crash and resume (issue: standalone
certification, resumable runs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY, run_script, table_rows

# Subprocess runs of train.py / certify.py: `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow

CERT = ["certify.num_examples=9", "certify.n=300", "certify.batch_size=100"]
DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run trained at sigma 0.5 (not the default) and certified at the end of fitting."""
    out = tmp_path_factory.mktemp("trained")
    result = run_script("train.py", *TINY, *CERT, "sigma=0.5", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def certify(ckpt: Path, out: Path, *overrides: str):
    return run_script(
        "certify.py", *TINY, *CERT, f"ckpt_path={ckpt}", f"hydra.run.dir={out}", *overrides
    )


def test_certify_py_reproduces_end_of_fit_rows_with_checkpoint_settings(trained, tmp_path):
    result = certify(trained / "checkpoints" / "last.ckpt", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # sigma came from the checkpoint (0.5), not from the config default (0.25).
    header = (tmp_path / "certify.tsv").read_text()
    assert "# sigma: 0.5\n" in header and "# train_sigma: 0.5\n" in header
    assert table_rows(tmp_path / "certify.tsv") == table_rows(trained / "certify.tsv")
    assert (tmp_path / "provenance.yaml").is_file() and (
        tmp_path / "config_resolved.yaml"
    ).is_file()


def test_certify_py_evaluates_the_split_only_when_asked(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    only = certify(ckpt, tmp_path / "only", "logger=csv")
    both = certify(ckpt, tmp_path / "both", "logger=csv", "certify.evaluate=true")
    assert only.returncode == 0 and both.returncode == 0, (only.stderr + both.stderr)[-3000:]
    columns = {
        name: (tmp_path / name / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
        for name in ("only", "both")
    }
    assert "test/acc" not in columns["only"] and "cert/acr" in columns["only"]
    assert {"test/acc", "test/acc_noisy", "cert/acr"} <= set(columns["both"])
    assert table_rows(tmp_path / "only" / "certify.tsv") == table_rows(trained / "certify.tsv")
    assert "certified: acc@0.00=" in (tmp_path / "only" / "certify.log").read_text()
    bad = certify(ckpt, tmp_path / "bad", "certify.evaluate=maybe")
    assert bad.stderr.strip().splitlines()[-1] == (
        "smoothcert: error: certify.evaluate=maybe must be true or false"
    )


def test_a_checkpoint_written_before_the_core_moved_still_certifies(tmp_path):
    fixture = ROOT / "tests" / "fixtures" / "pre_move"
    settings = [
        "certify.n=500",
        "certify.n0=50",
        "certify.num_examples=6",
        "certify.batch_size=250",
    ]
    ckpt = f"ckpt_path={fixture / 'digits_last.ckpt'}"
    result = run_script("certify.py", *TINY, *settings, ckpt, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert table_rows(tmp_path / "certify.tsv") == table_rows(fixture / "certify.tsv")


def test_other_sigma_warns_with_both_values(trained, tmp_path):
    result = certify(trained / "checkpoints" / "last.ckpt", tmp_path, "sigma=0.25")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sigma=0.25 a model trained at sigma=0.5" in result.stderr + result.stdout


def test_crash_then_resume_equals_uninterrupted(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    crashed = certify(ckpt, tmp_path, "certify.crash_after=4")
    assert crashed.returncode != 0 and "simulated crash" in crashed.stderr
    assert len(table_rows(tmp_path / "certify.tsv")) == 4  # streamed before the crash
    resumed = certify(ckpt, tmp_path, "certify.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "9 of 9" not in resumed.stderr + resumed.stdout  # it did not start over
    assert table_rows(tmp_path / "certify.tsv") == table_rows(trained / "certify.tsv")


def test_ddp_crash_shards_are_folded_into_a_resume(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    crashed = certify(ckpt, tmp_path, *DDP, "certify.crash_after=2")
    assert crashed.returncode != 0
    shards = sorted(tmp_path.glob("certify.rank*.tsv"))
    assert shards and sum(len(table_rows(p)) for p in shards) >= 2
    resumed = certify(ckpt, tmp_path, "certify.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not list(tmp_path.glob("certify.rank*.tsv"))
    assert table_rows(tmp_path / "certify.tsv") == table_rows(trained / "certify.tsv")


def test_resume_with_other_settings_is_refused_and_nothing_is_lost(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    assert certify(ckpt, tmp_path, "certify.crash_after=3").returncode != 0
    before = (tmp_path / "certify.tsv").read_bytes()
    result = certify(ckpt, tmp_path, "certify.resume=true", "certify.n=400")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "n=300" in last and "n=400" in last and "Traceback" not in result.stderr
    assert (tmp_path / "certify.tsv").read_bytes() == before


def test_existing_records_are_not_overwritten_without_resume(trained):
    before = (trained / "certify.tsv").read_bytes()
    result = certify(trained / "checkpoints" / "last.ckpt", trained)
    assert result.returncode == 2 and "certify.resume=true" in result.stderr
    assert (trained / "certify.tsv").read_bytes() == before
    assert (trained / ".hydra" / "config.yaml").is_file()  # train.py's config kept


@pytest.mark.parametrize(
    "content,chosen,message",
    [
        (None, [], "is not a file"),
        (b"not a checkpoint", [], "is not a readable checkpoint"),
        ({"state_dict": {}}, [], "was not written by smoothcert"),
        # Without certify=, a segmentation checkpoint gets segcertify (tests/seg/test_seg_train.py).
        (
            {"smoothcert": {"task": "segmentation"}},
            ["certify=cohen"],
            "a segmentation model: use certify=segcertify",
        ),
    ],
)
def test_bad_checkpoints_are_one_line_errors(tmp_path, content, chosen, message):
    ckpt = tmp_path / "model.ckpt"
    if isinstance(content, bytes):
        ckpt.write_bytes(content)
    elif content is not None:
        torch.save(content, ckpt)
    result = certify(ckpt, tmp_path / "out", *chosen)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("smoothcert: error: ") and message in last, result.stderr[-2000:]
