"""Segmentation end to end: train.py + SegCertify, certify.py on two processes, Cityscapes."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch

from conftest import TINY, run_script, table_rows
from lightning_modules.run.runner import build_run, config_error_in
from seg.test_seg_parts import write_cityscapes_tree
from smoothcert import ConfigError

SHAPES = [
    "+experiment=shapes_seg",
    *TINY,
    "trainer.max_epochs=1",
    "data.train_size=128",
    "data.val_size=8",
    "certify.num_examples=3",
    "certify.n=100",
    "certify.tau=[0.6,0.75]",
]
COLUMNS = ("idx", "tau", "radius", "pixel_acc", "miou", "abstain")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("shapes_seg")
    result = run_script("train.py", *SHAPES, "logger=csv", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout + result.stderr


@pytest.mark.slow
def test_shapes_seg_trains_and_certifies_end_to_end(trained):
    out, log = trained
    assert "base model: pixel accuracy" in log
    for tau in ("0.6", "0.75"):  # every tau said, each at its own radius
        lines = [line for line in log.splitlines() if f"tau={tau} l2 radius=" in line]
        assert len(lines) == 1 and "certified pixel accuracy" in lines[0], lines
    text = (out / "segcertify.tsv").read_text()
    for line in ("# certifier: segcertify", "# correction: holm", "# tau: [0.6, 0.75]"):
        assert line + "\n" in text
    assert "# joint: False\n" in text and "# alpha_per_tau: 0.001\n" in text
    assert "# guarantee: family-wise per tau: " in text and "not jointly" in text
    rows = table_rows(out / "segcertify.tsv", COLUMNS)
    assert [(r[0], r[1]) for r in rows] == [(str(i), t) for i in range(3) for t in ("0.6", "0.75")]
    for _, tau, radius, pixel_acc, miou, abstain in rows:
        assert float(radius) == pytest.approx(0.25 * {"0.6": 0.2533471, "0.75": 0.6744898}[tau])
        assert all(0 <= float(v) <= 1 for v in (pixel_acc, miou, abstain))
    base = table_rows(out / "segcertify_base.tsv", COLUMNS)
    assert [r[0] for r in base] == ["0", "1", "2"] and all(r[1] == "nan" for r in base)
    curve = (out / "certified_pixel_accuracy.tsv").read_text().splitlines()
    assert curve[0] == "radius\tcertified_pixel_accuracy" and len(curve) == 3
    assert (out / "certified_pixel_accuracy.png").stat().st_size > 1000
    assert len(list((out / "overlays").glob("segcertify_*.png"))) == 3
    metrics = (out / "csv" / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/loss", "val/miou", "val/pixel_acc", "cert/pixel_acc", "cert/base_pixel_acc"):
        assert key in metrics
    meta = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["smoothcert"]
    assert meta["task"] == "segmentation" and meta["train_sigma"] == 0.25
    assert meta["num_classes"] == 5 and meta["normalization"]["mean"] == [0.499, 0.501, 0.492]


@pytest.mark.slow
def test_certify_py_on_two_processes_reproduces_the_rows(trained, tmp_path):
    out, _ = trained
    result = run_script(
        "certify.py",
        *SHAPES,
        f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path}",
        "certify.batch_size=37",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(tmp_path.glob("*.rank*.tsv")), "shard files must be merged and removed"
    for name in ("segcertify.tsv", "segcertify_base.tsv"):
        assert table_rows(tmp_path / name, COLUMNS) == table_rows(out / name, COLUMNS)


@pytest.mark.slow
def test_certify_py_takes_the_certifier_from_the_checkpoint_task(trained, tmp_path):
    """No certify= and no experiment: a segmentation checkpoint is certified with SegCertify
    (the config's default certifier, cohen, is for classifiers)."""
    out, _ = trained
    ckpt = out / "checkpoints" / "last.ckpt"
    small = ["certify.num_examples=2", "certify.n=50"]
    result = run_script(
        "certify.py", *TINY, f"ckpt_path={ckpt}", *small, f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "# certifier: segcertify\n" in (tmp_path / "segcertify.tsv").read_text()
    assert "certify=segcertify" in (tmp_path / ".hydra-certify" / "overrides.yaml").read_text()


@pytest.mark.slow
def test_certify_py_resumes_where_a_run_stopped(trained, tmp_path):
    """A run cut short after image 0 (its lines streamed, the rest lost) continues with
    certify.resume=true: the finished image is not certified again and the merged files hold the
    rows of a run that was never interrupted; without resume the files are not overwritten."""
    out, _ = trained
    run = [*SHAPES, f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={tmp_path}"]
    for name in ("segcertify.tsv", "segcertify_base.tsv"):
        lines = (out / name).read_text().splitlines(keepends=True)
        head = [ln for ln in lines if ln.startswith("#") or ln.startswith("idx")]
        first = [ln for ln in lines if ln.split("\t")[0] == "0"]
        partial = [ln for ln in lines if ln.split("\t")[0] == "1"][:1]  # cut mid-image
        text = "".join(head + first + partial).replace(str(out / "checkpoints" / "last.ckpt"), "")
        (tmp_path / name).write_text(text)
    refused = run_script("certify.py", *run)
    assert refused.returncode != 0 and "certify.resume=true" in refused.stderr
    result = run_script("certify.py", *run, "certify.resume=true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "segcertify: 2 of 3 val images to certify" in result.stdout + result.stderr
    for name in ("segcertify.tsv", "segcertify_base.tsv"):
        assert table_rows(tmp_path / name, COLUMNS) == table_rows(out / name, COLUMNS)
    assert (tmp_path / "certified_pixel_accuracy.tsv").read_text() == (
        out / "certified_pixel_accuracy.tsv"
    ).read_text()
    changed = run_script("certify.py", *run, "certify.resume=true", "certify.n=50")
    assert changed.returncode != 0 and "it was written with n=100" in changed.stderr


@pytest.mark.parametrize(
    "override,message",
    [
        ("certify.tau=[0.75,1.2]", "certify.tau=1.2 must lie in [0.5, 1)"),
        ("certify.correction=sidak", "correction='sidak' is unknown"),
        ("certify.budget=-1", "budget=-1 must be an integer >= 0"),
        ("certify.num_examples=100", "certify.num_examples=100 exceeds the 8 images"),
        (
            "regime=consistency",
            "(label_map outputs): use regime=gaussian or regime=seg_consistency",
        ),
    ],
)
def test_bad_certify_settings_fail_before_training(make_cfg, tmp_path, override, message):
    with pytest.raises(Exception) as info:
        run = build_run(make_cfg(*SHAPES, override))
        run.trainer.fit(run.module, datamodule=run.datamodule)
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError) and message in str(error) and "\n" not in str(error)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_cityscapes_seg_runs_end_to_end_on_a_tiny_official_tree(tmp_path):
    data = write_cityscapes_tree(tmp_path / "data")
    result = run_script(
        "train.py",
        "+experiment=cityscapes_seg",
        *TINY,
        f"paths.data_dir={data}",
        "data.crop_size=[64,128]",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "certify.num_examples=2",
        "certify.skip=1",
        "certify.n=30",
        "certify.batch_size=16",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = table_rows(tmp_path / "run" / "segcertify.tsv", COLUMNS)
    assert [r[0] for r in rows] == ["0", "1"] and all(r[1] == "0.75" for r in rows)
    assert "# scale: 0.25\n" in (tmp_path / "run" / "segcertify.tsv").read_text()
    assert "model_name: hrnet_w48" in (tmp_path / "run" / "config_resolved.yaml").read_text()


def test_cityscapes_seg_is_the_papers_setting_and_fails_in_one_line_without_data(
    make_cfg, tmp_path
):
    cfg = make_cfg("+experiment=cityscapes_seg", f"paths.data_dir={tmp_path / 'nowhere'}")
    c = cfg.certify
    assert (cfg.sigma, c.n0, c.n, list(c.tau), c.alpha, c.correction) == (
        0.25, 10, 100, [0.75], 0.001, "holm"
    )  # fmt: skip
    assert (c.scale, c.num_examples, cfg.model.net.model_name) == (0.25, 100, "hrnet_w48")
    with pytest.raises(Exception) as info:
        hydra.utils.instantiate(cfg.data)
    message = str(config_error_in(info.value))
    assert "\n" not in message and str(tmp_path / "nowhere") in message
    assert (
        "leftImg8bit/" in message and "gtFine/" in message and "cityscapes-dataset.com" in message
    )
