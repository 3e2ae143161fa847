"""The ShapeNet-part metrics of SegCertify's report (shape IoU over the category's parts, a part
absent from truth and prediction counting 1, abstentions as errors; instance and class mIoU) and
the point-cloud figure."""

from __future__ import annotations

import pytest
import torch

from smoothcert.certifiers.segmentation import score_segmentation
from smoothcert.data.pointclouds import Shapes3D
from smoothcert.records.segmentation import BASE, Row
from smoothcert.report.segcertify import part_protocol, save_overlays, segcertify_section

ABSTAIN = -1


def rows_of(predictions, truths, kind):
    return [
        Row(kind, idx, 0.1, 1.0, score_segmentation(torch.tensor(p), torch.tensor(t), 13))
        for idx, (p, t) in enumerate(zip(predictions, truths, strict=True))
    ]


def test_shape_iou_instance_and_class_miou_follow_the_protocol():
    dataset = Shapes3D(6, "test")  # idx 0, 5: chairs (parts 0-2); idx 1: table (parts 3-4)
    protocol = part_protocol(dataset)
    truths = [
        [0, 0, 1, 1],
        [3, 3, 4, 4],
        [5, 5, 6, 6],
        [8, 8, 8, 8],
        [10, 11, 12, 12],
        [0, 1, 2, 2],
    ]
    preds = [
        [0, 0, 1, ABSTAIN],  # seat 2/2, back 1/2 (the abstained back point), legs absent: 1
        [3, 4, 4, 4],  # top 1/2, legs 2/3
        [5, 5, 6, 6],  # lamp: base 1, pole 1, shade absent: 1
        [8, 8, 8, 9],  # mug: body 3/4, handle 0/1
        [10, 11, 12, 12],  # airplane: all 1
        [2, 2, 2, 2],  # seat 0/1, back 0/1, legs 2/4
    ]
    shape = [(1 + 0.5 + 1) / 3, (0.5 + 2 / 3) / 2, 1.0, 0.75 / 2, 1.0, 0.5 / 3]
    rows = rows_of(preds, truths, 0.75) + rows_of(truths, truths, BASE)
    for row, expected in zip(rows, shape, strict=False):
        assert protocol.shape_iou(row) == pytest.approx(expected)
    found = protocol.mious(rows, 0.75)
    assert found["instance_miou"] == pytest.approx(sum(shape) / 6)
    chairs = (shape[0] + shape[5]) / 2
    classes = [chairs, shape[1], shape[2], shape[3], shape[4]]
    assert found["class_miou"] == pytest.approx(sum(classes) / 5)
    assert found["miou/chair"] == pytest.approx(chairs)
    section = segcertify_section(rows, [0.75], "cert/xyz/", "xyz", lambda n: "t", dataset)
    assert section.scalars["cert/instance_miou"] == pytest.approx(sum(shape) / 6)
    assert section.scalars["cert/base_instance_miou"] == 1.0
    assert section.scalars["cert/xyz/radius"] == 0.1
    assert any("instance mIoU" in line for line in section.lines)
    images = segcertify_section(rows, [0.75], "cert/", "l2", lambda n: "t")  # no parts: images
    assert "cert/instance_miou" not in images.scalars


def test_a_certified_cloud_is_drawn_next_to_its_ground_truth(tmp_path):
    data = Shapes3D(1, "test", num_points=64)
    x, labels = data[0]
    certified = labels.clone()
    certified[::3] = ABSTAIN
    paths = save_overlays(tmp_path, [(0, x, labels, labels, certified)], 13, 255, data.classes)
    assert paths[0].name == "segcertify_00000.png" and paths[0].stat().st_size > 5000
