"""PASCAL-Context: both accepted label layouts on tiny 8x8 fixtures, the 459 -> 59 mapping, the
experiment's settings and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.io import savemat

from smoothcert import ConfigError
from smoothcert.data.pascal_context import (
    CONTEXT_IDS,
    PascalContextSegmentation,
    full_vocabulary_lut,
    pascal_context_layout,
)
from smoothcert.data.segmentation import build_segmentation_splits
from smoothcert.models.segmenters import timm_segmenter

SPLITS = {"train": ["2008_000002", "2008_000003"], "val": ["2008_000007", "2010_000001"]}
# Full-vocabulary ids in the fixture's .mat files and their classes: aeroplane 2 -> 0, bag 9 -> 1,
# person 284 -> 36 (its rank among the 60 kept ids, minus one), 458 -> 58 (the last), unlabelled 0
# and accordion 1 (not among the 59) -> ignored (255).
FULL_IDS = (2, 9, 284, 458, 0, 1)
CLASSES = (0, 1, 36, 58, 255, 255)


def fixture_labels(index: int) -> np.ndarray:
    """8x8 full-vocabulary ids: rows of FULL_IDS, shifted per image."""
    rows = np.array(FULL_IDS)[(np.arange(8) + index) % len(FULL_IDS)]
    return np.repeat(rows[:, None], 8, axis=1)


def write_voc2010(root: Path, layout: str) -> Path:
    """``root/VOCdevkit/VOC2010`` with 8x8 JPEGs and labels in ``layout`` (png | mat)."""
    voc = root / "VOCdevkit" / "VOC2010"
    (voc / "JPEGImages").mkdir(parents=True)
    lists = voc / "ImageSets" / ("SegmentationContext" if layout == "png" else "Main")
    lists.mkdir(parents=True)
    labels = voc / ("SegmentationClassContext" if layout == "png" else "trainval")
    labels.mkdir()
    for split, names in SPLITS.items():
        (lists / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    for i, name in enumerate(n for names in SPLITS.values() for n in names):
        ids = fixture_labels(i)
        Image.fromarray((ids[..., None] % 256).repeat(3, -1).astype(np.uint8)).save(
            voc / "JPEGImages" / f"{name}.jpg"
        )
        if layout == "png":  # mmseg's converted labels: rank among CONTEXT_IDS, 0 = background
            ranks = np.digitize(np.where(np.isin(ids, CONTEXT_IDS), ids, 0), CONTEXT_IDS, True)
            Image.fromarray(ranks.astype(np.uint8)).save(labels / f"{name}.png")
        else:
            savemat(labels / f"{name}.mat", {"LabelMap": ids.astype(np.uint16)})
    return voc


def test_the_459_to_59_map_is_hrnets_rank_map():
    lut = full_vocabulary_lut()
    assert len(CONTEXT_IDS) == 60 and lut[CONTEXT_IDS[1:]].tolist() == list(range(59))
    mask = np.array([[0, 2, 9], [284, 458, 115]])
    assert (lut[mask] == np.digitize(mask, CONTEXT_IDS, right=True) - 1).sum() == 5  # all but 0
    assert lut[0] == lut[1] == lut[459] == 255 and (lut != 255).sum() == 59


@pytest.mark.parametrize("layout", ["png", "mat"])
def test_both_official_layouts_read_the_same_classes(tmp_path, layout):
    voc = write_voc2010(tmp_path, layout)
    for data_dir in (tmp_path, tmp_path / "VOCdevkit", voc):
        assert pascal_context_layout(data_dir)[0] == voc
    splits = build_segmentation_splits(
        "pascal_context", tmp_path, crop_size=(4, 4), scale_range=(1.0, 1.0)
    )
    assert len(splits.train) == len(splits.val) == 2 and splits.test is splits.val
    image, mask = splits.val[1]
    assert image.shape == (3, 8, 8) and image.min() >= 0 and image.max() <= 1
    expected = np.array(CLASSES)[(np.arange(8) + 3) % len(CLASSES)]
    assert mask.tolist() == np.repeat(expected[:, None], 8, axis=1).tolist()
    image, mask = splits.train[0]
    assert image.shape == (3, 4, 4) and mask.shape == (4, 4)


def test_missing_data_or_labels_and_bad_values_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError) as info:
        pascal_context_layout(tmp_path / "nowhere")
    message = str(info.value)
    assert "\n" not in message and "paths.data_dir=" in message and "JPEGImages/" in message
    assert "SegmentationClassContext" in message and "trainval/*.mat" in message
    voc = write_voc2010(tmp_path / "nolabels", "png")
    (voc / "SegmentationClassContext" / "2008_000002.png").unlink()
    (voc / "SegmentationClassContext").rename(voc / "elsewhere")
    with pytest.raises(ConfigError, match="no context labels beside .*JPEGImages"):
        build_segmentation_splits("pascal_context", tmp_path / "nolabels")
    voc = write_voc2010(tmp_path / "bad", "mat")
    savemat(voc / "trainval" / "2008_000007.mat", {"LabelMap": np.full((8, 8), 460, np.uint16)})
    with pytest.raises(ConfigError, match=r"label values \[460\] outside 0..459"):
        PascalContextSegmentation(tmp_path / "bad", "val")[0]


def test_pascal_context_seg_is_the_papers_setting_and_fails_in_one_line_without_data(
    make_cfg, tmp_path
):
    cfg = make_cfg("+experiment=pascal_context_seg", f"paths.data_dir={tmp_path / 'nowhere'}")
    c = cfg.certify
    assert (cfg.sigma, c.n0, c.n, list(c.tau), c.alpha, c.correction) == (
        0.25, 10, 100, [0.75], 0.001, "holm"
    )  # fmt: skip
    assert (c.scale, c.num_examples, c.skip, cfg.model.net.model_name) == (
        0.25, 100, 51, "hrnet_w48"
    )  # fmt: skip
    assert (cfg.data.num_classes, cfg.data.ignore_index, cfg.model.num_classes) == (59, 255, 59)
    with pytest.raises(Exception) as info:
        hydra.utils.instantiate(cfg.data)
    error = info.value
    while not isinstance(error, ConfigError) and error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, ConfigError) and "\n" not in str(error)
    assert str(tmp_path / "nowhere") in str(error) and "paths.data_dir" in str(error)


def test_hrnet_segments_images_of_any_size_as_pascal_context_holds():
    """VOC2010 images are about 500x375, not multiples of HRNet's stride 32 (at scale 0.25 too):
    the segmenter pads them and crops the logits, and leaves multiples of 32 unchanged."""
    torch.manual_seed(0)
    net = timm_segmenter(
        "hrnet_w18_small", 3, feature_location="", out_indices=[1, 2, 3, 4], head_channels=8
    ).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        with pytest.raises(RuntimeError):  # timm's HRNet alone fuses its branches at multiples only
            net.encoder(x[..., :38, :70])
        assert net(x[..., :38, :70]).shape == (1, 3, 38, 70)
        plain = F.interpolate(net.head(net.encoder(x)), size=(64, 96), mode="bilinear")
        assert torch.equal(net(x), plain)
