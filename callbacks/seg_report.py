"""What SegCertify draws: overlays of an image, its ground truth and both predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.patches import Patch

from smoothcert.report.plots import palette, plt

TITLES = ("input", "ground truth", "base model", "certified (white: abstain)")


def class_legend(
    maps: Sequence[torch.Tensor],
    num_classes: int,
    ignore: int,
    names: Sequence[str] | None = None,
) -> list[Patch]:
    """Legend entries for the label ``maps``: one per class that occurs in any of them (named by
    ``names``, else ``class k``), then ``abstain`` (white) and ``ignored`` (black) where they
    occur, each in the colour ``save_overlay`` paints it."""
    colours = palette(num_classes).numpy()
    present = set().union(*(set(m.unique().tolist()) for m in maps))
    entries = []
    for k in range(num_classes):
        if k in present:
            name = names[k] if names is not None and k < len(names) else f"class {k}"
            entries.append(Patch(facecolor=colours[k], edgecolor="0.3", label=name))
    if -1 in present:
        entries.append(Patch(facecolor="white", edgecolor="0.3", label="abstain"))
    if ignore in present and not 0 <= ignore < num_classes:
        entries.append(Patch(facecolor="black", edgecolor="0.3", label="ignored"))
    return entries


def save_overlay(
    path: Path,
    image,
    mask,
    base,
    certified,
    num_classes: int,
    ignore: int,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Image, ground truth, base prediction and certified prediction (abstained pixels white),
    with a legend of the classes shown (``class_legend``) under the panels."""
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
    entries = class_legend([mask, base, certified], num_classes, ignore, class_names)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.legend(
        handles=entries,
        loc="lower center",
        ncol=min(len(entries), 10),
        frameon=False,
        fontsize=9,
    )
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
