"""What median smoothing reports for a detector: base and smoothed AP@50, the certified lower bound
on AP@50 under attack, and the AP@50 of the certified boxes (not a bound) against eps
(``detection_ap.tsv``/``.png``, wandb) and figures of the certified boxes."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info

from smoothcert.report.center import show_image as _show_image
from callbacks.reporting import log_images, report_curves
from smoothcert.certifiers.classification import eval_mode
from smoothcert.certifiers.median_detection import smoothed_detections
from smoothcert.data.detection import target_boxes
from smoothcert.metrics.detection import ap_lower_bound, average_precision
from smoothcert.records.median import MedianRecord
from smoothcert.report.plots import plt

LABEL_COLOURS = ("tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
# Only a proven bound goes under cert/; the other columns are measurements (eval/).
CERTIFIED_COLUMNS = ("ap50_lower_bound", "certified_fraction")


def detection_tables(
    records: Sequence[MedianRecord], pl_module: LightningModule, dataset
) -> dict[str, list[float]]:
    """Per eps, in %: base AP@50 (the detector on the clean images), smoothed AP@50 (the medians),
    ``ap50_lower_bound`` (``ap_lower_bound``: <= the AP@50 of every output inside the bounds,
    every slot that can appear counted) and ``ap50_of_certified_boxes`` (the smoothed detections
    at x with their estimated scores, a true positive only if certified with worst IoU >= 0.5:
    not a bound on AP under attack, since slots absent at x can appear); and the share of the
    smoothed detections that are certified."""
    layout, truths, base = pl_module.layout, [], []
    with eval_mode(pl_module), torch.inference_mode():
        for record in records:
            x, targets = dataset[record.idx]
            labels, boxes = target_boxes(torch.as_tensor(targets))
            truths.append({"labels": labels, "boxes": boxes})
            found = pl_module.detect(torch.as_tensor(x)[None].to(pl_module.device))
            base += pl_module.detections_of(*found)
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


def _rect(ax, height: int, width: int, box, colour: str, style: str, line: float) -> None:
    """A normalized box (x1, y1, x2, y2) drawn on an image of ``height`` x ``width`` pixels."""
    x1, y1, x2, y2 = (float(v) for v in box)
    corner = (x1 * width - 0.5, y1 * height - 0.5)
    size = ((x2 - x1) * width, (y2 - y1) * height)
    style = {"edgecolor": colour, "linestyle": style, "linewidth": line}
    ax.add_patch(plt.Rectangle(corner, *size, fill=False, **style))


def save_detection_figures(
    trainer: Trainer,
    folder: Path,
    figures: Sequence[tuple],
    pl_module: LightningModule,
    guarantee: str = "",
) -> list[Path]:
    """Per kept example: the ground truth (green), the smoothed boxes (solid, one colour per
    label) and, dotted, the farthest each certified box's edges can move at the largest eps;
    ``guarantee`` (e.g. "per_box, alpha 0.001") goes in the title."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for idx, x, targets, record in figures:
        k = len(record.eps) - 1
        found = smoothed_detections(
            pl_module.layout,
            torch.as_tensor(record.estimate),
            torch.as_tensor(record.lower[k]),
            torch.as_tensor(record.upper[k]),
        )
        fig, ax = plt.subplots(figsize=(4, 4.2), dpi=100)
        _show_image(ax, x)
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
        ax.set_xticks([])
        ax.set_yticks([])
        fig.tight_layout()
        path = folder / f"median_detection_{idx:05d}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    log_images(trainer, "cert/median/detections", paths)
    return paths


def report_detection(
    trainer: Trainer,
    output_dir: Path,
    records: Sequence[MedianRecord],
    pl_module: LightningModule,
    dataset,
    figures: Sequence[tuple],
    statement: str = "",
    guarantee: str = "",
) -> tuple[dict[str, float], dict[str, Path]]:
    """Writes ``detection_ap.tsv``/``.png`` (AP@50 in % against eps; the TSV's ``#`` lines say
    which guarantee each column carries) and the figures; returns the scalars
    ``cert/detection/<column>@<eps>`` for ``CERTIFIED_COLUMNS``, ``eval/detection/...`` for the
    rest, and the curve's paths. ``statement``: the bounds' guarantee (``PercentileSmooth``)."""
    eps = list(records[0].eps)
    table = detection_tables(records, pl_module, dataset)
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
    paths = report_curves(
        trainer, output_dir, "detection_ap", "eps", eps, table, title, scalars, "AP@50 (%)", False
    )
    notes = [
        f"bounds: {statement}",
        "ap50_lower_bound: <= the AP@50 of every set of detections inside the bounds (every "
        "slot that can appear a possible false positive, any ranking); AP under attack is >= it "
        "when all bounds of every image hold",
        "ap50_of_certified_boxes: the detections at x, estimated scores, certified boxes as true "
        "positives; NOT a bound on AP under attack",
        "base_ap50, smoothed_ap50: measured, no guarantee",
    ]
    text = paths["tsv"].read_text(encoding="utf-8")
    paths["tsv"].write_text("".join(f"# {n}\n" for n in notes) + text, encoding="utf-8")
    rank_zero_info(
        "detection AP@50 (%): base {:.2f}, smoothed {:.2f}, certified lower bound {}, of the "
        "certified boxes (no bound) {} at eps {}".format(
            table["base_ap50"][0],
            table["smoothed_ap50"][0],
            " / ".join(f"{v:.2f}" for v in table["ap50_lower_bound"]),
            " / ".join(f"{v:.2f}" for v in table["ap50_of_certified_boxes"]),
            eps,
        )
    )
    save_detection_figures(trainer, output_dir / "median_examples", figures, pl_module, guarantee)
    return scalars, paths
