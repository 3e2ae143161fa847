"""What SegCertify draws: overlays of an image, its ground truth and both predictions."""

from __future__ import annotations

from pathlib import Path

import torch

from smoothcert.report.plots import palette, plt

TITLES = ("input", "ground truth", "base model", "certified (white: abstain)")


def save_overlay(path: Path, image, mask, base, certified, num_classes: int, ignore: int) -> Path:
    """Image, ground truth, base prediction and certified prediction (abstained pixels white)."""
    colours = palette(num_classes)

    def paint(labels: torch.Tensor) -> torch.Tensor:
        index = labels.clone()
        index[labels == -1], index[labels == ignore] = num_classes, num_classes + 1
        return colours[index.clamp(0, num_classes + 1)]

    panels = [image.permute(1, 2, 0), paint(mask), paint(base), paint(certified)]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), dpi=100)
    for ax, panel, title in zip(axes, panels, TITLES, strict=True):
        ax.imshow(panel.numpy())
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
