"""AP@50 against hand-worked cases, and the detection vector's binning."""

from __future__ import annotations

import math

import numpy as np
import torch

from smoothcert.certifiers.median_detection import DetectionLayout, smoothed_detections
from smoothcert.metrics.detection import ap_lower_bound, average_precision, class_ap

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


def slot(box, score: float, label: float) -> list[float]:
    return [*box, score, label]


INF6 = [math.inf] * 6
TRUTH = [0.1, 0.1, 0.5, 0.5]
FAR = [0.6, 0.6, 0.9, 0.9]  # IoU 0 with TRUTH


def test_ap_of_certified_boxes_is_no_bound_on_ap_under_attack() -> None:
    """Issue 20 item 4: one truth; slot 0 is a sure true positive (tight bounds on the truth's
    box), slot 1 is absent at x (estimate +inf) but its lower bounds are finite, so h(x + delta)
    may hold a detection there, of any score. The AP of the certified boxes says 100%, an output
    inside every bound has AP@50 50%, and ap_lower_bound gives that 50%."""
    layout = DetectionLayout(num_labels=1, grid=1, capacity=2)
    estimate = torch.tensor(slot(TRUTH, 0.5, 1) + INF6)
    lower = torch.tensor(slot(TRUTH, 0.4, 1) + slot(FAR, 0.0, 1))
    upper = torch.tensor(slot(TRUTH, 0.6, 1) + INF6)
    truth = [{"boxes": torch.tensor([TRUTH]), "labels": torch.tensor([1])}]
    found = smoothed_detections(layout, estimate, lower, upper)
    assert average_precision([found], truth) == 1.0  # the old "certified AP@50"
    attacked = torch.tensor(slot(TRUTH, 0.5, 1) + slot(FAR, 0.9, 1))  # inside every bound
    assert bool(((lower <= attacked) & (attacked <= upper)).all())
    under_attack = smoothed_detections(layout, attacked, attacked, attacked)
    assert math.isclose(average_precision([under_attack], truth), 0.5)
    bounds = [(layout.slots_of(lower), layout.slots_of(upper))]
    assert math.isclose(ap_lower_bound(bounds, truth), 0.5)


def random_case(g: torch.Generator) -> tuple[list, list]:
    """Two images, up to 3 slots each, 1-2 truths of classes 1-2: slots sure (finite bounds
    around a box near a truth, or anywhere), maybe present (upper +inf) or absent; labels sure or
    in [1, 2]."""

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    images, truths = [], []
    for _ in range(2):
        count = 1 + int(rand(()) < 0.5)
        corner = rand(count, 2) * 0.6
        boxes = torch.cat([corner, corner + 0.2 + rand(count, 2) * 0.2], 1).float()
        labels = 1 + (rand(count) < 0.2).long()
        truths.append({"boxes": boxes, "labels": labels})
        lows, highs = [], []
        for k in range(1 + int(rand(()) * 3)):
            centre = boxes[k % count].double() + (rand(4) - 0.5) * 0.1
            if rand(()) < 0.2:
                centre = rand(4).sort().values[[0, 1, 2, 3]]
            width = rand(4) * 0.05
            lo, hi = slot(centre - width, 0.0, 1.0), slot(centre + width, 1.0, 1.0)
            label = float(labels[k % count]) if rand(()) < 0.8 else None
            lo[5], hi[5] = (label, label) if label else (1.0, 2.0)
            kind = rand(())
            if kind < 0.2:
                hi = [math.inf] * 6  # may appear
            elif kind < 0.28:
                lo = hi = [math.inf] * 6  # absent
            lows.append(lo)
            highs.append(hi)
        images.append((torch.tensor(lows), torch.tensor(highs)))
    return images, truths


def sample_output(bounds, g: torch.Generator) -> list[dict]:
    """Detections inside the bounds: each slot present or not as its bounds allow, its box a
    corner of its box of intervals or a random point (a random box if unbounded above), a random
    score, a label in its range."""
    found = []
    for lower, upper in bounds:
        boxes, scores, labels = [], [], []
        for lo, hi in zip(lower, upper, strict=True):
            if not bool(torch.isfinite(lo).all()):
                continue
            if not bool(torch.isfinite(hi).all()) and torch.rand((), generator=g) < 0.5:
                continue
            h = torch.where(torch.isfinite(hi), hi, lo + 0.5 + torch.rand(6, generator=g))
            pick = torch.rand(4, generator=g, dtype=torch.float64)
            if torch.rand((), generator=g) < 0.5:
                pick = pick.round()
            boxes.append(lo[:4] + pick * (h[:4] - lo[:4]))
            scores.append(float(torch.rand((), generator=g)))
            label = lo[5] + float(torch.rand((), generator=g)) * (h[5] - lo[5])
            labels.append(int(label.round() if torch.rand((), generator=g) < 0.7 else label))
        found.append(
            {
                "boxes": torch.stack(boxes).float() if boxes else torch.zeros(0, 4),
                "scores": torch.tensor(scores),
                "labels": torch.tensor(labels, dtype=torch.long),
            }
        )
    return found


def test_ap_lower_bound_against_brute_force() -> None:
    """On small random cases, no output inside the bounds (sampled: presence, corners and
    interior boxes, scores, labels) has AP@50 below ap_lower_bound, and on some cases the
    sampled minimum reaches it (the bound is not vacuous)."""
    g = torch.Generator().manual_seed(0)
    reached = 0
    for _ in range(24):
        bounds, truths = random_case(g)
        bound = ap_lower_bound(bounds, truths)
        worst = min(average_precision(sample_output(bounds, g), truths) for _ in range(60))
        assert worst >= bound - 1e-12, (worst, bound, bounds, truths)
        reached += math.isclose(worst, bound) and bound > 0
    assert reached >= 3, reached


def test_ap_lower_bound_when_a_sure_detection_can_take_another_truth() -> None:
    """Two truths of one class (IoU 1/3 with each other). Slot 0 is surely a hit on the first
    (worst IoU 0.58) but can also reach IoU 0.64 with the second; slot 1 is exactly the second.
    Ranked first, slot 0 takes the second truth and slot 1 becomes a false positive: one true
    positive of two, AP 51 / 101. Counting slot 0 as a sure match of the first truth would claim
    AP 1; the bound counts one sure match (slot 1) and two possible detections: (51 / 101) / 2."""
    g1, g2 = [0.0, 0.0, 0.4, 0.4], [0.2, 0.0, 0.6, 0.4]
    lower = torch.tensor([slot([0.0, 0.0, 0.4, 0.4], 0.9, 1), slot(g2, 0.5, 1)])
    upper = torch.tensor([slot([0.1, 0.0, 0.52, 0.4], 0.9, 1), slot(g2, 0.5, 1)])
    truth = [{"boxes": torch.tensor([g1, g2]), "labels": torch.tensor([1, 1])}]
    attacked = {
        "boxes": torch.tensor([[0.1, 0.0, 0.52, 0.4], g2]),
        "scores": torch.tensor([0.9, 0.5]),
        "labels": torch.tensor([1, 1]),
    }
    worst = average_precision([attacked], truth)
    assert math.isclose(worst, 51 / 101)
    bound = ap_lower_bound([(lower, upper)], truth)
    assert bound <= worst and math.isclose(bound, 51 / 101 / 2)


def test_best_iou_upper_bounds_every_box_in_the_range() -> None:
    """best_iou_upper >= the IoU of 4000 boxes drawn in the box of intervals (corners included),
    on 50 random ranges and truths, and is reached up to 0.02 by the best of them somewhere."""
    from smoothcert.certifiers.median_boxes import box_iou, corner_boxes
    from smoothcert.metrics.detection import best_iou_upper

    g = torch.Generator().manual_seed(1)
    gaps = []
    for _ in range(50):
        centre = torch.rand(4, generator=g).sort().values[[0, 1, 2, 3]]
        lower, upper = centre - 0.1 * torch.rand(4, generator=g), centre + 0.1 * torch.rand(4)
        truth = torch.rand(2, generator=g).repeat(2) + torch.tensor([0.0, 0.0, 0.3, 0.3])
        draws = lower + torch.rand(4000, 4, generator=g) * (upper - lower)
        boxes = torch.cat([draws, corner_boxes(lower, upper)])
        best = float(box_iou(boxes, truth).max())
        bound = float(best_iou_upper(lower, upper, truth[None])[0])
        assert best <= bound + 1e-6, (best, bound)
        gaps.append(bound - best)
    assert min(gaps) < 0.02
