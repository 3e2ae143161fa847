"""What SegCertify reports, without Lightning or wandb: the pooled scores of its rows (per tau and
for the base model), its summary scalars, curve and lines, and the overlays of an image, its
ground truth and both predictions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.patches import Patch

from smoothcert.records.segmentation import BASE, Row, summarize_scores
from smoothcert.report.parts import Curve, Section
from smoothcert.report.plots import palette, plt

TITLES = ("input", "ground truth", "base model", "certified (white: abstain)")
CURVE = "certified_pixel_accuracy"


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


@dataclass
class SegCertifySummary:
    """SegCertify's rows pooled over the images: per kind (each tau, and ``BASE``) the scores of
    ``summarize_scores`` (``pooled``) and the seconds per image; per tau the ``radius`` every
    image is certified at (the smallest: images of one size share it, linf radii vary)."""

    taus: list[float]
    images: int
    pooled: dict[float, dict[str, float]]
    seconds: dict[float, float]
    radius: dict[float, float]

    @classmethod
    def of(cls, rows: Sequence[Row], taus: Sequence[float]) -> SegCertifySummary:
        kinds = (*taus, BASE)
        pooled = {
            k: summarize_scores(torch.stack([r.scores for r in rows if r.kind == k])) for k in kinds
        }
        images = len(rows) // len(kinds)
        seconds = {k: sum(r.seconds for r in rows if r.kind == k) / images for k in kinds}
        radius = {k: min(r.radius for r in rows if r.kind == k) for k in taus}
        return cls(list(taus), images, pooled, seconds, radius)

    def scalars(self, prefix: str) -> dict[str, float]:
        """``cert/pixel_acc``, ``cert/miou``, ``cert/abstain`` and ``<prefix>radius`` at the
        first tau, the seconds per image, the base model's scores and every tau's scores."""
        first, pooled, seconds = self.taus[0], self.pooled, self.seconds
        root = prefix.split("/")[0]  # cert, or heuristic for a prefix heuristic/... (no cert/)
        summary = {f"{root}/{name}": value for name, value in pooled[first].items()}
        summary[f"{prefix}radius"] = self.radius[first]
        summary[f"{root}/time_per_image"] = seconds[first]
        for name in ("pixel_acc", "miou"):
            summary[f"{root}/base_{name}"] = pooled[BASE][name]
        summary[f"{root}/base_time_per_image"] = seconds[BASE]
        for tau in self.taus:
            summary.update({f"{root}/{k}@tau{tau:g}": v for k, v in pooled[tau].items()})
        summary[f"{root}/num_examples"] = float(self.images)
        return summary

    def curve(self) -> tuple[list[float], list[float], dict[str, object]]:
        """The radius-vs-certified-pixel-accuracy curve (by radius) and how to draw it: a step
        at each tau (its pixels are certified up to its radius, not beyond), its points named by
        tau and the base model's accuracy as a level."""
        order, pooled, base = sorted(self.taus), self.pooled, self.pooled[BASE]["pixel_acc"]
        drawing = {
            "step": "pre",
            "points": [(self.radius[t], pooled[t]["pixel_acc"], f"tau={t:g}") for t in order],
            "levels": {f"base model pixel accuracy {base:.3f}": base},
        }
        return [self.radius[t] for t in order], [pooled[t]["pixel_acc"] for t in order], drawing

    def lines(self, norm: str) -> list[str]:
        """One line per tau (each holds at its own radius), then the base model and the times."""
        said = []
        for tau in self.taus:
            cert = self.pooled[tau]
            said.append(
                f"tau={tau:g} {norm} radius={self.radius[tau]:.4f}: certified pixel accuracy "
                f"{cert['pixel_acc']:.4f}, mIoU {cert['miou']:.4f}, abstain {cert['abstain']:.4f}"
            )
        base, seconds = self.pooled[BASE], self.seconds
        said.append(
            f"base model: pixel accuracy {base['pixel_acc']:.4f}, mIoU {base['miou']:.4f}; "
            f"{seconds[self.taus[0]]:.2f} s/image certified (base {seconds[BASE]:.3f}), "
            f"{self.images} images"
        )
        return said


def segcertify_section(
    rows: Sequence[Row], taus: Sequence[float], prefix: str, norm: str, title: Callable[[int], str]
) -> Section:
    """SegCertify's report section: the scalars of ``SegCertifySummary.scalars``, the curve
    ``certified_pixel_accuracy`` against the ``norm`` radius (titled ``title(images)``) and one
    line per tau, then the base model's."""
    pooled = SegCertifySummary.of(rows, taus)
    xs, ys, drawing = pooled.curve()
    curve = Curve(CURVE, "radius", xs, {CURVE: ys}, title(pooled.images), f"{norm} radius")
    curve.drawing = drawing
    return Section(pooled.scalars(prefix), curve, pooled.lines(norm))


def save_overlays(
    folder: Path,
    overlays: Sequence[tuple],
    num_classes: int,
    ignore: int,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """``folder/segcertify_<idx>.png`` of each of ``overlays`` ((idx, image, mask, base
    prediction, certified prediction)), drawn by ``save_overlay``; returns the paths."""
    folder.mkdir(exist_ok=True)
    paths = []
    for idx, x, mask, base, certified in overlays:
        path = folder / f"segcertify_{idx:05d}.png"
        maps = (mask, base, certified, num_classes, ignore)
        paths.append(save_overlay(path, x, *maps, class_names=names))
    return paths
