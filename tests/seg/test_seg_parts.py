"""Shapes data, Cityscapes reading, segmentation models and objectives, per-image scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.classification import MulticlassAccuracy

from smoothcert import ABSTAIN, ConfigError
from smoothcert.certifiers.segmentation import score_segmentation
from smoothcert.data.segmentation import (
    CityscapesSegmentation,
    PairedAugment,
    check_label_map,
    cityscapes_root,
)
from smoothcert.data.shapes import ShapesDataset, render_shapes
from smoothcert.models.segmenters import (
    IGNORE,
    NormalizedSegmenter,
    ScaledInference,
    timm_segmenter,
)
from smoothcert.noise import GaussianNoise
from smoothcert.records.segmentation import summarize_scores
from smoothcert.regimes import SegmentationConsistency, consistency_loss

# Cityscapes label ids and their train ids: road 7 -> 0, building 11 -> 2, sky 23 -> 10,
# car 26 -> 13; unlabeled 0 and ego vehicle 1 are ignored (255).
LABEL_IDS = (7, 11, 23, 26, 0, 1)


def write_cityscapes_tree(root: Path, size=(128, 256), per_split: int = 2, bad_id=None) -> Path:
    """A tiny tree in the official layout with real label ids (stripes of LABEL_IDS)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(per_split):
            stem = f"aachen_{i:06d}_000019"
            image_dir, label_dir = (
                root / top / split / "aachen" for top in ("leftImg8bit", "gtFine")
            )
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            ids = np.array(LABEL_IDS, dtype=np.uint8)[
                np.arange(size[0]) * len(LABEL_IDS) // size[0]
            ]
            ids = np.repeat(ids[:, None], size[1], axis=1)
            if bad_id is not None:
                ids[0, 0] = bad_id
            image = (ids[..., None] * 9 + rng.integers(0, 20, (*size, 3))).astype(np.uint8)
            Image.fromarray(image).save(image_dir / f"{stem}_leftImg8bit.png")
            Image.fromarray(ids).save(label_dir / f"{stem}_gtFine_labelIds.png")
    return root


def test_shapes_are_seeded_in_range_and_labelled():
    first, again = render_shapes(0, 3, "val"), render_shapes(0, 3, "val")
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], render_shapes(0, 3, "test")[0])
    data = ShapesDataset(50, "train", seed=1, ignore_boundary=1)
    images = torch.stack([data[i][0] for i in range(50)])
    masks = torch.stack([data[i][1] for i in range(50)])
    assert images.shape == (50, 3, 64, 64) and images.min() >= 0 and images.max() <= 1
    assert set(masks.unique().tolist()) == {0, 1, 2, 3, 4, 255}
    check_label_map(masks, 5, 255)
    with pytest.raises(ConfigError, match=r"label ids \[7\] outside the 5 classes"):
        check_label_map(torch.tensor([[0, 7, 255]]), 5, 255)


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    root = write_cityscapes_tree(tmp_path / "cityscapes")
    assert cityscapes_root(root) == root
    assert cityscapes_root(tmp_path) == root  # data_dir/cityscapes is accepted too
    image, mask = CityscapesSegmentation(root, "val")[0]
    assert image.shape == (3, 128, 256) and image.min() >= 0 and image.max() <= 1
    assert mask.unique().tolist() == [0, 2, 10, 13, 255]
    crop = PairedAugment((64, 96), (0.5, 1.5), flip=True)
    image, mask = CityscapesSegmentation(root, "train", crop)[1]
    assert image.shape == (3, 64, 96) and mask.shape == (64, 96)


def test_cityscapes_problems_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError) as info:
        cityscapes_root(tmp_path / "nowhere")
    message = str(info.value)
    assert "\n" not in message and "leftImg8bit/" in message and "gtFine/" in message
    assert "cityscapes-dataset.com" in message
    root = write_cityscapes_tree(tmp_path / "bad", bad_id=200)
    with pytest.raises(ConfigError, match=r"label ids \[200\] that Cityscapes does not define"):
        CityscapesSegmentation(root, "val")[0]


def test_segmenter_returns_full_resolution_logits_at_every_scale():
    net = timm_segmenter("lcnet_050", 5, out_indices=[1, 2, 3], head_channels=16)
    model = NormalizedSegmenter(net, [0.5] * 3, [0.25] * 3).eval()
    assert [c for c in net.encoder.feature_info.channels()] == [32, 64, 128]
    x = torch.rand(2, 3, 48, 40)
    for scales, flip in [(1.0, False), (0.25, False), ([0.5, 1.0], True)]:
        assert ScaledInference(model, scales, flip)(x).shape == (2, 5, 48, 40)
    assert "normalize.mean" in model.state_dict()
    with pytest.raises(ConfigError, match="model.net.pretrained=false"):
        timm_segmenter("lcnet_050", 5, pretrained=True)
    with pytest.raises(ConfigError, match="scale"):
        ScaledInference(model, 0.0)


def test_consistency_objective_is_per_pixel_and_skips_ignored_pixels():
    torch.manual_seed(0)
    pixelwise = torch.nn.Conv2d(3, 4, 1)  # each pixel's logits depend on that pixel only
    objective = SegmentationConsistency(GaussianNoise(0.0), m=2, lbd=1.0, eta=0.5)
    x, y = torch.rand(2, 3, 5, 6), torch.randint(0, 4, (2, 5, 6))
    y[:, :2] = IGNORE
    loss = objective(pixelwise, x, y)
    # The classification loss with every non-ignored pixel as one example gives the same value.
    logits = pixelwise(x).permute(0, 2, 3, 1)[y != IGNORE]  # [P, K]
    expected = consistency_loss(logits.expand(2, -1, -1), y[y != IGNORE], 1.0, 0.5)
    assert torch.allclose(loss, expected)
    changed = x.clone()
    changed[:, :, :2] = torch.rand(2, 3, 2, 6)  # ignored pixels do not matter
    assert torch.allclose(objective(pixelwise, changed, y), loss)


def test_scores_pool_pixel_accuracy_and_miou_as_in_appendix_a1():
    mask = torch.tensor([[0, 1, 1], [2, 255, 0]])
    certified = torch.tensor([[0, 1, ABSTAIN], [2, 2, 1]])
    scores = score_segmentation(certified, mask, 3)
    summary = summarize_scores(scores)
    assert summary["pixel_acc"] == pytest.approx(3 / 5)  # ignored pixel left out, abstain wrong
    assert summary["abstain"] == pytest.approx(1 / 6)
    assert summary["miou"] == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)
    # Over several images: pooled accuracy equals torchmetrics' with the ignore index.
    torch.manual_seed(0)
    masks, preds = torch.randint(0, 4, (5, 9, 7)), torch.randint(0, 4, (5, 9, 7))
    masks[:, 0] = 255
    pooled = summarize_scores(
        torch.stack([score_segmentation(p, m, 4) for p, m in zip(preds, masks, strict=True)])
    )
    metric = MulticlassAccuracy(4, average="micro", ignore_index=255)
    assert pooled["pixel_acc"] == pytest.approx(float(metric(preds, masks)))
