"""SegCertify's records: one line per image and model (the base model, then each tau), with the
per-image score counts so that pooled pixel accuracy and mIoU can be recomputed on a resume.

``segcertify.tsv`` holds one record per image (``SegImage``: a line per tau of the header) and
``segcertify_base.tsv`` the base model's line per image (tau nan).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from smoothcert.records.schema import RecordSchema, resume_keys

__all__ = [
    "BASE",
    "SEG_BASE_SCHEMA",
    "SEG_COLUMNS",
    "SEG_RESUME_KEYS",
    "SEG_SCHEMA",
    "Row",
    "SegImage",
    "SegRecord",
    "seg_image_reader",
    "seg_images",
]

SEG_COLUMNS = ("idx", "tau", "radius", "pixel_acc", "miou", "abstain", "time", "scores")
# Settings that must agree for rows of two runs to belong to one certification.
SEG_RESUME_KEYS = resume_keys(
    "sigma", "n0", "n", "tau", "alpha", "joint", "correction", "budget", "scale", "flip",
    "num_classes", "ignore_index",
)  # fmt: skip
BASE = -1.0  # the ``kind`` of rows of the base model (certified rows carry their tau)


@dataclass(frozen=True)
class SegRecord:
    """One image at one tau (tau = nan for the base model): metrics, seconds and score counts."""

    idx: int
    tau: float
    radius: float
    pixel_acc: float
    miou: float
    abstain: float
    time: float
    scores: tuple[float, ...] = field(default=(), repr=False)

    def to_row(self) -> str:
        values = [self.tau, self.radius, self.pixel_acc, self.miou, self.abstain]
        scores = ",".join(repr(float(v)) for v in self.scores)
        return "\t".join(
            [str(self.idx), *(repr(float(v)) for v in values), f"{self.time:.6f}", scores]
        )


def summarize_scores(scores: Tensor) -> dict[str, float]:
    """Pooled metrics of ``score_segmentation`` rows ``[M, 4 + 2K]``: per-pixel accuracy over all
    images, mIoU as the mean IoU over every (image, class) pair with a non-empty union (App. A.1),
    and the abstention rate over all pixels. NaN where nothing was counted."""
    scores = torch.atleast_2d(scores).double()
    num_classes = (scores.shape[1] - 4) // 2
    correct, valid, abstained, total = scores[:, :4].sum(dim=0).tolist()
    intersection, union = scores[:, 4 : 4 + num_classes], scores[:, 4 + num_classes :]
    present = union > 0
    nan = float("nan")
    return {
        "pixel_acc": correct / valid if valid else nan,
        "miou": float((intersection[present] / union[present]).mean()) if present.any() else nan,
        "abstain": abstained / total if total else nan,
    }


@dataclass
class Row:
    """One image under one model: ``kind`` is tau (certified) or BASE; ``scores`` the counts of
    ``score_segmentation`` (kept to pool pixel accuracy and mIoU over images exactly)."""

    kind: float
    idx: int
    radius: float
    seconds: float
    scores: torch.Tensor

    def record(self) -> SegRecord:
        metrics = summarize_scores(self.scores)
        tau = float("nan") if self.kind == BASE else self.kind
        values = (metrics["pixel_acc"], metrics["miou"], metrics["abstain"])
        scores = tuple(self.scores.tolist())
        return SegRecord(self.idx, tau, self.radius, *values, self.seconds, scores)


@dataclass(frozen=True)
class SegImage:
    """The lines of one image in one file: the base model's line, or one line per tau (in
    increasing tau, as merged files hold them)."""

    idx: int
    rows: tuple[Row, ...]

    def to_row(self) -> str:
        return "\n".join(row.record().to_row() for row in self.rows)


def _row(line: Mapping[str, str]) -> Row:
    tau = float(line["tau"])
    scores = torch.tensor([float(v) for v in line["scores"].split(",")], dtype=torch.float64)
    kind = BASE if math.isnan(tau) else tau
    return Row(kind, int(line["idx"]), float(line["radius"]), float(line["time"]), scores)


def seg_images(base: bool) -> Callable[[Mapping[str, str], Sequence[Mapping[str, str]]], list]:
    """A parser of the base model's lines (``base``) or the certified ones: the images whose
    consecutive lines are complete (one base line, or one line per tau of the header, in any
    order; an image's rows come back in increasing tau); lines of an image a crash interrupted
    are dropped."""

    def parse(metadata: Mapping[str, str], lines: Sequence[Mapping[str, str]]) -> list[SegImage]:
        kinds: Sequence[float] = [BASE] if base else ast.literal_eval(metadata.get("tau", "[]"))
        wanted = sorted(float(k) for k in kinds)
        images: list[SegImage] = []
        run: list[Row] = []
        for line in lines:
            row = _row(line)
            if run and (row.idx != run[0].idx or row.kind in {r.kind for r in run}):
                run = []
            if row.kind not in wanted:
                run = []
                continue
            run.append(row)
            if sorted(r.kind for r in run) == wanted:
                images.append(SegImage(row.idx, tuple(sorted(run, key=lambda r: r.kind))))
                run = []
        return images

    return parse


SEG_SCHEMA: RecordSchema[SegImage] = RecordSchema(
    "segcertify.tsv", SEG_COLUMNS, SEG_RESUME_KEYS, seg_images(base=False), "SegCertify"
)
SEG_BASE_SCHEMA: RecordSchema[SegImage] = RecordSchema(
    "segcertify_base.tsv", SEG_COLUMNS, SEG_RESUME_KEYS, seg_images(base=True), "SegCertify"
)


def seg_image_reader(base: bool) -> Callable[[Path], tuple[dict[str, str], list[SegImage]]]:
    """A reader of ``segcertify_base.tsv`` (``base``) or ``segcertify.tsv``: the metadata and the
    complete images (see ``seg_images``)."""
    return (SEG_BASE_SCHEMA if base else SEG_SCHEMA).read
