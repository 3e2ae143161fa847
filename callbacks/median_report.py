"""What median smoothing reports: curves against eps, scalars and box figures."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.patches import Rectangle
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info

from smoothcert.report.center import show_image as _show_image
from callbacks.median_detection_report import report_detection
from callbacks.reporting import log_images, log_locations, report_curves
from smoothcert.certifiers.median_boxes import worst_iou, worst_pair_iou
from smoothcert.records.median import MedianRecord
from smoothcert.report.plots import plt


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


def save_box_figures(
    trainer: Trainer, folder: Path, figures: Sequence[tuple], guarantee: str = ""
) -> list[Path]:
    """One PNG per kept example (idx, x, target, record): the boxes of ``draw_certified_box`` at
    the largest eps whose bounds are finite (the first eps if none); ``guarantee`` (e.g.
    "per_box, alpha 0.001") goes in the title."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for idx, x, _, record in figures:
        finite = [k for k in range(len(record.eps)) if np.isfinite(record.upper[k]).all()]
        k = finite[-1] if finite else 0
        fig, ax = plt.subplots(figsize=(4, 4.2), dpi=100)
        _show_image(ax, x)
        draw_certified_box(ax, record, k, *x.shape[-2:])
        ax.legend(loc="lower right", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        said = f"\nbounds {guarantee}" if guarantee else ""
        ax.set_title(f"#{idx}: median smoothing, eps={record.eps[k]:g}{said}", fontsize=9)
        fig.tight_layout()
        path = folder / f"median_box_{idx:05d}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    log_images(trainer, "cert/median/examples", paths)
    return paths


def report_median(
    trainer: Trainer,
    output_dir: Path,
    records: Mapping[str, Sequence[MedianRecord]],
    pl_module: LightningModule,
    figures: Sequence[tuple],
    statement: str,
    dataset=None,
    sigma: float | None = None,
    guarantee: str = "",
) -> dict[str, float]:
    """Rank 0: per record file (``median``, ``expectation``) the curves against eps
    (``<key>_curve.tsv``/``.png``, wandb) with scalars ``cert/<key>/<curve>@<eps>``; the box
    figures in ``median_examples/``; for a detector the AP@50 table of ``report_detection``
    instead (``dataset``: the certified split). Returns the scalars."""
    kind, summary, paths = pl_module.output_kind, {}, []
    for key, certified in records.items():
        if not certified:
            continue
        if kind == "detection":  # slots are often empty (inf): AP instead of interval widths
            scalars, curve = report_detection(
                trainer, output_dir, certified, pl_module, dataset, figures, statement, guarantee
            )
            summary.update(scalars)
            paths.append(curve)
            continue
        eps = list(certified[0].eps)
        curves = curves_of(certified, kind)
        scalars = {
            f"cert/{key}/{name}@{e:g}": value
            for name, values in curves.items()
            for e, value in zip(eps, values, strict=True)
        }
        scalars[f"cert/{key}/num_examples"] = float(len(certified))
        title = f"{key} smoothing, sigma={sigma}: medians over examples\n"
        title += statement if key == "median" else "expectation bound (paper 000, Cor. 1)"
        paths.append(
            report_curves(
                trainer,
                output_dir,
                f"{key}_curve",
                "eps",
                eps,
                curves,
                title,
                scalars,
                "median over examples",
                False,
            )
        )
        summary.update(scalars)
        said = "; ".join(
            f"{name} " + " / ".join(f"{v:.4g}" for v in values) for name, values in curves.items()
        )
        rank_zero_info(f"{key}: eps {eps} -> median {said}")
    if kind == "box" and figures:
        save_box_figures(trainer, output_dir / "median_examples", figures, guarantee)
    log_locations(trainer, f"{', '.join(f'{k}.tsv' for k in records)} in {output_dir}", paths)
    return summary
