"""AP@50 of detections (COCO's definition at one IoU threshold), with certified boxes.

Per class: detections of all images sorted by score (descending, ties in input order); each is a
true positive when some ground-truth box of its class in its image, not yet matched, has IoU >=
the threshold with it (the unmatched one of largest IoU is taken), else a false positive.
Precision is made monotone (the running maximum from the right) and sampled at the 101 recall
levels 0, 0.01, ..., 1 (0 beyond the largest recall reached); AP is their mean, and AP@50 the mean
over the classes that have ground truth (as COCO; torchmetrics' MeanAveragePrecision computes
the same through pycocotools, which is not installed here).

A detection may carry bounds ``lower``/``upper`` on its box instead of a box: its IoU with a
ground truth is then the worst over the bounds (``worst_iou``), so ``average_precision`` counts a
detection as a true positive only if every box within its bounds would be one. That number, "AP@50
of the certified boxes", is NOT a lower bound on AP under attack: it keeps only the detections
present at x, at their estimated scores, while a slot absent at x whose bounds allow it can appear
under attack as a false positive of any score. ``ap_lower_bound`` is a lower bound on the AP of
every output inside the bounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from smoothcert.boxes import SLOT, worst_iou

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


def best_iou_upper(lower: Tensor, upper: Tensor, truth: Tensor) -> Tensor:
    """An upper bound on the IoU with ``truth`` ``[G, 4]`` of any box within ``[lower, upper]``
    (``[4]``), per truth: I / (a + G - I) with I the intersection of the outer box (lower x1,
    lower y1, upper x2, upper y2) with the truth, a the inner box's area (upper x1, upper y1,
    lower x2, lower y2) and G the truth's; 1 where a bound is infinite."""
    if not bool(torch.isfinite(lower).all() and torch.isfinite(upper).all()):
        return torch.ones(len(truth), dtype=torch.float64)
    lo, hi, truth = lower.double(), upper.double(), truth.double()
    width = torch.minimum(hi[2], truth[:, 2]) - torch.maximum(lo[0], truth[:, 0])
    height = torch.minimum(hi[3], truth[:, 3]) - torch.maximum(lo[1], truth[:, 1])
    intersection = width.clamp_min(0) * height.clamp_min(0)
    area = (truth[:, 2] - truth[:, 0]).clamp_min(0) * (truth[:, 3] - truth[:, 1]).clamp_min(0)
    inner = (lo[2] - hi[0]).clamp_min(0) * (lo[3] - hi[1]).clamp_min(0)
    # IoU = I / (a + G - I) rises with the intersection I and falls with the box's area a, so
    # the largest I (the outer box's) over the smallest a (the inner box's) bounds it.
    union = inner + area - intersection
    bound = torch.where(union > 0, intersection / union.clamp_min(1e-300), 1.0)
    return bound.clamp(max=1.0)


def ap_lower_bound(
    slot_bounds: Sequence[tuple[Tensor, Tensor]],
    truths: Sequence[Mapping[str, Tensor]],
    iou_threshold: float = 0.5,
) -> float:
    """A lower bound on ``average_precision`` of every set of detections inside the bounds: per
    image, ``lower``/``upper`` ``[S, 6]`` on each slot's (x1, y1, x2, y2, score, label), a slot
    being a detection iff all 6 values are finite, its class the label's integer part.

    Per class with G > 0 truths: D = the slots of every image that can be a detection of the
    class (all lower bounds < inf, label range meeting [c, c + 1)); T = the truths g with a sure
    detection j: j's 6 bounds finite, its label sure to be c, every box in j's bounds at IoU >=
    the threshold with g and (an upper bound on) its IoU with every other truth of the class
    below it. Whatever the scores and their ranking (ties included), greedy matching then matches
    every such g (when j comes, g is matched already or j takes it, its only candidate), so at
    least T true positives and at most D - T false positives; AP is monotone (a TP turned FP, an
    added FP or an FP moved above a TP never raise it), so the worst case ranks the D - T false
    positives first: precision T / D up to recall T / G, i.e. AP >= (the share of the 101 recall
    levels <= T / G) * T / D. Conservative, not tight: ambiguous matches count as lost.

    It bounds AP under attack when every bound of every image holds: under ``per_box`` each
    slot's bounds hold with probability >= 1 - alpha, so all S slots of an image with >= 1 - S
    alpha; under ``simultaneous`` with >= 1 - alpha.
    """
    sure: dict[int, int] = {}
    possible: dict[int, int] = {}
    counts: dict[int, int] = {}
    for truth in truths:  # every class first: an image's slot can be a false positive of any
        for label in truth["labels"].tolist():
            counts[label] = counts.get(label, 0) + 1
    for (lower, upper), truth in zip(slot_bounds, truths, strict=True):
        lower, upper = lower.reshape(-1, SLOT), upper.reshape(-1, SLOT)
        labels, boxes = truth["labels"].long(), truth["boxes"].float()
        can_exist = (lower < torch.inf).all(-1)
        must_exist = torch.isfinite(lower).all(-1) & torch.isfinite(upper).all(-1)
        for c in counts:
            can_be_c = can_exist & (lower[:, 5] < c + 1) & (upper[:, 5] >= c)
            possible[c] = possible.get(c, 0) + int(can_be_c.sum())
        matched: set[int] = set()
        for j in torch.nonzero(must_exist).flatten().tolist():
            c = int(math.floor(float(lower[j, 5])))
            if float(upper[j, 5]) >= c + 1 or c < 1:
                continue  # the label is not sure
            same = torch.nonzero(labels == c).flatten()
            if not len(same):
                continue
            lo, hi = lower[j, :4], upper[j, :4]
            worst = worst_iou(lo.expand(len(same), 4), hi.expand(len(same), 4), boxes[same])
            best = best_iou_upper(lo, hi, boxes[same]) * (1 + 1e-6)  # float32 slack in the metric
            hits = torch.nonzero(worst >= iou_threshold).flatten()
            if len(hits) == 1 and int((best >= iou_threshold).sum()) == 1:
                matched.add(int(same[hits[0]]))
        for g in matched:
            c = int(labels[g])
            sure[c] = sure.get(c, 0) + 1
    values = []
    for c, total in sorted(counts.items()):
        found, detections = sure.get(c, 0), possible.get(c, 0)
        if detections == 0 or found == 0:
            values.append(0.0)
            continue
        share = float(np.mean(found / total >= RECALL_LEVELS))
        values.append(share * found / detections)
    return float(np.mean(values)) if values else float("nan")
