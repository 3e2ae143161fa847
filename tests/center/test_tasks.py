"""The three center-smoothing tasks: reconstruction (digits autoencoder, TV / l2), segmentation
(label maps, Jaccard) and box regression (shapes boxes, 1 - IoU): data, models, the
``structured_output`` interface and one end-to-end run."""

from __future__ import annotations

import hydra
import pytest
import torch
from omegaconf import ListConfig

from conftest import TINY, run_script, table_rows
from lightning_modules.box_regression import box_iou
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.certifiers.center import delta1, quantile_level
from smoothcert.data.boxes import ShapeBoxesDataset, largest_region_box
from smoothcert.data.shapes import render_shape_instances, render_shapes
from smoothcert.distances import BoxJaccardDistance
from smoothcert.errors import ConfigError
from smoothcert.models.structured import BoxRegressor, ConvAutoencoder, sort_box_corners

AUTOENCODER = ["+experiment=digits_autoencoder_tv", *TINY]
# Tiny certification for the end-to-end run: the experiment's three noise levels and two h values.
CENTER_TINY = ["certify.n=1200", "certify.m=2000", "certify.num_examples=2", "certify.num_images=1"]


def test_largest_region_box_of_a_hand_made_mask():
    regions = torch.zeros(8, 10, dtype=torch.long)  # H = 8, W = 10
    regions[1, 1:3] = 1  # 2 pixels
    regions[2:6, 3:6] = 2  # 12 pixels ...
    regions[5, 7] = 2  # ... plus one apart: the box spans columns 3..7, rows 2..5
    regions[0:8, 9] = 255  # 8 ignored pixels
    box = largest_region_box(regions, ignore_index=255)
    assert box.dtype == torch.float32
    assert box.tolist() == pytest.approx([3 / 10, 2 / 8, 8 / 10, 6 / 8])
    # Without ignore_index the 255 column is a region too (and not the largest here).
    assert largest_region_box(regions).tolist() == pytest.approx([0.3, 0.25, 0.8, 0.75])
    regions[2:6, 3:6] = 0  # now id 255 (8 pixels) would win unless ignored; id 1 (2) vs 2 (1)
    assert largest_region_box(regions, 255).tolist() == pytest.approx([0.1, 0.125, 0.3, 0.25])
    tie = torch.zeros(4, 4, dtype=torch.long)
    tie[0, 0], tie[3, 3] = 2, 1  # one pixel each: the smaller id wins
    assert largest_region_box(tie).tolist() == [0.75, 0.75, 1.0, 1.0]


def test_no_visible_region_is_the_empty_box():
    box = largest_region_box(torch.full((6, 6), 255), ignore_index=255)
    assert box.tolist() == [0.0, 0.0, 0.0, 0.0]
    jaccard = BoxJaccardDistance()
    some_box = torch.tensor([[0.1, 0.1, 0.5, 0.5]])
    assert jaccard(box[None], box[None]).item() == 0.0  # no box = no box
    assert jaccard(box[None], some_box).item() == 1.0  # no box vs a box: no overlap
    with pytest.raises(ConfigError):
        largest_region_box(torch.rand(6, 6))


def test_shape_boxes_are_the_largest_visible_shape_of_the_shapes_images():
    data = ShapeBoxesDataset(20, "val", seed=3, size=32)
    for i in range(len(data)):
        image, box = data[i]
        picture, instances = render_shape_instances(3, i, "val", 32)
        assert torch.equal(image, render_shapes(3, i, "val", 32)[0]) and torch.equal(image, picture)
        assert box.shape == (4,) and box.min() >= 0 and box.max() <= 1
        assert box[0] < box[2] and box[1] < box[3]  # every image shows at least one shape
        counts = torch.bincount(instances.flatten())[1:]
        rows, columns = torch.nonzero(instances == int(counts.argmax()) + 1, as_tuple=True)
        expected = [columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]
        assert box.tolist() == pytest.approx([float(v) / 32 for v in expected])
    with pytest.raises(ConfigError, match="split='dev'"):
        ShapeBoxesDataset(4, "dev")


def test_autoencoder_reconstructs_images_in_the_unit_range():
    model = ConvAutoencoder(in_channels=1, image_size=8, latent_dim=16, width=8).eval()
    x = torch.randn(5, 1, 8, 8) * 3  # far outside [0, 1], as noisy inputs are
    out = model(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert model.encode(x).shape == (5, 16)
    assert ConvAutoencoder(3, 32)(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    with pytest.raises(ConfigError, match="image_size=10"):
        ConvAutoencoder(image_size=10)


def test_box_regressor_gives_ordered_boxes_in_the_unit_range():
    model = BoxRegressor(in_channels=3, width=8, depth=3).eval()
    boxes = model(torch.randn(6, 3, 32, 32) * 2)
    assert boxes.shape == (6, 4) and boxes.min() >= 0 and boxes.max() <= 1
    assert bool((boxes[:, 0] <= boxes[:, 2]).all()) and bool((boxes[:, 1] <= boxes[:, 3]).all())
    raw = torch.tensor([[0.7, 0.2, 0.1, 0.9]], requires_grad=True)
    sorted_box = sort_box_corners(raw)
    assert sorted_box.tolist() == [pytest.approx([0.1, 0.2, 0.7, 0.9])]
    sorted_box.sum().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0


def test_box_iou_is_one_minus_the_jaccard_distance_and_differentiable():
    target = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.2, 0.2, 0.6, 0.6]])
    predicted = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.4, 0.2, 0.8, 0.6]], requires_grad=True)
    iou = box_iou(predicted, target)
    assert iou.tolist() == pytest.approx([1.0, 1 / 3])
    (1 - iou).sum().backward()
    assert predicted.grad[1].abs().sum() > 0


@pytest.mark.parametrize(
    "experiment,shape,dtype,low,high",
    [
        ("digits_autoencoder_tv", (3, 1, 8, 8), torch.float32, 0, 1),
        ("shapes_seg_center", (3, 64, 64), torch.int64, 0, 4),
        ("shapes_box_center", (3, 4), torch.float32, 0, 1),
    ],
)
def test_structured_output_is_the_interface_center_smoothing_needs(
    make_cfg, experiment, shape, dtype, low, high
):
    cfg = make_cfg(f"+experiment={experiment}")
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="object")
    module = hydra.utils.instantiate(cfg.model, _convert_="object").eval()
    dataset = datamodule.dataset(cfg.certify.split)
    x = torch.stack([dataset[i][0] for i in range(3)])
    noisy = x + 0.25 * torch.randn_like(x)  # outside [0, 1], as the certifier passes
    with torch.inference_mode():
        out = module.structured_output(noisy)
    assert out.shape == shape and out.dtype == dtype
    assert low <= out.min() and out.max() <= high
    kind = {"digits_autoencoder_tv": "image", "shapes_seg_center": "label_map"}
    assert module.output_kind == kind.get(experiment, "box")
    if module.output_kind == "label_map":
        assert module.hparams.num_classes == 5
    if module.output_kind == "box":
        assert bool((out[:, 0] <= out[:, 2]).all()) and bool((out[:, 1] <= out[:, 3]).all())
        assert dataset[0][1].shape == (4,)  # the target is one box too


@pytest.mark.parametrize(
    "experiment", ["digits_autoencoder_tv", "shapes_seg_center", "shapes_box_center"]
)
def test_experiments_can_certify_every_eps_in(make_cfg, experiment):
    c = make_cfg(f"+experiment={experiment}").certify
    sigmas = list(c.sigma) if isinstance(c.sigma, ListConfig) else [c.sigma]
    assert delta1(c.n, c.alpha1) < c.delta  # the mass check can pass
    for sigma in sigmas:  # q <= 1 at the largest eps_in of every noise level
        largest = max(c.h) * sigma if c.h is not None else max(c.eps_in)
        assert quantile_level(largest, sigma, c.delta, c.m, c.alpha2) <= 1


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["+experiment=shapes_box_center", "model.iou_weight=-1"], "model.iou_weight=-1.0"),
        (["+experiment=shapes_box_center", "data.name=boxes"], "data.name='boxes'"),
        (["+experiment=digits_autoencoder_tv", "model.net.image_size=12"], "maps (1, 8, 8)"),
        (["+experiment=digits_autoencoder_tv", "model.net.image_size=6"], "image_size=6"),
    ],
)
def test_bad_settings_fail_in_one_line_before_training(make_cfg, tmp_path, overrides, message):
    cfg = make_cfg(*overrides, *TINY, "certify=none")
    with pytest.raises(Exception) as info:
        run = build_run(cfg)
        run.trainer.fit(run.module, datamodule=run.datamodule)
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError) and message in str(error) and "\n" not in str(error)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow  # runs train.py in a subprocess
def test_digits_autoencoder_trains_and_certifies_tv_and_l2_end_to_end(tmp_path):
    result = run_script(
        "train.py", *AUTOENCODER, *CENTER_TINY, "logger=csv", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("tv", "l2"):
        text = (tmp_path / f"center_{name}.tsv").read_text()
        assert f"# distance: {name}\n" in text and "# output_kind: image\n" in text
        rows = table_rows(tmp_path / f"center_{name}.tsv", ("idx", "eps_in", "eps_out", "sigma"))
        got = sorted((int(r[0]), float(r[3]), float(r[1])) for r in rows)
        levels = [(s, h * s) for s in (0.12, 0.25, 0.5) for h in (1.5, 2.0)]
        want = sorted((i, s, e) for i in range(2) for s, e in levels)
        assert [v for row in got for v in row] == pytest.approx([v for row in want for v in row])
        assert all(float(r[2]) > 0 for r in rows)  # inf where it abstained or q > 1 (h = 2)
        assert (tmp_path / f"center_curve_{name}.png").is_file()
    metrics = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/loss", "val/mse", "val/mse_noisy"):
        assert key in metrics
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    meta = checkpoint["smoothcert"]
    assert meta["task"] == "reconstruction" and meta["train_sigma"] == [0.12, 0.25, 0.5]
    assert meta["normalization"] == {"mean": [0.3053], "std": [0.376]}
    assert list((tmp_path / "checkpoints").glob("best-epoch*.ckpt"))  # monitored val/mse
