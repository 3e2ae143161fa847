"""Attacks in l1 and linf beside the l1 / linf certificates: each stays in its ball, each finds
the analytic minimal perturbation of a linear model, the l1 projection is exact, the
attack's norm follows the certificate's (a mismatch is one line), and the curve goes through the
report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from torch import nn

from callbacks.attack import EmpiricalRobustness
from conftest import TINY, compose_config
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.attacks import smoothed_pgd, smoothed_pgd_l2
from smoothcert.attacks.empirical import base_pgd, base_pgd_l2
from smoothcert.attacks.smoothed_pgd import project_l1
from smoothcert.errors import ConfigError

NORMS = {"l1": 1, "l2": 2, "linf": float("inf")}
# w . x > c is class 1. One strong pixel (weight 1) and 15 weak ones (0.05): at x = 0.5 the margin
# is 0.1, so the minimal perturbation is 0.1 / ||w||_inf = 0.1 in l1 (the strong pixel alone; a
# dense l1 step gets only ||w||_2^2 / ||w||_1 = 0.59 of that), 0.1 / ||w||_2 in l2 and
# 0.1 / ||w||_1 in linf (every pixel).
WEIGHTS = torch.tensor([1.0] + [0.05] * 15)
MARGIN = 0.1
DUAL = {"l1": float("inf"), "l2": 2, "linf": 1}
MINIMAL = {norm: MARGIN / float(WEIGHTS.norm(p=q)) for norm, q in DUAL.items()}


def linear_model() -> nn.Module:
    layer = nn.Linear(16, 2)
    threshold = float(WEIGHTS.sum()) * 0.5 - MARGIN
    with torch.no_grad():
        layer.weight.copy_(torch.stack([-WEIGHTS, WEIGHTS]) / 2)
        layer.bias.copy_(torch.tensor([threshold, -threshold]) / 2)
    return nn.Sequential(nn.Flatten(), layer)


def distances(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    return (x_adv - x).flatten(1).norm(p=NORMS[norm], dim=1)


@pytest.mark.parametrize("norm", list(NORMS))
def test_both_attacks_stay_in_the_ball_and_in_the_box(norm):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    x = torch.rand(4, 1, 6, 6)
    x[1, :, :3] = 0.0  # pixels at the bounds
    x[2, :, 3:] = 1.0
    y = torch.tensor([0, 1, 2, 0])
    radii = torch.tensor([0.0, 0.05, 0.3, 1.5])
    noise = 0.25 * torch.randn(3, *x.shape)
    for x_adv in (
        smoothed_pgd(model, x, y, noise, radii, 6, norm),
        base_pgd(model, x, y, radii.tolist(), 6, seed=0, norm=norm),
    ):
        moved = distances(x_adv, x, norm)
        assert (moved <= radii * (1 + 1e-5)).all() and (moved[1:] > 0).all()
        assert x_adv.min() >= 0 and x_adv.max() <= 1 and torch.equal(x_adv[0], x[0])


@pytest.mark.parametrize("norm", list(NORMS))
@pytest.mark.parametrize("kind", ["smoothed", "base"])
def test_the_attacks_find_the_minimal_perturbation_of_a_linear_model(kind, norm):
    torch.manual_seed(1)
    model = linear_model()
    x = torch.full((2, 1, 4, 4), 0.5)
    y = torch.ones(2, dtype=torch.long)
    eps = [0.8 * MINIMAL[norm], 1.25 * MINIMAL[norm]]
    if kind == "smoothed":
        noise = 0.25 * torch.randn(8, *x.shape)
        x_adv = smoothed_pgd(model, x, y, noise, torch.tensor(eps), 20, norm)
    else:
        x_adv = base_pgd(model, x, y, eps, 20, seed=0, norm=norm)
    assert (distances(x_adv, x, norm) <= torch.tensor(eps) * (1 + 1e-5)).all()
    assert model(x_adv).argmax(1).tolist() == [1, 0]  # not inside the minimum, across beyond it


def test_l2_is_the_attack_it_was():
    torch.manual_seed(2)
    model, x, y = linear_model(), torch.rand(2, 1, 4, 4), torch.ones(2, dtype=torch.long)
    noise = 0.25 * torch.randn(4, *x.shape)
    same = smoothed_pgd(model, x, y, noise, 0.3, 5), smoothed_pgd_l2(model, x, y, noise, 0.3, 5)
    assert torch.equal(*same)
    base = base_pgd(model, x, y, [0.3, 0.1], 5, 7), base_pgd_l2(model, x, y, [0.3, 0.1], 5, 7)
    assert torch.equal(*base)
    with pytest.raises(ConfigError, match="attack norm='l3' is unknown: use one of l1, l2, linf"):
        smoothed_pgd(model, x, y, noise, 0.3, 5, "l3")


def bisection_projection(v: np.ndarray, radius: float) -> np.ndarray:
    """The oracle: soft-thresholding at the theta where sum(max(|v| - theta, 0)) = radius,
    found by scipy's brentq (another algorithm than the sort-based one)."""
    if np.abs(v).sum() <= radius:
        return v
    theta = brentq(lambda t: np.maximum(np.abs(v) - t, 0).sum() - radius, 0, np.abs(v).max())
    return np.sign(v) * np.maximum(np.abs(v) - theta, 0)


def test_the_l1_projection_is_the_closest_point_of_the_ball():
    torch.manual_seed(3)
    x0, x = torch.rand(4, 12, dtype=torch.float64), 3 * torch.randn(4, 12, dtype=torch.float64)
    radii = torch.tensor([0.0, 0.5, 2.0, 100.0], dtype=torch.float64)
    projected = project_l1(x, x0, radii)
    for row, radius in enumerate(radii.tolist()):
        oracle = bisection_projection((x - x0)[row].numpy(), radius)
        assert np.allclose((projected - x0)[row].numpy(), oracle, atol=1e-9)
    assert torch.allclose(projected[3], x[3]) and torch.equal(projected[0], x0[0])
    assert torch.equal(project_l1(x, x0, 0.5)[1], projected[1])  # one radius for all
    # Foolbox 3.3.4's projection gives [1.25, 0, 0, 0, 0] here (outside the ball): ours is exact.
    v = torch.tensor([[3.0, -1.5, 0.7, 0.2, 0.1]], dtype=torch.float64)
    assert project_l1(v, torch.zeros_like(v), 1.0).tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]]


SMALL = ["certify.num_examples=2", "certify.n=100", "attack.n=50", "attack.m=2", "attack.steps=2"]


def test_the_attack_takes_the_certificates_norm_and_a_mismatch_is_one_line(make_cfg, tmp_path):
    run = build_run(make_cfg(*TINY, *SMALL, "attack=smoothed_pgd", "noise=laplace"))
    run.trainer.fit(run.module, datamodule=run.datamodule)
    (attack,) = [c for c in run.callbacks if isinstance(c, EmpiricalRobustness)]
    assert attack.norm == "l1" and attack.certifier.norm == "l1"
    text = (tmp_path / "empirical.tsv").read_text()
    assert "# norm: l1\n" in text and len(attack.records) == 2
    curve = (tmp_path / "certified_vs_empirical.tsv").read_text().splitlines()
    assert curve[0] == "empirical\tradius\taccuracy"
    assert {r[:3] for r in curve[1:]} == {"0.0", "1.0"}  # certified and attacked curves
    report = attack.build_report(run.module)
    drawn = report.sections[0].curve
    assert drawn.x_name == "l1 radius" and ", l1), sigma=" in drawn.title

    mismatch = ["attack=base", "noise=laplace", "attack.norm=linf"]
    run = build_run(compose_config([*TINY, *SMALL, *mismatch], tmp_path / "other"))
    with pytest.raises(Exception) as info:
        run.trainer.fit(run.module, datamodule=run.datamodule)
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError) and "\n" not in str(error)
    assert "attack.norm=linf differs from the norm of certify=cohen's radii (l1)" in str(error)
