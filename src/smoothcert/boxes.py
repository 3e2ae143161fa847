"""Boxes as the median certifier, the detector and the detection metrics all see them. Below
the certifiers, models and metrics, so that each imports it without reaching up.

Detections as a fixed-length vector (Chiang et al. 2020, ``DetectionLayout``): a set of detections
(box, score, label) becomes a vector by binning, as the paper does with its LOCATION+LABEL binning
and CENTER sort: the box centres are placed on a ``grid x grid`` lattice of the image, the bin of
a detection is (label, centre cell), and within a bin detections are ordered by centre (y, then x)
and the first ``capacity`` kept. Each slot holds ``(x1, y1, x2, y2, score, label)`` (``SLOT``
numbers); an empty slot holds +inf everywhere. Unlike the paper, whose bin capacity is the largest
count seen among the samples, the capacity is fixed, so every sample has the same length; a
detection beyond a bin's capacity is dropped (counted in ``dropped``).

Worst-case IoU (``worst_iou``): a box (x1, y1, x2, y2) whose every coordinate is only known to lie
in [lower_i, upper_i] can be any of a box of intervals. IoU(A, B) is quasi-concave in each
coordinate of A (it rises, possibly from 0, while the edge moves towards B's edge, then falls), so
its minimum over an interval is at an endpoint; applying this coordinate by coordinate, the
minimum over the whole box of intervals is at one of its 16 corners (Chiang et al.'s certified
IoU). With both boxes only known by bounds, the 16 x 16 corner pairs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from smoothcert.distances import BoxJaccardDistance
from smoothcert.errors import check_count

__all__ = [
    "CORNERS",
    "SLOT",
    "DetectionLayout",
    "box_iou",
    "corner_boxes",
    "worst_iou",
    "worst_pair_iou",
]

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


_JACCARD = BoxJaccardDistance()
# [16, 4]: for each corner, 0 takes the lower bound of a coordinate and 1 the upper one.
CORNERS = torch.tensor(list(itertools.product((0, 1), repeat=4)), dtype=torch.bool)


def corner_boxes(lower: Tensor, upper: Tensor) -> Tensor:
    """``[..., 16, 4]``: the corners of the box of intervals ``[lower, upper]`` (``[..., 4]``)."""
    corners = CORNERS.to(lower.device)
    return torch.where(corners, upper[..., None, :], lower[..., None, :])


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes ``a`` and ``b`` (broadcast ``[..., 4]``); 0 if a box is empty or infinite."""
    finite = torch.isfinite(a).all(-1) & torch.isfinite(b).all(-1)
    a, b = torch.broadcast_tensors(torch.nan_to_num(a.float()), torch.nan_to_num(b.float()))
    return torch.where(finite, 1.0 - _JACCARD.paired(a, b), 0.0)


def worst_iou(lower: Tensor, upper: Tensor, target: Tensor) -> Tensor:
    """The least IoU with ``target`` (``[..., 4]``) of any box whose coordinates lie in
    ``[lower, upper]`` (``[..., 4]``); 0 where a bound is infinite."""
    return box_iou(corner_boxes(lower, upper), target[..., None, :]).amin(-1)


def worst_pair_iou(lower: Tensor, upper: Tensor) -> Tensor:
    """The least IoU of two boxes that both lie in ``[lower, upper]``: e.g. h(x) and h(x + delta)
    of a certified median box (1 minus it is the median's counterpart of center smoothing's
    eps_out under 1 - IoU)."""
    corners = corner_boxes(lower, upper)
    return box_iou(corners[..., :, None, :], corners[..., None, :, :]).flatten(-2).amin(-1)
