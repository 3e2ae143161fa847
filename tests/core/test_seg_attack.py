"""attack=seg_pgd: l2 PGD on a base segmentation model (paper 003 App. C.1), on a 1x1-conv linear
segmenter whose per-pixel distance to the decision boundary is known exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import TINY
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.attacks.segmentation import pixel_loss, segmentation_pgd_l2
from smoothcert.errors import ConfigError


def threshold_segmenter(slope: float = 40.0) -> nn.Module:
    """One channel, two classes: pixel p is class 1 iff x_p > 0.5 (logit difference
    ``slope * (x_p - 0.5)``), so changing pixel p's class takes an l2 perturbation of at least
    ``|x_p - 0.5|`` and changing k pixels at distance d takes at least ``sqrt(k) d``."""
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([-0.5, 0.5]).view(2, 1, 1, 1) * slope)
        conv.bias.copy_(torch.tensor([0.25, -0.25]) * slope)
    return conv


def accuracy(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return (model(x).argmax(dim=1) == mask).flatten(1).float().mean(dim=1)


def test_attack_stays_in_the_ball_and_in_the_unit_cube():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    x = torch.rand(4, 3, 8, 8).round()  # pixels at 0 and 1: the clamp is active everywhere
    mask = torch.randint(0, 4, (4, 8, 8))
    eps = torch.tensor([0.0, 0.3, 1.0, 5.0])
    adv = segmentation_pgd_l2(model, x, mask, eps, steps=10, generator=torch.Generator())
    norms = (adv - x).flatten(1).norm(dim=1)
    assert (norms <= eps + 1e-5).all(), norms
    assert adv.min() >= 0 and adv.max() <= 1
    assert norms[0] == 0 and norms[3] > 1.0  # radius 0 is the clean image; a large one is used


@pytest.mark.parametrize("side", [4, 6])
def test_attack_flips_the_pixels_the_analytic_budget_allows(side):
    # Every pixel at distance d = 0.05 from the boundary, all class 1: no attack below d flips a
    # pixel and none of radius eps flips more than (eps / d)^2 of them. With a steep slope the
    # loss is convex in the margins and PGD piles its budget on few pixels (flipping some once
    # eps > d); with a gentle one the gradient is nearly uniform and PGD finds the uniform shift
    # by eps / sqrt(N), which flips all N pixels once eps > sqrt(N) d.
    d, pixels = 0.05, side * side
    x = torch.full((1, 1, side, side), 0.5 + d)
    mask = torch.ones(1, side, side, dtype=torch.long)

    def attacked(slope: float, eps: float) -> float:
        model = threshold_segmenter(slope)
        adv = segmentation_pgd_l2(model, x, mask, torch.tensor([eps]), generator=torch.Generator())
        return float(accuracy(model, adv, mask))

    far = 1.2 * d * math.sqrt(pixels)
    for slope, eps in [(200, 0.9 * d), (200, 1.5 * d), (200, far), (4, 2.5 * d), (4, far)]:
        acc = attacked(slope, eps)
        flippable = min(pixels, math.floor((eps / d) ** 2))
        assert acc >= 1 - flippable / pixels - 1e-9, (slope, eps, acc)
        if slope == 200 and eps < far:
            assert (acc < 1) == (eps > d), (eps, acc)  # one pixel flips once eps > d
    assert acc == 0.0  # gentle slope beyond sqrt(N) d: every pixel is flipped


def test_ignored_pixels_do_not_enter_the_loss_or_its_gradient():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    mask = torch.randint(0, 3, (2, 4, 4))
    mask[0, :2] = 255
    mask[1] = 255  # an image without labelled pixels has loss 0
    loss = pixel_loss(logits, mask, 255)
    valid = mask[0] != 255
    per_pixel = -logits[0].log_softmax(dim=0).gather(0, mask[0].clamp(max=2)[None])[0]
    assert loss[0].item() == pytest.approx(per_pixel[valid].mean().item(), rel=1e-6)
    assert loss[1].item() == 0
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    assert (grad[0][:, ~valid] == 0).all() and (grad[1] == 0).all()
    assert (grad[0][:, valid] != 0).any()


def test_the_attack_spends_nothing_on_ignored_pixels():
    # The easy pixels (d = 0.01) are ignored and the labelled ones far (d = 0.3): with their
    # labels kept the attack flips easy pixels; ignored, it does not push on them at all.
    model = threshold_segmenter()
    x = torch.full((1, 1, 4, 4), 0.8)
    x[..., :2, :] = 0.51
    mask = torch.ones(1, 4, 4, dtype=torch.long)
    ignored = mask.clone()
    ignored[..., :2, :] = 255
    eps = torch.tensor([0.1])
    with_labels = segmentation_pgd_l2(model, x, mask, eps, steps=50, generator=torch.Generator())
    assert float(accuracy(model, with_labels, mask)) < 1
    adv = segmentation_pgd_l2(model, x, ignored, eps, steps=50, generator=torch.Generator())
    delta = (adv - x)[..., :2, :].flatten()
    start = segmentation_pgd_l2(model, x, ignored, eps, steps=0, generator=torch.Generator())
    begun = (start - x)[..., :2, :].flatten()
    # No gradient reaches them: their part of the perturbation is the random start's, only
    # shrunk by the projections onto the ball.
    scale = float(delta @ begun / (begun @ begun))
    assert 0 <= scale <= 1 + 1e-6 and torch.allclose(delta, scale * begun, atol=1e-6)


BAD = [
    (["attack=seg_pgd", "attack.radii=[0.25,-0.5]"], "an attack epsilon must be >= 0"),
    (["attack=seg_pgd", "attack.steps=0"], "attack.steps=0 must be an integer >= 1"),
    (["attack=seg_pgd"], "attack=seg_pgd attacks segmentation models, but the model is a class"),
    (
        ["+experiment=shapes_seg", "attack=smoothed_pgd"],
        "the model is a segmentation model: use attack=seg_pgd for segmentation",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_seg_attack_setting_is_one_line(make_cfg, overrides, message):
    with pytest.raises(Exception) as info:
        build_run(make_cfg(*TINY, *overrides))
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError) and message in str(error), repr(info.value)
    assert "\n" not in str(error)


def test_seg_attack_without_segcertify_fails_in_setup(make_cfg):
    run = build_run(make_cfg(*TINY, "+experiment=shapes_seg", "certify=none", "attack=seg_pgd"))
    (attack,) = [c for c in run.callbacks if type(c).__name__ == "SegmentationAttack"]
    with pytest.raises(ConfigError, match="attack=seg_pgd attacks the images SegCertify cert"):
        attack.prepare(run.trainer, run.module)  # what setup runs after the selection checks


def test_the_callback_scores_the_model_in_eval_mode_and_radius_zero_is_the_clean_image():
    from callbacks.seg_attack import SegmentationAttack

    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 3, 1)).train()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)  # batch statistics differ from the running ones
    x, mask = torch.rand(1, 6, 6), torch.randint(0, 3, (6, 6))
    mask[0] = 255
    attack = SegmentationAttack(0.25, "unused", radii=[0.0, 0.5], steps=5)
    attack.model, attack.device, attack.ignore = model, torch.device("cpu"), 255
    record = attack.certify_one(0, (x, mask), ["seg_attack"])["seg_attack"]
    with torch.no_grad():
        clean = model.eval()(x[None]).argmax(dim=1)[0]
    valid = mask != 255
    assert record.valid == int(valid.sum()) == 30
    assert record.correct[0] == int(((clean == mask) & valid).sum())
    assert record.correct[1] <= record.correct[0]
