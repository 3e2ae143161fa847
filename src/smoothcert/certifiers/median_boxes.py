"""Boxes certified by percentile smoothing: worst-case IoU over coordinate-wise bounds.

A box (x1, y1, x2, y2) whose every coordinate is only known to lie in [lower_i, upper_i] can be
any of a box of intervals. IoU(A, B) is quasi-concave in each coordinate of A (it rises, possibly
from 0, while the edge moves towards B's edge, then falls), so its minimum over an interval is
at an endpoint; applying this coordinate by coordinate, the minimum over the whole box of
intervals is at one of its 16 corners (Chiang et al.'s certified IoU). With both boxes only known
by bounds, the 16 x 16 corner pairs.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from smoothcert.distances import BoxJaccardDistance

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
