"""Boxes certified by percentile smoothing: worst-case IoU over coordinate-wise bounds.

A box (x1, y1, x2, y2) whose every coordinate is only known to lie in [lower_i, upper_i] can be
any of a box of intervals. IoU(A, B) is quasi-concave in each coordinate of A (it rises, possibly
from 0, while the edge moves towards B's edge, then falls), so its minimum over an interval is
at an endpoint; applying this coordinate by coordinate, the minimum over the whole box of
intervals is at one of its 16 corners (Chiang et al.'s certified IoU). With both boxes only known
by bounds, the 16 x 16 corner pairs.
"""

from __future__ import annotations

# The geometry lives below the certifiers (metrics use it too); re-exported from its old home.
from smoothcert.boxes import CORNERS, box_iou, corner_boxes, worst_iou, worst_pair_iou

__all__ = ["CORNERS", "box_iou", "corner_boxes", "worst_iou", "worst_pair_iou"]
