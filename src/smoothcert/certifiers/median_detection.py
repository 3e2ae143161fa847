"""Detection as regression (Chiang et al. 2020): detections as a fixed-length vector.

A set of detections (box, score, label) becomes a vector by binning, as the paper does with its
LOCATION+LABEL binning and CENTER sort: the box centres are placed on a ``grid x grid`` lattice of
the image, the bin of a detection is (label, centre cell), and within a bin detections are ordered
by centre (y, then x) and the first ``capacity`` kept. Each slot holds ``(x1, y1, x2, y2, score,
label)``; an empty slot holds +inf everywhere. Percentile smoothing then works coordinate-wise:
a slot's median is finite iff more than half the noisy samples put a detection there, and the
slot is *certified* when its label's lower and upper bounds agree and its box bounds are finite
(its upper bounds finite: a detection there in at least q_u of the n samples).

Unlike the paper, whose bin capacity is the largest count seen among the samples (so the vector's
length depends on the samples), the capacity is fixed, so every sample has the same length; a
detection beyond a bin's capacity is dropped (counted in ``dropped``).
"""

from __future__ import annotations

import torch
from torch import Tensor

# The layout lives below the certifiers (models and metrics read it); re-exported from here.
from smoothcert.boxes import SLOT, DetectionLayout

__all__ = ["SLOT", "DetectionLayout", "smoothed_detections"]


def smoothed_detections(
    layout: DetectionLayout, estimate: Tensor, lower: Tensor, upper: Tensor
) -> dict[str, Tensor]:
    """The smoothed detections of one image from the coordinate-wise percentile ``estimate`` and
    its certified bounds (each ``[length]``): the slots whose estimate is finite, with ``boxes``,
    ``scores``, ``labels``, the box bounds ``lower``/``upper`` ``[K, 4]`` and ``certified``
    (label bounds equal, box bounds finite)."""
    est, lo, hi = (layout.slots_of(v) for v in (estimate, lower, upper))
    present = torch.isfinite(est).all(-1)
    certified = (lo[:, 5] == hi[:, 5]) & torch.isfinite(hi[:, 5])
    certified &= torch.isfinite(lo[:, :4]).all(-1) & torch.isfinite(hi[:, :4]).all(-1)
    return {
        "boxes": est[present, :4],
        "scores": est[present, 4],
        "labels": est[present, 5].long(),
        "lower": lo[present, :4],
        "upper": hi[present, :4],
        "certified": certified[present],
    }
