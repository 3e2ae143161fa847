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

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from smoothcert.errors import check_count

SLOT = 6  # x1, y1, x2, y2, score, label


@dataclass(frozen=True)
class DetectionLayout:
    """The binning: ``num_labels`` labels (1..num_labels), a ``grid x grid`` lattice of centres,
    ``capacity`` slots per (label, cell)."""

    num_labels: int
    grid: int = 3
    capacity: int = 2

    def __post_init__(self) -> None:
        check_count(self.num_labels, "model.num_labels")
        check_count(self.grid, "model.location_grid")
        check_count(self.capacity, "model.bin_capacity")

    @property
    def slots(self) -> int:
        return self.num_labels * self.grid * self.grid * self.capacity

    @property
    def length(self) -> int:
        """m, the vector's length."""
        return self.slots * SLOT

    def to_vector(self, boxes: Tensor, scores: Tensor, labels: Tensor) -> Tensor:
        """``[B, length]`` from ``D`` detections per image: ``boxes [B, D, 4]`` (normalized
        x1, y1, x2, y2), ``scores [B, D]``, ``labels [B, D]`` (1..num_labels; 0 = no detection)."""
        batch, count = labels.shape
        device = boxes.device
        cx = ((boxes[..., 0] + boxes[..., 2]) / 2).clamp(0, 1 - 1e-6)
        cy = ((boxes[..., 1] + boxes[..., 3]) / 2).clamp(0, 1 - 1e-6)
        cell = (cy * self.grid).long() * self.grid + (cx * self.grid).long()
        valid = (labels > 0) & (labels <= self.num_labels)
        bins = torch.where(
            valid, (labels - 1) * self.grid**2 + cell, self.num_labels * self.grid**2
        )
        # sort by bin, then centre y, then centre x (centres lie in [0, 1))
        key = bins.double() + (cy.double() + cx.double() / 2) / 2
        order = key.argsort(dim=1)
        bins, boxes = bins.gather(1, order), boxes.gather(1, order[..., None].expand(-1, -1, 4))
        scores, labels = scores.gather(1, order), labels.gather(1, order)
        position = torch.arange(count, device=device).expand(batch, count)
        starts = torch.ones_like(bins, dtype=torch.bool)
        starts[:, 1:] = bins[:, 1:] != bins[:, :-1]
        first = torch.where(starts, position, 0).cummax(dim=1).values
        within = position - first
        kept = (bins < self.num_labels * self.grid**2) & (within < self.capacity)
        slot = torch.where(kept, bins * self.capacity + within, self.slots)  # spare slot: dropped
        values = torch.cat([boxes, scores[..., None], labels[..., None].to(boxes.dtype)], dim=-1)
        out = torch.full((batch, self.slots + 1, SLOT), math.inf, device=device, dtype=boxes.dtype)
        out.scatter_(1, slot[..., None].expand(-1, -1, SLOT), values)
        return out[:, : self.slots].reshape(batch, self.length)

    def dropped(self, boxes: Tensor, scores: Tensor, labels: Tensor) -> int:
        """How many valid detections ``to_vector`` leaves out (bins over capacity)."""
        kept = torch.isfinite(self.to_vector(boxes, scores, labels).view(-1, SLOT)[:, 0]).sum()
        return int(((labels > 0) & (labels <= self.num_labels)).sum() - kept)

    def slots_of(self, vector: Tensor) -> Tensor:
        """``[..., slots, 6]`` view of vectors ``[..., length]``."""
        return vector.reshape(*vector.shape[:-1], self.slots, SLOT)


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
