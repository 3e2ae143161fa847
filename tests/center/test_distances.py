"""Output distances: hand-made cases, symmetry and the (relaxed) triangle inequality."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from smoothcert.distances import (
    DISTANCES,
    BoxJaccardDistance,
    CosineDistance,
    FeatureDistance,
    L1Distance,
    L2Distance,
    LabelJaccardDistance,
    TotalVariationDistance,
    build_distance,
)
from smoothcert.errors import ConfigError


def tv_by_loops(z: torch.Tensor) -> float:
    """The paper's TV of a [C, H, W] image, written out pixel by pixel."""
    _, h, w = z.shape
    total = 0.0
    for i in range(h - 1):
        for j in range(w - 1):
            total += float((z[:, i, j] - z[:, i + 1, j]).abs().sum())
            total += float((z[:, i, j] - z[:, i, j + 1]).abs().sum())
    return total


def random_outputs(name: str, count: int, generator: torch.Generator) -> torch.Tensor:
    if name == "jaccard_box":
        corners = torch.rand(count, 2, 2, generator=generator)
        boxes = torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)
        boxes[::7, 2] = boxes[::7, 0]  # some empty boxes
        return boxes
    if name == "jaccard_labels":
        labels = torch.randint(0, 4, (count, 6, 6), generator=generator)
        labels[::5] = 0  # some maps without classes 1..3
        return labels
    return torch.rand(count, 2, 5, 5, generator=generator)


def feature_network() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten())


def make(name: str):
    return build_distance(name, num_classes=4, feature_network=feature_network())


@pytest.mark.parametrize("name", sorted(DISTANCES))
def test_symmetry_triangle_and_pairwise_agree(name: str) -> None:
    distance = make(name)
    generator = torch.Generator().manual_seed(0)
    a, b, c = (random_outputs(name, 300, generator) for _ in range(3))
    ab, bc, ac = distance(a, b), distance(b, c), distance(a, c)
    assert torch.allclose(ab, distance(b, a), atol=1e-6)
    assert (ab >= 0).all()
    assert (ac <= distance.gamma * (ab + bc) + 1e-5).all()
    assert torch.allclose(distance(a, a), torch.zeros(len(a)), atol=1e-5)
    # the chunk-friendly matrix agrees with the paired distances it is made of
    ea, eb = distance.embed(a[:40]), distance.embed(b[:30])
    matrix = distance.pairwise(ea, eb)
    direct = torch.stack([distance(a[i : i + 1], b[:30]) for i in range(40)])
    assert torch.allclose(matrix, direct, atol=1e-4)


def test_squared_distances_need_gamma_two() -> None:
    """Cosine distance breaks the plain triangle inequality (so gamma = 1 would be unsound)."""
    distance = CosineDistance()
    angles = torch.tensor([0.0, math.pi / 4, math.pi / 2])
    points = torch.stack([angles.cos(), angles.sin()], dim=1)
    a, b, c = points[0:1], points[1:2], points[2:3]
    assert distance(a, c) > distance(a, b) + distance(b, c)
    assert distance(a, c) <= 2 * (distance(a, b) + distance(b, c))
    assert torch.allclose(distance(a, c), torch.tensor([1.0]))  # 1 - cos(90 degrees)


def test_l1_l2_and_tv_definitions() -> None:
    generator = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 3, 7, 6, generator=generator), torch.rand(3, 3, 7, 6, generator=generator)
    assert torch.allclose(L2Distance()(a, b), (a - b).flatten(1).norm(dim=1))
    assert torch.allclose(L1Distance()(a, b), (a - b).flatten(1).abs().sum(1))
    tv = TotalVariationDistance()(a, b)
    expected = torch.tensor([tv_by_loops(a[i] - b[i]) for i in range(3)])
    assert torch.allclose(tv, expected, rtol=1e-5)
    # a pseudometric: a constant shift has TV distance 0
    assert float(TotalVariationDistance()(a[:1], a[:1] + 0.3)) == pytest.approx(0.0, abs=1e-5)
    # grayscale [N, H, W] maps are one-channel images; the paper's MNIST bound 2 x 27 x 27
    checker = (torch.arange(28)[:, None] + torch.arange(28)[None, :]) % 2
    assert float(TotalVariationDistance()(checker[None].float(), torch.zeros(1, 28, 28))) == 1458


def test_box_jaccard_cases() -> None:
    distance = BoxJaccardDistance()
    box = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    half = torch.tensor([[1.0, 0.0, 3.0, 2.0]])  # overlap 2, union 6
    apart = torch.tensor([[5.0, 5.0, 6.0, 6.0]])
    empty, other_empty = torch.tensor([[1.0, 1.0, 1.0, 3.0]]), torch.tensor([[4.0, 4.0, 3.0, 5.0]])
    assert float(distance(box, half)) == pytest.approx(1 - 2 / 6)
    assert float(distance(box, box)) == 0.0
    assert float(distance(box, apart)) == 1.0
    assert float(distance(box, empty)) == 1.0
    assert float(distance(empty, other_empty)) == 0.0


def test_label_jaccard_is_mean_of_per_class_set_distances() -> None:
    generator = torch.Generator().manual_seed(2)
    a = torch.randint(0, 3, (5, 4, 4), generator=generator)
    b = torch.randint(0, 3, (5, 4, 4), generator=generator)
    a[0] = 0
    b[0] = 0  # classes 1 and 2 (and 3) absent from both
    distance = LabelJaccardDistance(num_classes=4)
    got = distance(a, b)
    for i in range(5):
        per_class = []
        for c in range(4):
            sa = {p for p, v in enumerate(a[i].flatten().tolist()) if v == c}
            sb = {p for p, v in enumerate(b[i].flatten().tolist()) if v == c}
            union = sa | sb
            per_class.append(1 - len(sa & sb) / len(union) if union else 0.0)
        assert float(got[i]) == pytest.approx(sum(per_class) / 4)
    assert float(got[0]) == 0.0
    with pytest.raises(ValueError, match="labels must lie in 0..3"):
        distance(a, b + 4)


def test_feature_distance_weights() -> None:
    network = nn.Flatten()
    a, b = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    assert float(FeatureDistance(network)(a, b)) == pytest.approx(1 + 4 + 4)
    weighted = FeatureDistance(network, torch.tensor([1.0, 0.0, 0.5]))
    assert float(weighted(a, b)) == pytest.approx(1 + 0 + 2)


def test_unknown_or_incomplete_distance_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="certify.distance='hamming' is not a known distance"):
        build_distance("hamming", setting="certify.distance")
    with pytest.raises(ConfigError, match="needs the number of classes"):
        build_distance("jaccard_labels")
    with pytest.raises(ConfigError, match="feature_network"):
        build_distance("feature")
