"""data=digits32: the 8x8 digits upsampled onto a 32x32 canvas for rotation and translation."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from smoothcert.data.classification import (
    build_splits,
    digits32_splits,
    digits_splits,
    upsample_onto_canvas,
)
from smoothcert.errors import ConfigError
from smoothcert.models import DigitsCNN


def _stack(dataset):
    images, labels = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(images), torch.stack(labels)


@pytest.fixture(scope="module")
def splits():
    return digits32_splits(seed=0)


def test_shapes_sizes_and_range(splits):
    for split, size in (("train", 1257), ("val", 180), ("test", 360)):
        images, labels = _stack(splits.get(split))
        assert images.shape == (size, 1, 32, 32)
        assert images.dtype == torch.float32
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert images.max() > 0.99  # bilinear keeps the full ink range, not a dimmed copy
        assert set(labels.tolist()) == set(range(10))


def test_black_margin_keeps_the_digit_inside_the_inscribed_disc(splits):
    images, _ = _stack(splits.get("train"))
    ink = images.abs().sum(dim=(0, 1)) > 0
    rows, cols = torch.nonzero(ink, as_tuple=True)
    assert rows.min() >= 6 and rows.max() <= 25 and cols.min() >= 6 and cols.max() <= 25
    centre = 15.5
    distance = ((rows.float() - centre) ** 2 + (cols.float() - centre) ** 2).sqrt()
    assert distance.max() < 16.0


def test_same_images_labels_and_split_as_digits(splits):
    small_images, small_labels = _stack(digits_splits(seed=0).get("test"))
    images, labels = _stack(splits.get("test"))
    assert torch.equal(labels, small_labels)
    assert torch.equal(images, upsample_onto_canvas(small_images))


def test_upsampling_is_bilinear_and_centered():
    constant = upsample_onto_canvas(torch.full((1, 1, 8, 8), 0.7))
    assert torch.allclose(constant[0, 0, 6:26, 6:26], torch.tensor(0.7))
    assert constant.sum() == pytest.approx(0.7 * 400, rel=1e-5)
    ramp = torch.arange(8.0).repeat(8, 1)[None, None] / 7  # columns 0..1, linear
    row = upsample_onto_canvas(ramp)[0, 0, 16, 6:26]
    inner = row[2:-2]  # away from the clamped border, bilinear reproduces a linear ramp
    assert torch.allclose(inner.diff(), torch.full_like(inner.diff(), 8 / 20 / 7), atol=1e-5)


def test_deterministic_and_seeded():
    first, _ = _stack(digits32_splits(seed=0).get("val"))
    again, _ = _stack(build_splits("digits32", "unused", seed=0).get("val"))
    other, _ = _stack(digits32_splits(seed=1).get("val"))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_config_statistics_match_the_data(splits):
    cfg = OmegaConf.load("conf/data/digits32.yaml")
    images, _ = _stack(splits.get("train"))
    assert cfg.name == "digits32"
    assert cfg.mean[0] == pytest.approx(images.mean().item(), abs=1e-3)
    assert cfg.std[0] == pytest.approx(images.std().item(), abs=1e-3)


def test_digits_cnn_takes_32x32(splits):
    images, _ = _stack(splits.get("val"))
    assert DigitsCNN(num_classes=10)(images[:4]).shape == (4, 10)


def test_digit_larger_than_canvas_is_refused():
    with pytest.raises(ConfigError, match="digit size"):
        upsample_onto_canvas(torch.zeros(1, 1, 8, 8), digit=40, canvas=32)


def test_composes_with_the_digits_model(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg("data=digits32")
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    assert datamodule.splits.get("train")[0][0].shape == (1, 32, 32)
