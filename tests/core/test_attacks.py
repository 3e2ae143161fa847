"""Attacks beside the certificate: the moved SmoothAdv attack with per-example radii,
Foolbox's L2PGD on the base model, and the soundness check on a model whose smoothed
classifier is known exactly (a linear base classifier)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoothcert.attacks import smoothed_pgd_l2
from smoothcert.attacks.empirical import (
    attack_example,
    attack_generators,
    base_pgd_l2,
    inside_radius_check,
    success_rate,
)
from smoothcert.certifiers.classification import ABSTAIN, Smooth
from smoothcert.noise import example_generator
from smoothcert.regimes import smoothadv


def linear_model(shift: float = 0.5) -> nn.Module:
    """Two classes on 4x4 images: class 1 iff mean pixel > shift. Its Gaussian-smoothed classifier
    is the same half-space, at l2 distance |mean - shift| * 4 from x (||w|| = 1/4 per pixel)."""
    layer = nn.Linear(16, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.stack([-torch.ones(16), torch.ones(16)]) / 16)
        layer.bias.copy_(torch.tensor([shift, -shift]))
    return nn.Sequential(nn.Flatten(), layer)


def test_smoothadv_uses_the_moved_attack():
    assert smoothadv.smoothed_pgd_l2 is smoothed_pgd_l2


def test_one_radius_per_example_matches_the_shared_radius_and_stays_in_each_ball():
    torch.manual_seed(0)
    model = linear_model().double()
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64)
    y = torch.ones(5, dtype=torch.long)
    noise = 0.25 * torch.randn(3, *x.shape, dtype=torch.float64)
    shared = smoothed_pgd_l2(model, x, y, noise, 0.3, 7)
    each = smoothed_pgd_l2(model, x, y, noise, torch.full((5,), 0.3), 7)
    assert torch.allclose(shared, each, atol=1e-12)
    radii = torch.tensor([0.0, 0.1, 0.2, 0.4, 0.8], dtype=torch.float64)
    x_adv = smoothed_pgd_l2(model, x, y, noise, radii, 7)
    assert ((x_adv - x).flatten(1).norm(dim=1) <= radii + 1e-9).all()
    assert torch.equal(x_adv[0], x[0])


def test_base_attack_is_foolbox_pgd_within_epsilon_and_crosses_the_boundary():
    model = linear_model()
    x = torch.full((2, 1, 4, 4), 0.55)  # distance to the boundary: 0.05 * 4 = 0.2
    y = torch.ones(2, dtype=torch.long)
    x_adv = base_pgd_l2(model, x, y, [0.1, 0.3], steps=20, seed=0)
    assert ((x_adv - x).flatten(1).norm(dim=1) <= torch.tensor([0.1, 0.3]) + 1e-5).all()
    assert model(x_adv).argmax(1).tolist() == [1, 0]


def test_attacks_inside_the_certified_radius_pass_the_soundness_check_and_outside_fail():
    # Certified radii of a linear model are below the true distance to the boundary: attacks at
    # 1.0 R never change PREDICT beyond its alpha; at 3 R the attack crosses the boundary and the
    # same check flags it (so it can fail).
    torch.manual_seed(1)
    smooth = Smooth(linear_model(), 2, 0.25)
    inside, outside, certified = [], [], []
    for idx in range(12):
        x = (0.6 + 0.02 * idx - 0.1 + 0.05 * torch.rand(1, 4, 4)).clamp(0, 1)
        label, radius = smooth.certify(x, 50, 500, 0.01, 1000, example_generator(0, idx))
        assert label == 1 and radius > 0
        generators = attack_generators(0, idx, "cpu")
        settings = (20, 8, 500, 0.01, 1000)
        one, three = attack_example(smooth, "smoothed_pgd", x, 1, [radius, 3 * radius], settings,
                                    generators)  # fmt: skip
        inside.append(one)
        outside.append(three)
        certified.append(label)
    wrong, total, pvalue = inside_radius_check(inside, certified, 0.01, 0.01)
    # At R the point may sit next to the boundary (the certificate of a linear model is nearly
    # tight), where PREDICT errs at rate <= alpha: a disagreement or so is allowed, not more.
    assert total == 12 and pvalue > 1e-3
    assert inside_radius_check(outside, certified, 0.01, 0.01)[2] < 1e-3
    assert success_rate(outside, certified)[0] > 0.5


def test_soundness_check_counts_disagreements_not_abstentions():
    predicts, certified = [1, ABSTAIN, 0, 1], [1, 1, 1, 1]
    wrong, total, pvalue = inside_radius_check(predicts, certified, 0.001, 0.001)
    assert (wrong, total) == (1, 4)
    assert pvalue == pytest.approx(1 - (1 - 0.002) ** 4)
    assert success_rate(predicts, certified) == pytest.approx((0.25, 0.5))


def test_bad_attack_settings_are_one_line_errors():
    from callbacks.attack import EmpiricalRobustness
    from smoothcert.errors import ConfigError

    for kwargs, message in [
        ({"attack": "fgsm"}, "attack=fgsm is unknown"),
        ({"multiples": [1.0, -2.0]}, "an attack epsilon must be >= 0"),
        ({"steps": 0}, "attack.steps=0 must be an integer >= 1"),
    ]:
        settings = {"attack": "smoothed_pgd", "sigma": 0.25, "output_dir": "unused", **kwargs}
        with pytest.raises(ConfigError, match=message) as error:
            EmpiricalRobustness(**settings)
        assert "\n" not in str(error.value)


def test_the_attack_runs_inside_inference_mode_as_certify_py_calls_it():
    # certify.py certifies in Lightning's test loop, under torch.inference_mode(): the callback's
    # start() context gives the attack its gradients back (it crashed there before).
    from callbacks.attack import EmpiricalRobustness
    from smoothcert.records import CohenRecord

    attack = EmpiricalRobustness("smoothed_pgd", 0.25, "unused", radii=[0.0, 0.1], n=50, m=2)
    attack.begin = lambda pl_module: None  # what it reads from Cohen's callback, set by hand
    attack.smooth, attack.device = Smooth(linear_model(), 2, 0.25), torch.device("cpu")
    attack.certified = {3: CohenRecord(3, 1, 1, 0.2, 1, 0.0)}
    x = torch.full((1, 4, 4), 0.6)
    with torch.inference_mode(), attack.start(None, None):
        record = attack.certify_one(3, (x, 1), ["empirical"])["empirical"]
    assert record.targets == ("grid", "grid", "1.00R", "1.50R", "2.00R")
    assert record.epsilons == pytest.approx((0.0, 0.1, 0.2, 0.3, 0.4))
