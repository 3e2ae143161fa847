"""A small one-stage grid detector (YOLO-like) for the shapes images.

The image is divided into ``cells x cells`` cells; each cell predicts an objectness logit,
``num_labels`` class logits and a box: centre ``((j + sigmoid(tx)) / cells, (i + sigmoid(ty)) /
cells)`` and size ``(sigmoid(tw), sigmoid(th))`` in normalized image coordinates. A ground-truth
shape is the responsibility of the cell holding its box centre. Decoding keeps the cells whose
score (objectness probability times the top class probability) exceeds a threshold: at most one
detection per cell, so no non-maximum suppression is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothcert.errors import check_count
from smoothcert.models.structured import AddCoordinates, _conv_bn_relu


class GridDetector(nn.Module):
    """CoordConv, ``depth`` stride-2 3x3 convs (``cells = size / 2**depth``), a 1x1 head with
    ``5 + num_labels`` channels per cell: ``[B, 5 + num_labels, cells, cells]`` raw outputs."""

    def __init__(self, in_channels: int = 3, num_labels: int = 4, width: int = 32, depth: int = 3):
        super().__init__()
        self.num_labels = check_count(num_labels, "model.net.num_labels")
        width, depth = check_count(width, "model.net.width"), check_count(depth, "model.net.depth")
        layers: list[nn.Module] = [AddCoordinates(), *_conv_bn_relu(in_channels + 2, width, 1)]
        channels = width
        for _ in range(depth):
            layers += _conv_bn_relu(channels, 2 * channels, 2)
            layers += _conv_bn_relu(2 * channels, 2 * channels, 1)
            channels *= 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, 5 + self.num_labels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def cell_boxes(raw: Tensor) -> Tensor:
    """``[B, S*S, 4]`` boxes (x1, y1, x2, y2) in [0, 1] from raw outputs ``[B, C, S, S]``."""
    cells = raw.shape[-1]
    rows, cols = torch.meshgrid(
        torch.arange(cells, device=raw.device),
        torch.arange(cells, device=raw.device),
        indexing="ij",
    )
    cx = (cols + torch.sigmoid(raw[:, 1])) / cells
    cy = (rows + torch.sigmoid(raw[:, 2])) / cells
    w, h = torch.sigmoid(raw[:, 3]), torch.sigmoid(raw[:, 4])
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    return boxes.clamp(0, 1).flatten(1, 2)


def decode(raw: Tensor, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """(boxes ``[B, S*S, 4]``, scores ``[B, S*S]``, labels ``[B, S*S]``, 0 where the score is at
    most ``threshold``): one candidate detection per cell."""
    objectness = torch.sigmoid(raw[:, 0]).flatten(1)
    classes = raw[:, 5:].flatten(2).softmax(dim=1)  # [B, L, S*S]
    top, label = classes.max(dim=1)
    scores = objectness * top
    labels = torch.where(scores > threshold, label + 1, 0)
    return cell_boxes(raw), scores, labels


def assign(targets: Tensor, cells: int) -> tuple[Tensor, Tensor, Tensor]:
    """(responsible ``[B, S*S]`` bool, labels ``[B, S*S]`` (1..L, 0 none), boxes ``[B, S*S, 4]``)
    from targets ``[B, T, 5]`` rows (label, x1, y1, x2, y2), label 0 padding; a later shape in
    the same cell replaces an earlier one."""
    batch = targets.shape[0]
    labels = torch.zeros(batch, cells * cells, dtype=torch.long, device=targets.device)
    boxes = torch.zeros(batch, cells * cells, 4, device=targets.device)
    for t in range(targets.shape[1]):
        used = targets[:, t, 0] > 0
        box = targets[:, t, 1:]
        cx = ((box[:, 0] + box[:, 2]) / 2 * cells).long().clamp(0, cells - 1)
        cy = ((box[:, 1] + box[:, 3]) / 2 * cells).long().clamp(0, cells - 1)
        cell = cy * cells + cx
        rows = torch.nonzero(used).flatten()
        labels[rows, cell[rows]] = targets[rows, t, 0].long()
        boxes[rows, cell[rows]] = box[rows]
    return labels > 0, labels, boxes


def detection_loss(raw: Tensor, targets: Tensor, box_iou) -> Tensor:
    """BCE on objectness (all cells), cross entropy on the class and smooth L1 + (1 - IoU) on the
    box (responsible cells)."""
    cells = raw.shape[-1]
    responsible, labels, boxes = assign(targets, cells)
    objectness = raw[:, 0].flatten(1)
    loss = F.binary_cross_entropy_with_logits(objectness, responsible.float())
    if bool(responsible.any()):
        logits = raw[:, 5:].flatten(2).transpose(1, 2)[responsible]
        loss = loss + F.cross_entropy(logits, labels[responsible] - 1)
        predicted = cell_boxes(raw)[responsible]
        loss = loss + F.smooth_l1_loss(predicted, boxes[responsible], beta=0.05)
        loss = loss + (1 - box_iou(predicted, boxes[responsible])).mean()
    return loss
