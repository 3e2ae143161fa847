"""Noise on point coordinates only (perturbation=xyz), the PointNet contract, and SegCertify per
point through the one segmentation certifier: its certificates hold at level alpha on a model
whose true answer is known, and the normals and the category code are never noised."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm
from torch import Tensor, nn

from smoothcert import ABSTAIN
from smoothcert.certifiers.segmentation import segcertify
from smoothcert.errors import ConfigError
from smoothcert.models.pointnet import OUTSIDE, PointNetPartSegmenter
from smoothcert.noise import GaussianNoise
from smoothcert.perturbation import PointCoordinates

SIGMA, TAU = 0.25, 0.75


def cloud(n: int = 16, categories: int = 2, category: int = 0) -> Tensor:
    """A cloud [3 + 3 + categories, n] in the unit ball: xyz, unit normals, one-hot code."""
    generator = torch.Generator().manual_seed(n)
    xyz = torch.rand(3, n, generator=generator) - 0.5
    normals = torch.nn.functional.normalize(torch.randn(3, n, generator=generator), dim=0)
    code = torch.zeros(categories, n)
    code[category] = 1
    return torch.cat([xyz, normals, code])


def test_only_the_coordinates_are_noised_in_training_and_certification():
    shift = PointCoordinates(GaussianNoise(SIGMA))
    x = cloud()
    assert shift.draw_shape(tuple(x.shape)) == (3, 16)
    draws = torch.randn(5, 3, 16)
    copies = shift.apply(x, draws.clone())
    assert copies.shape == (5, 8, 16)
    assert torch.allclose(copies[:, :3], x[:3] + draws) and torch.equal(
        copies[:, 3:], x[3:].expand(5, -1, -1)
    )
    batch = torch.stack([x, x])
    noisy = shift(batch, torch.Generator().manual_seed(0))
    assert torch.equal(noisy[:, 3:], batch[:, 3:]) and not torch.equal(noisy[:, :3], batch[:, :3])
    assert (noisy[:, :3] - batch[:, :3]).std().item() == pytest.approx(SIGMA, rel=0.3)
    assert shift.radius(TAU) == pytest.approx(SIGMA * norm.ppf(TAU))


def test_clouds_outside_the_unit_ball_or_not_clouds_are_one_line_errors():
    shift = PointCoordinates(GaussianNoise(SIGMA))
    x = cloud()
    x[0, 0] = 2.0
    with pytest.raises(ConfigError, match="normalize each cloud"):
        shift.check_example(x)
    with pytest.raises(ConfigError, match=r"point clouds \[C, N\]"):
        shift.check_example(torch.rand(3, 4, 4))


def test_pointnet_restricts_to_the_category_permutes_with_the_points_and_uses_the_code():
    torch.manual_seed(0)
    model = PointNetPartSegmenter(5, 2, True, [[0, 1, 2], [3, 4]], (8, 8), 16, (8,)).eval()
    a, b = cloud(32, category=0), cloud(32, category=1)
    logits = model(torch.stack([a, b]))
    assert logits.shape == (2, 5, 32) and torch.isfinite(logits).all()
    assert (logits[0, 3:] == OUTSIDE).all() and (logits[1, :3] == OUTSIDE).all()
    assert set(logits[0].argmax(0).tolist()) <= {0, 1, 2} and set(logits[1].argmax(0).tolist()) <= {
        3,
        4,
    }
    order = torch.randperm(32)
    assert torch.allclose(model(a[None, :, order]), logits[:1, :, order], atol=1e-5)
    free = PointNetPartSegmenter(5, 2, True, None, (8, 8), 16, (8,)).eval()
    other = a.clone()
    other[6:] = b[6:, :1].expand(-1, 32)  # same points, the other category's code
    assert not torch.allclose(free(a[None]), free(other[None]))
    with pytest.raises(ConfigError, match="category channels"):
        model(torch.rand(1, 7, 32))


class SideOfPlane(nn.Module):
    """Point i is class 1 iff its noisy x coordinate exceeds 0, and that only if its first
    normal component and the category code are exactly as given (else class 2): noise reaching a
    normal or the code would show as class 2. Smoothed under N(0, sigma^2) on xyz, point i has
    p_1 = Phi(x_i / sigma), so its true robust radius (l2 over all coordinates) is |x_i|."""

    def __init__(self, x: Tensor) -> None:
        super().__init__()
        self.register_buffer("fixed", x[3:].clone())

    def forward(self, x: Tensor) -> Tensor:
        intact = (x[:, 3:] == self.fixed).all(dim=1)  # [B, N]
        above = (x[:, 0] > 0).long()
        labels = torch.where(intact, above, torch.full_like(above, 2))
        return nn.functional.one_hot(labels, 3).permute(0, 2, 1).float()


def test_segcertify_per_point_holds_at_alpha_and_never_noises_normals_or_category():
    """Over many trials, P(some certified point has true radius |x_i| <= R) <= alpha (+ 3 standard
    errors, one-sided), and far points are certified (the test can fail both ways)."""
    radius = SIGMA * norm.ppf(TAU)
    x = cloud(12)
    factors = torch.tensor([0.7, 0.9, 1.0, 1.1, 1.3, 1.6, 2.0, 3.0, 3.5, 3.5, 3.5, 3.5])
    x[0] = factors * radius * torch.tensor([1, -1] * 6)
    x[1:3] = 0.0
    model, shift, alpha, trials = SideOfPlane(x), PointCoordinates(GaussianNoise(SIGMA)), 0.2, 150
    wrong, far = 0, 0
    for trial in range(trials):
        generator = torch.Generator().manual_seed(trial)
        classes, reported = segcertify(
            model, x, SIGMA, 20, 100, TAU, alpha, "holm", 200, generator, perturbation=shift
        )
        assert reported == pytest.approx(radius)
        assert not (classes == 2).any()  # normals and category never noised
        certified = classes != ABSTAIN
        wrong += bool((certified & (factors <= 1.0)).any())
        far += int(certified[-4:].sum())
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    assert wrong / trials <= bound, (wrong, trials)
    assert far >= 0.9 * 4 * trials
