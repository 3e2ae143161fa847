"""AP@50 against hand-worked cases, and the detection vector's binning."""

from __future__ import annotations

import math

import numpy as np
import torch

from smoothcert.certifiers.median_detection import DetectionLayout, smoothed_detections
from smoothcert.metrics.detection import average_precision, class_ap

BOX = torch.tensor([[0.1, 0.1, 0.5, 0.5]])


def test_class_ap_hand_worked() -> None:
    # 3 truths; detections by score: TP, FP, TP -> recall 1/3, 1/3, 2/3 with precision 1, 1/2,
    # 2/3; monotone precision 1 up to recall 1/3, 2/3 up to 2/3, 0 beyond.
    ap = class_ap(np.array([True, False, True]), np.array([0.9, 0.8, 0.7]), 3)
    levels = np.linspace(0, 1, 101)
    expected = np.mean(np.where(levels <= 1 / 3, 1.0, np.where(levels <= 2 / 3, 2 / 3, 0.0)))
    assert math.isclose(ap, expected)
    assert class_ap(np.array([], dtype=bool), np.array([]), 2) == 0.0


def test_average_precision_matching() -> None:
    truth = [{"boxes": BOX, "labels": torch.tensor([1])}]
    shifted = BOX + torch.tensor([0.3, 0.0, 0.3, 0.0])  # IoU 1/7 with BOX
    good = {"boxes": BOX, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    assert average_precision([good], truth) == 1.0
    wrong_label = {**good, "labels": torch.tensor([2])}
    assert average_precision([wrong_label], truth) == 0.0
    far = {**good, "boxes": shifted}
    assert average_precision([far], truth) == 0.0
    # a duplicate of lower score is a false positive after the match: AP stays 1 (recall 1 first)
    both = {
        "boxes": torch.cat([BOX, BOX]),
        "scores": torch.tensor([0.9, 0.8]),
        "labels": torch.tensor([1, 1]),
    }
    assert average_precision([both], truth) == 1.0
    # bounds wide enough to reach IoU < 0.5 make the certified detection a false positive
    loose = {**good, "lower": BOX - 0.2, "upper": BOX + 0.2, "certified": torch.tensor([True])}
    assert average_precision([loose], truth) == 0.0
    tight = {**loose, "lower": BOX - 0.01, "upper": BOX + 0.01}
    assert average_precision([tight], truth) == 1.0
    assert average_precision([{**tight, "certified": torch.tensor([False])}], truth) == 0.0


def test_binning_round_trip_and_certified_slots() -> None:
    layout = DetectionLayout(num_labels=4, grid=3, capacity=1)
    boxes = torch.tensor([[[0.0, 0.0, 0.2, 0.2], [0.05, 0.0, 0.25, 0.2], [0.7, 0.7, 0.9, 0.9]]])
    vector = layout.to_vector(boxes, torch.tensor([[0.9, 0.8, 0.7]]), torch.tensor([[2, 2, 4]]))
    assert (
        vector.shape == (1, layout.length)
        and layout.dropped(boxes, torch.tensor([[0.9, 0.8, 0.7]]), torch.tensor([[2, 2, 4]])) == 1
    )  # two label-2 boxes in one cell, capacity 1
    found = smoothed_detections(layout, vector[0], vector[0], vector[0])
    assert found["labels"].tolist() == [2, 4] and found["certified"].all()
    assert torch.equal(found["boxes"][0], boxes[0, 0])  # the upper-left centre comes first
    upper = vector[0].clone()
    upper[layout.slots_of(upper)[..., 0].isfinite().nonzero()[0] * 6 + 2] = math.inf
    assert smoothed_detections(layout, vector[0], vector[0], upper)["certified"].tolist() == [
        False,
        True,
    ]


def test_detector_module_gives_the_binned_vector() -> None:
    from lightning_modules.detection import DetectionModule
    from smoothcert.certifiers.median import as_output_vectors
    from smoothcert.data.detection import ShapeDetectionDataset, target_boxes
    from smoothcert.models.detector import GridDetector, assign
    from smoothcert.noise import GaussianNoise

    module = DetectionModule(
        GridDetector(3, 4, 4, 3), GaussianNoise(0.25), None, 3, [0.5] * 3, [0.25] * 3
    ).eval()
    image, targets = ShapeDetectionDataset(2, "val")[1]
    labels, boxes = target_boxes(targets)
    assert len(labels) >= 1 and bool(((boxes >= 0) & (boxes <= 1)).all())
    with torch.no_grad():
        vector = as_output_vectors(module.structured_output(image[None]))
    assert vector.shape == (1, module.layout.length)
    responsible, cell_labels, _ = assign(targets[None], 4)
    assert sorted(cell_labels[responsible].tolist()) == sorted(labels.tolist())
