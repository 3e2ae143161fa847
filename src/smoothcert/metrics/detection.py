"""AP@50 of detections (COCO's definition at one IoU threshold), with certified boxes.

Per class: detections of all images sorted by score (descending, ties in input order); each is a
true positive when some ground-truth box of its class in its image, not yet matched, has IoU >=
the threshold with it (the unmatched one of largest IoU is taken), else a false positive.
Precision is made monotone (the running maximum from the right) and sampled at the 101 recall
levels 0, 0.01, ..., 1 (0 beyond the largest recall reached); AP is their mean, and AP@50 the mean
over the classes that have ground truth (as COCO; torchmetrics' MeanAveragePrecision computes
the same through pycocotools, which is not installed here).

A detection may carry bounds ``lower``/``upper`` on its box instead of a box: its IoU with a
ground truth is then the worst over the bounds (``worst_iou``), so the certified AP counts a
detection as a true positive only if every box within its bounds would be one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from smoothcert.certifiers.median_boxes import worst_iou

RECALL_LEVELS = np.linspace(0.0, 1.0, 101)


def class_ap(matches: np.ndarray, scores: np.ndarray, num_truths: int) -> float:
    """COCO's 101-point AP from per-detection true-positive flags and scores."""
    if num_truths == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = matches[order].astype(np.float64)
    cum_tp, cum_fp = np.cumsum(tp), np.cumsum(1.0 - tp)
    recall = cum_tp / num_truths
    precision = cum_tp / np.maximum(cum_tp + cum_fp, np.finfo(np.float64).eps)
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    sampled = []
    for level in RECALL_LEVELS:
        reached = np.searchsorted(recall, level, side="left")
        sampled.append(precision[reached] if reached < len(precision) else 0.0)
    return float(np.mean(sampled))


def average_precision(
    detections: Sequence[Mapping[str, Tensor]],
    truths: Sequence[Mapping[str, Tensor]],
    iou_threshold: float = 0.5,
) -> float:
    """AP at ``iou_threshold`` averaged over classes with ground truth (nan if none has any).

    Args:
        detections: per image ``boxes [K, 4]`` (or ``lower``/``upper`` [K, 4] bounds, and
            ``certified [K]``: an uncertified detection is never a true positive), ``scores [K]``,
            ``labels [K]``.
        truths: per image ``boxes [G, 4]`` and ``labels [G]``.
    """
    per_class: dict[int, tuple[list[float], list[bool]]] = {}
    counts: dict[int, int] = {}
    for found, truth in zip(detections, truths, strict=True):
        for label in truth["labels"].tolist():
            counts[label] = counts.get(label, 0) + 1
        lower = found.get("lower", found["boxes"])
        upper = found.get("upper", found["boxes"])
        certified = found.get("certified", torch.ones(len(found["scores"]), dtype=torch.bool))
        order = torch.argsort(-found["scores"], stable=True)
        matched = torch.zeros(len(truth["labels"]), dtype=torch.bool)
        for k in order.tolist():
            label = int(found["labels"][k])
            same = (truth["labels"] == label) & ~matched
            hit = False
            if bool(same.any()) and bool(certified[k]):
                ious = worst_iou(
                    lower[k].expand(len(same), 4),
                    upper[k].expand(len(same), 4),
                    truth["boxes"].float(),
                )
                ious = torch.where(same, ious, -1.0)
                best = int(ious.argmax())
                if float(ious[best]) >= iou_threshold:
                    matched[best], hit = True, True
            scores, hits = per_class.setdefault(label, ([], []))
            scores.append(float(found["scores"][k]))
            hits.append(hit)
    values = [
        class_ap(
            np.array(per_class.get(c, ([], []))[1], dtype=bool),
            np.array(per_class.get(c, ([], []))[0]),
            n,
        )
        for c, n in sorted(counts.items())
    ]
    return float(np.mean(values)) if values else float("nan")
