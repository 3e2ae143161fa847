"""Point-cloud part segmentation end to end: train.py with +experiment=shapes3d_seg (subprocess),
the ShapeNet-part experiment on a tiny official tree (in process), its paper settings and its
one-line error without data."""

from __future__ import annotations

import hydra
import pytest

from conftest import TINY, run_script, table_rows
from lightning_modules.run.runner import build_run, config_error_in
from pointclouds.test_pointcloud_data import write_shapenet_tree

COLUMNS = ("idx", "tau", "radius", "pixel_acc", "miou", "abstain")
SMALL = ["trainer.max_epochs=1", "certify.n0=10", "certify.n=40", "certify.num_examples=2"]


@pytest.mark.slow
def test_shapes3d_seg_trains_and_certifies_points_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = run_script(
        "train.py",
        "+experiment=shapes3d_seg",
        *TINY,
        *SMALL,
        "data.train_size=32",
        "data.val_size=4",
        "data.num_points=64",
        "logger=csv",
        f"hydra.run.dir={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "tau=0.75 xyz radius=0.1686" in log and "instance mIoU" in log
    text = (out / "segcertify.tsv").read_text()
    assert "# perturbation: xyz\n" in text and "# units: l2 over all point coordinates" in text
    rows = table_rows(out / "segcertify.tsv", COLUMNS)
    assert [r[0] for r in rows] == ["0"] * 4 + ["1"] * 4
    metrics = (out / "csv" / "metrics.csv").read_text().splitlines()[0]
    for key in ("cert/xyz/radius", "cert/instance_miou", "cert/class_miou", "cert/abstain"):
        assert key in metrics
    assert len(list((out / "overlays").glob("segcertify_*.png"))) == 2


def test_shapenet_part_seg_runs_on_a_tiny_official_tree(make_cfg, tmp_path):
    data = write_shapenet_tree(tmp_path / "data")
    cfg = make_cfg(
        "+experiment=shapenet_part_seg",
        *TINY,
        *SMALL,
        f"paths.data_dir={data}",
        "data.num_points=32",
        "data.batch_size=2",
        "certify.tau=[0.75]",
    )
    run = build_run(cfg)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    rows = table_rows(tmp_path / "segcertify.tsv", COLUMNS)
    assert [r[0] for r in rows] == ["0", "1"] and all(r[1] == "0.75" for r in rows)
    assert (tmp_path / "overlays" / "segcertify_00000.png").exists()


def test_shapenet_part_seg_is_the_papers_setting_and_fails_in_one_line_without_data(
    make_cfg, tmp_path
):
    cfg = make_cfg("+experiment=shapenet_part_seg", f"paths.data_dir={tmp_path / 'nowhere'}")
    c = cfg.certify
    assert (cfg.sigma, c.n0, c.n, list(c.tau), c.alpha, c.correction) == (
        0.25, 100, 1000, [0.75, 0.85], 0.001, "holm"
    )  # fmt: skip
    assert (c.num_examples, cfg.data.num_points, cfg.data.normals) == (100, 2048, True)
    assert cfg.perturbation._target_.endswith("PointCoordinates")
    with pytest.raises(Exception) as info:
        hydra.utils.instantiate(cfg.data)
    message = str(config_error_in(info.value))
    assert "\n" not in message and "paths.data_dir" in message and "nowhere" in message
