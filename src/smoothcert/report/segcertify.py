"""What SegCertify reports, without Lightning or wandb: the pooled scores of its rows (per tau and
for the base model), its summary scalars, curve and lines, and the overlays of an image, its
ground truth and both predictions. Point clouds (examples ``[C, N]``) get 3-D scatter overlays
and, with their dataset's part groups, the ShapeNet-part instance and class mIoU."""

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
HEURISTIC_CURVE = "heuristic_pixel_accuracy"  # the same curve of a heuristic (not certified)


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
    rows: Sequence[Row],
    taus: Sequence[float],
    prefix: str,
    norm: str,
    title: Callable[[int], str],
    dataset: object = None,
) -> Section:
    """SegCertify's report section: the scalars of ``SegCertifySummary.scalars``, the curve
    ``certified_pixel_accuracy`` against the ``norm`` radius (titled ``title(images)``) and one
    line per tau, then the base model's; for a heuristic's ``prefix`` (``heuristic/...``) the
    curve is ``heuristic_pixel_accuracy`` and the axis and lines say "not certified". For part
    segmentation (a ``dataset`` with part ``groups`` and ``category_of``, see
    :func:`part_protocol`) also the ShapeNet-part mIoUs."""
    pooled, sound = SegCertifySummary.of(rows, taus), prefix.split("/")[0] == "cert"
    xs, ys, drawing = pooled.curve()
    name, label = (CURVE, "") if sound else (HEURISTIC_CURVE, ", heuristic: not a certificate")
    curve = Curve(name, "radius", xs, {name: ys}, title(pooled.images), f"{norm} radius{label}")
    curve.drawing = drawing
    scalars, lines = pooled.scalars(prefix), pooled.lines(norm)
    if not sound:  # a heuristic (prefix heuristic/...) certifies nothing: its lines say so
        lines = [line.replace("certified", "heuristic (NOT certified)") for line in lines]
    protocol = part_protocol(dataset)
    if protocol is not None:
        extra, said = protocol.section(rows, taus, prefix.split("/")[0])
        scalars.update(extra)
        lines += said
    return Section(scalars, curve, lines)


@dataclass(frozen=True)
class PartProtocol:
    """The ShapeNet-part evaluation (PointNet's ``test_partseg``): each cloud's shape IoU is the
    mean over its category's parts of intersection / union, a part absent from both the ground
    truth and the prediction counting 1; abstained points count as errors (in the union, in no
    intersection). Instance mIoU is the mean over clouds, class mIoU the mean over the
    categories that occur among them of their clouds' mean (categories without a cloud are left
    out, not counted as 0). The restriction of predictions to the category's parts is the base
    model's (``smoothcert.models.pointnet``)."""

    names: tuple[str, ...]
    groups: tuple[tuple[int, ...], ...]
    category_of: Callable[[int], int]

    def shape_iou(self, row: Row) -> float:
        scores = row.scores.double()
        k = (scores.numel() - 4) // 2
        parts = list(self.groups[self.category_of(row.idx)])
        inter, union = scores[4 : 4 + k][parts], scores[4 + k :][parts]
        ious = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        return float(ious.mean())

    def mious(self, rows: Sequence[Row], kind: float) -> dict[str, float]:
        """``instance_miou``, ``class_miou`` and ``miou/<category>`` of the rows of ``kind``."""
        by_category: dict[int, list[float]] = {}
        for row in rows:
            if row.kind == kind:
                by_category.setdefault(self.category_of(row.idx), []).append(self.shape_iou(row))
        every = [iou for ious in by_category.values() for iou in ious]
        means = {c: sum(v) / len(v) for c, v in sorted(by_category.items())}
        result = {"instance_miou": sum(every) / len(every), "class_miou": 0.0}
        result["class_miou"] = sum(means.values()) / len(means)
        result.update({f"miou/{self.names[c]}": m for c, m in means.items()})
        return result

    def section(
        self, rows: Sequence[Row], taus: Sequence[float], root: str = "cert"
    ) -> tuple[dict, list[str]]:
        """The scalars (``cert/instance_miou``, ``cert/class_miou``, per category at the first
        tau; every tau's as ``...@tau``; the base model's as ``cert/base_...``; ``root`` in place
        of ``cert`` for a heuristic) and lines."""
        scalars, lines = {}, []
        for kind in (*taus, BASE):
            found = self.mious(rows, kind)
            name = "base model" if kind == BASE else f"tau={kind:g}"
            lines.append(
                f"{name}: instance mIoU {found['instance_miou']:.4f}, class mIoU "
                f"{found['class_miou']:.4f} (ShapeNet-part protocol)"
            )
            if kind == BASE:
                scalars.update({f"{root}/base_{k}": v for k, v in found.items() if "/" not in k})
                continue
            scalars.update({f"{root}/{k}@tau{kind:g}": v for k, v in found.items() if "/" not in k})
            if kind == taus[0]:
                scalars.update({f"{root}/{k}": v for k, v in found.items()})
        return scalars, lines


def part_protocol(dataset: object) -> PartProtocol | None:
    """The part-segmentation protocol of ``dataset`` (point clouds: its ``groups`` of parts per
    category and ``category_of(index)``), or None (images)."""
    groups, category_of = getattr(dataset, "groups", None), getattr(dataset, "category_of", None)
    if groups is None or category_of is None:
        return None
    names = tuple(g.category for g in groups)
    return PartProtocol(names, tuple(tuple(g.parts) for g in groups), category_of)


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
        draw = save_cloud_overlay if x.dim() == 2 else save_overlay  # [C, N]: a point cloud
        paths.append(draw(path, x, *maps, class_names=names))
    return paths


def save_cloud_overlay(
    path: Path,
    cloud,
    mask,
    base,
    certified,
    num_classes: int,
    ignore: int,
    class_names: Sequence[str] | None = None,
) -> Path:
    """A point cloud ``[C, N]`` (xyz first, y up) three times, as 3-D scatter plots: ground truth,
    base prediction and certified prediction, points coloured by part, abstained points grey,
    with a legend of the parts shown."""
    colours = palette(num_classes).numpy()
    xyz = cloud[:3].float().numpy()

    def paint(labels: torch.Tensor):
        index = labels.clamp(0, num_classes - 1).numpy()
        painted = colours[index].copy()
        painted[(labels == -1).numpy()] = (0.6, 0.6, 0.6)
        painted[(labels == ignore).numpy()] = (0.0, 0.0, 0.0)
        return painted

    fig = plt.figure(figsize=(12, 4.2), dpi=100)
    panels = (
        ("ground truth", mask),
        ("base model", base),
        ("certified (grey: abstain)", certified),
    )
    for i, (title, labels) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 3, i, projection="3d")
        ax.scatter(xyz[0], xyz[2], xyz[1], c=paint(labels), s=4, depthshade=False)
        ax.set_title(title)
        reach = float(abs(xyz).max()) or 1.0
        ax.set_xlim(-reach, reach), ax.set_ylim(-reach, reach), ax.set_zlim(-reach, reach)
        ax.set_box_aspect((1, 1, 1), zoom=1.35)
        ax.view_init(elev=20, azim=-60)
        ax.set_axis_off()
    entries = class_legend([mask, base, certified], num_classes, ignore, class_names)
    for entry in entries:
        if entry.get_label() == "abstain":
            entry.set_facecolor((0.6, 0.6, 0.6))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles=entries, loc="lower center", ncol=min(len(entries), 8), frameon=False)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
