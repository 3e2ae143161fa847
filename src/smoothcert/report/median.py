"""What median (percentile) smoothing reports, without Lightning or wandb: per record file the
curves against eps (median interval width; for boxes the median certified IoU with the ground
truth and the median worst IoU between two certified boxes), the figures of the certified boxes
and, for a detector, AP@50 against eps (base, smoothed, the certified lower bound, the AP of the
certified boxes) with figures of the certified detections."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from matplotlib.patches import Rectangle
from torch import Tensor

from smoothcert.boxes import DetectionLayout, worst_iou, worst_pair_iou
from smoothcert.certifiers.median_detection import smoothed_detections
from smoothcert.data.detection import target_boxes
from smoothcert.metrics.detection import ap_lower_bound, average_precision
from smoothcert.records.median import MedianRecord
from smoothcert.report.center import show_image
from smoothcert.report.parts import Curve, Section
from smoothcert.report.plots import plt

LABEL_COLOURS = ("tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
# Only a proven bound goes under cert/; the other columns are measurements (eval/).
CERTIFIED_COLUMNS = ("ap50_lower_bound", "certified_fraction")
DETECTION_CURVE = "detection_ap"


def _median(values: Sequence[float]) -> float:
    """The median, inf once half the values are inf (np.median of inf and finite values)."""
    return float(np.median(np.asarray(values, dtype=np.float64))) if len(values) else math.nan


def box_curves(records: Sequence[MedianRecord]) -> dict[str, list[float]]:
    """Per eps over the examples: the median certified IoU with the ground truth (worst over the
    16 corners; 0 where a bound is infinite) and the median worst IoU of two boxes in the bounds
    (1 minus it: the counterpart of center smoothing's eps_out under 1 - IoU)."""
    eps = records[0].eps
    lower = torch.tensor(np.stack([r.lower for r in records]))  # [N, E, 4]
    upper = torch.tensor(np.stack([r.upper for r in records]))
    target = torch.tensor(np.stack([r.target for r in records]))[:, None].expand_as(lower)
    gt = worst_iou(lower, upper, target).numpy()  # [N, E]
    pair = worst_pair_iou(lower, upper).numpy()
    return {
        "certified_iou": [_median(gt[:, k]) for k in range(len(eps))],
        "certified_1_minus_iou": [1.0 - _median(pair[:, k]) for k in range(len(eps))],
    }


def curves_of(records: Sequence[MedianRecord], kind: str) -> dict[str, list[float]]:
    """The median (over examples) of the mean interval width over coordinates, per eps, and for
    boxes with targets the IoU curves of ``box_curves``."""
    widths = np.stack([(r.upper - r.lower).mean(axis=1) for r in records])  # [N, E]
    curves = {"width": [_median(widths[:, k]) for k in range(widths.shape[1])]}
    if kind == "box" and records[0].lower.shape[1] == 4 and np.isfinite(records[0].target).all():
        curves.update(box_curves(records))
    return curves


def median_section(
    key: str, records: Sequence[MedianRecord], kind: str, sigma: float, statement: str
) -> Section:
    """The section of the record file ``key`` (``median`` or ``expectation``): the curves of
    ``curves_of`` against eps (``<key>_curve``) with the scalars ``cert/<key>/<curve>@<eps>`` and
    ``cert/<key>/num_examples``, and one line. ``statement`` (the median bounds' guarantee) ends
    the median curve's title."""
    eps = list(records[0].eps)
    curves = curves_of(records, kind)
    scalars = {
        f"cert/{key}/{name}@{e:g}": value
        for name, values in curves.items()
        for e, value in zip(eps, values, strict=True)
    }
    scalars[f"cert/{key}/num_examples"] = float(len(records))
    title = f"{key} smoothing, sigma={sigma}: medians over examples\n"
    title += statement if key == "median" else "expectation bound (paper 000, Cor. 1)"
    curve = Curve(f"{key}_curve", "eps", eps, curves, title, None, "median over examples", False)
    said = "; ".join(
        f"{name} " + " / ".join(f"{v:.4g}" for v in values) for name, values in curves.items()
    )
    return Section(scalars, curve, [f"{key}: eps {eps} -> median {said}"])


def draw_certified_box(ax, record: MedianRecord, k: int, height: int, width: int) -> None:
    """The median box (blue), the ground truth (green) and, dotted, the farthest each edge can
    move at eps[k]: the outer box (lower x1, lower y1, upper x2, upper y2) and the inner one."""

    def rect(box, label: str, **style) -> None:
        x1, y1, x2, y2 = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
            ax.plot([], [], label=f"{label}: none", **{"color": style.get("edgecolor")})
            return
        corner = (x1 * width - 0.5, y1 * height - 0.5)
        ax.add_patch(
            Rectangle(
                corner, (x2 - x1) * width, (y2 - y1) * height, fill=False, label=label, **style
            )
        )

    lo, hi = record.lower[k], record.upper[k]
    if np.isfinite(record.target).all():
        rect(record.target, "ground truth", edgecolor="tab:green", linewidth=2)
    rect(record.estimate, "median box", edgecolor="tab:blue", linewidth=2)
    dotted = {"edgecolor": "tab:red", "linewidth": 1.5, "linestyle": ":"}
    rect((lo[0], lo[1], hi[2], hi[3]), f"edge range, eps={record.eps[k]:g}", **dotted)
    rect((hi[0], hi[1], lo[2], lo[3]), "_inner", **dotted)


def save_box_figures(folder: Path, figures: Sequence[tuple], guarantee: str = "") -> list[Path]:
    """One PNG per kept example (idx, x, target, record): the boxes of ``draw_certified_box`` at
    the largest eps whose bounds are finite (the first eps if none); ``guarantee`` (e.g.
    "per_box, alpha 0.001") goes in the title."""

    def draw(ax, idx: int, x: Tensor, _, record: MedianRecord) -> None:
        finite = [k for k in range(len(record.eps)) if np.isfinite(record.upper[k]).all()]
        k = finite[-1] if finite else 0
        draw_certified_box(ax, record, k, *x.shape[-2:])
        ax.legend(loc="lower right", fontsize=7)
        said = f"\nbounds {guarantee}" if guarantee else ""
        ax.set_title(f"#{idx}: median smoothing, eps={record.eps[k]:g}{said}", fontsize=9)

    return _save_figures(folder, figures, "median_box", draw)


def _save_figures(
    folder: Path, figures: Sequence[tuple], name: str, draw: Callable[..., None]
) -> list[Path]:
    """One PNG ``folder/{name}_{idx:05d}.png`` per kept example ``(idx, x, ...)``: the image
    ``x`` without ticks, with what ``draw(ax, idx, x, ...)`` adds on top."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for idx, x, *rest in figures:
        fig, ax = plt.subplots(figsize=(4, 4.2), dpi=100)
        show_image(ax, x)
        draw(ax, idx, x, *rest)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.tight_layout()
        path = folder / f"{name}_{idx:05d}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


# ----- a detector: AP@50 against eps ------------------------------------------------------------


def detections_of(layout: DetectionLayout, vector: Tensor) -> dict[str, Tensor]:
    """The detections (``boxes``, ``scores``, ``labels``) in a detector's output ``vector``
    (``[length]``, the base function median smoothing smooths: empty slots +inf)."""
    found = smoothed_detections(layout, vector, vector, vector)
    return {key: found[key] for key in ("boxes", "scores", "labels")}


def detection_tables(
    records: Sequence[MedianRecord],
    layout: DetectionLayout,
    targets: Sequence[Tensor],
    clean: Sequence[Tensor],
) -> dict[str, list[float]]:
    """Per eps, in %: base AP@50 (the detector's output vector on each clean image, ``clean``:
    the base function certification evaluated at x; slots beyond a bin's capacity are not in it),
    smoothed AP@50 (the medians), ``ap50_lower_bound`` (``ap_lower_bound``: <= the AP@50 of every
    output inside the bounds, every slot that can appear counted) and ``ap50_of_certified_boxes``
    (the smoothed detections at x with their estimated scores, a true positive only if certified
    with worst IoU >= 0.5: not a bound on AP under attack, since slots absent at x can appear);
    and the share of the smoothed detections that are certified. ``targets``: each record's
    detection targets ``[T, 5]``."""
    truths = []
    for target in targets:
        labels, boxes = target_boxes(torch.as_tensor(target))
        truths.append({"labels": labels, "boxes": boxes})
    base = [detections_of(layout, torch.as_tensor(vector)) for vector in clean]
    eps = list(records[0].eps)
    smoothed, certified = [], {k: [] for k in range(len(eps))}
    bounds = {k: [] for k in range(len(eps))}
    for record in records:
        estimate = torch.as_tensor(record.estimate)
        for k in range(len(eps)):
            lower, upper = torch.as_tensor(record.lower[k]), torch.as_tensor(record.upper[k])
            found = smoothed_detections(layout, estimate, lower, upper)
            certified[k].append(found)
            bounds[k].append((layout.slots_of(lower), layout.slots_of(upper)))
        smoothed.append({key: found[key] for key in ("boxes", "scores", "labels")})
    base_ap = 100 * average_precision(base, truths)
    smoothed_ap = 100 * average_precision(smoothed, truths)
    return {
        "base_ap50": [base_ap] * len(eps),
        "smoothed_ap50": [smoothed_ap] * len(eps),
        "ap50_lower_bound": [100 * ap_lower_bound(bounds[k], truths) for k in bounds],
        "ap50_of_certified_boxes": [
            100 * average_precision(certified[k], truths) for k in certified
        ],
        "certified_fraction": [
            float(torch.cat([f["certified"] for f in certified[k]]).float().mean())
            if any(len(f["certified"]) for f in certified[k])
            else 0.0
            for k in certified
        ],
    }


def detection_notes(statement: str) -> list[str]:
    """The ``#`` lines that head ``detection_ap.tsv``: which guarantee each column carries."""
    return [
        f"bounds: {statement}",
        "ap50_lower_bound: <= the AP@50 of every set of detections inside the bounds (every "
        "slot that can appear a possible false positive, any ranking); AP under attack is >= it "
        "when all bounds of every image hold",
        "ap50_of_certified_boxes: the detections at x, estimated scores, certified boxes as true "
        "positives; NOT a bound on AP under attack",
        "base_ap50, smoothed_ap50: measured, no guarantee",
    ]


def detection_section(
    records: Sequence[MedianRecord],
    layout: DetectionLayout,
    targets: Sequence[Tensor],
    clean: Sequence[Tensor],
    guarantee: str = "",
) -> Section:
    """``detection_ap`` (AP@50 in % against eps, ``detection_tables``) with the scalars
    ``cert/detection/<column>@<eps>`` for ``CERTIFIED_COLUMNS``, ``eval/detection/...`` for the
    rest, and one line. ``guarantee`` (e.g. "per_box, alpha 0.001") goes in the title."""
    eps = list(records[0].eps)
    table = detection_tables(records, layout, targets, clean)
    scalars = {
        f"{'cert' if name in CERTIFIED_COLUMNS else 'eval'}/detection/{name}@{e:g}": value
        for name, values in table.items()
        for e, value in zip(eps, values, strict=True)
    }
    title = (
        f"median smoothing of a detector: AP@50 (%), {len(records)} images\n"
        f"bounds {guarantee or 'as in median.tsv'}; ap50_lower_bound: proven\n"
        "ap50_of_certified_boxes: no bound on AP under attack"
    )
    curve = Curve(DETECTION_CURVE, "eps", eps, table, title, None, "AP@50 (%)", False)
    line = "detection AP@50 (%): base {:.2f}, smoothed {:.2f}, certified lower bound {}, of the "
    line += "certified boxes (no bound) {} at eps {}"
    line = line.format(
        table["base_ap50"][0],
        table["smoothed_ap50"][0],
        " / ".join(f"{v:.2f}" for v in table["ap50_lower_bound"]),
        " / ".join(f"{v:.2f}" for v in table["ap50_of_certified_boxes"]),
        eps,
    )
    return Section(scalars, curve, [line])


def _rect(ax, height: int, width: int, box, colour: str, style: str, line: float) -> None:
    """A normalized box (x1, y1, x2, y2) drawn on an image of ``height`` x ``width`` pixels."""
    x1, y1, x2, y2 = (float(v) for v in box)
    corner = (x1 * width - 0.5, y1 * height - 0.5)
    size = ((x2 - x1) * width, (y2 - y1) * height)
    style = {"edgecolor": colour, "linestyle": style, "linewidth": line}
    ax.add_patch(plt.Rectangle(corner, *size, fill=False, **style))


def save_detection_figures(
    folder: Path, figures: Sequence[tuple], layout: DetectionLayout, guarantee: str = ""
) -> list[Path]:
    """Per kept example (idx, x, targets, record): the ground truth (green), the smoothed boxes
    (solid, one colour per label) and, dotted, the farthest each certified box's edges can move
    at the largest eps; ``guarantee`` (e.g. "per_box, alpha 0.001") goes in the title."""

    def draw(ax, idx: int, x: Tensor, targets: Tensor, record: MedianRecord) -> None:
        k = len(record.eps) - 1
        found = smoothed_detections(
            layout,
            torch.as_tensor(record.estimate),
            torch.as_tensor(record.lower[k]),
            torch.as_tensor(record.upper[k]),
        )
        height, width = x.shape[-2:]

        rect = partial(_rect, ax, height, width)
        _, boxes = target_boxes(torch.as_tensor(targets))
        for box in boxes:
            rect(box, "tab:green", "-", 2.5)
        for j in range(len(found["labels"])):
            colour = LABEL_COLOURS[int(found["labels"][j]) % len(LABEL_COLOURS)]
            rect(found["boxes"][j], colour, "-", 1.5)
            if bool(found["certified"][j]):
                lo, hi = found["lower"][j], found["upper"][j]
                rect((lo[0], lo[1], hi[2], hi[3]), colour, ":", 1.2)
                rect((hi[0], hi[1], lo[2], lo[3]), colour, ":", 1.2)
        count = int(found["certified"].sum())
        ax.set_title(
            f"#{idx}: {len(found['labels'])} smoothed, {count} certified (eps={record.eps[k]:g}"
            f"{', ' + guarantee if guarantee else ''})\n"
            "green: truth; solid: median box; dotted: edge range",
            fontsize=8,
        )

    return _save_figures(folder, figures, "median_detection", draw)
