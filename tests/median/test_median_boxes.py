"""Worst-case IoU over coordinate bounds: the 16 corners against a dense grid of boxes."""

from __future__ import annotations

import itertools
import math

import torch

from smoothcert.certifiers.median_boxes import box_iou, worst_iou, worst_pair_iou


def grid_boxes(lower: torch.Tensor, upper: torch.Tensor, steps: int = 7) -> torch.Tensor:
    axes = [
        torch.linspace(float(lo), float(hi), steps) for lo, hi in zip(lower, upper, strict=True)
    ]
    return torch.tensor(list(itertools.product(*[a.tolist() for a in axes])))


def test_worst_iou_is_the_grid_minimum() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        centre = torch.rand(4, generator=g).sort().values[[0, 1, 2, 3]]
        box = torch.tensor([centre[0], centre[1], centre[0] + 0.4, centre[1] + 0.3])
        width = 0.15 * torch.rand(4, generator=g)
        lower, upper = box - width, box + width
        target = box + 0.1 * torch.randn(4, generator=g)
        dense = box_iou(grid_boxes(lower, upper), target).min()
        assert float(worst_iou(lower, upper, target)) <= float(dense) + 1e-6
        assert float(worst_iou(lower, upper, target)) >= float(dense) - 0.05  # grid resolution


def test_exact_values() -> None:
    box = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert math.isclose(float(worst_iou(box, box, box)), 1.0)
    # the right edge anywhere in [1, 2]: worst at 2, IoU 1/2
    assert math.isclose(float(worst_iou(box, box + torch.tensor([0, 0, 1, 0]), box)), 0.5)
    # two boxes in [0,1]x[0,1] .. [0,2]x[0,1] differ most as [0,1] vs [0,2]
    assert math.isclose(float(worst_pair_iou(box, box + torch.tensor([0, 0, 1, 0]))), 0.5)
    assert float(worst_iou(box, torch.tensor([0, 0, math.inf, 1.0]), box)) == 0.0
