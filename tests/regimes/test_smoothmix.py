"""SmoothMix (Jeong et al. 2021): the loss against a hand computation, its gradient against its
formula, the attack's guarantees, the lambda = 0 reduction to consistency, and its settings."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from conftest import CONF
from smoothcert.attacks.smoothed_pgd import smoothed_nll
from smoothcert.errors import ConfigError
from smoothcert.models import DigitsCNN, NormalizedClassifier
from smoothcert.noise import GaussianNoise, LaplaceNoise, UniformNoise
from smoothcert.regimes import SmoothMix, consistency_loss, smoothmix_loss, smoothmix_pgd
from smoothcert.regimes.base import CLASS_LOGITS, LABEL_MAP


def softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def hand_smoothmix(clean, mix, labels, lams, weight) -> float:
    """The paper's loss written out with scalars: copies j, examples i, classes k."""
    m, batch, classes = len(clean), len(labels), len(clean[0][0])
    total = 0.0
    for i in range(batch):
        probs = [softmax(clean[j][i]) for j in range(m)]
        mean = [sum(p[k] for p in probs) / m for k in range(classes)]
        target = [(1 - lams[i]) * mean[k] + lams[i] / classes for k in range(classes)]
        correct = max(range(classes), key=lambda k: mean[k]) == labels[i]
        for j in range(m):
            q = softmax(mix[j][i])
            kl = sum(t * (math.log(t) - math.log(qk)) for t, qk in zip(target, q, strict=True))
            total += -math.log(probs[j][labels[i]]) + weight * correct * kl
    return total / (m * batch)


CLEAN = [  # m = 2 copies, batch 3, 3 classes; example 2's smoothed prediction (class 2) is wrong
    [[2.0, -1.0, 0.5], [0.1, 0.9, 0.3], [0.0, 0.2, 1.0]],
    [[1.0, 0.0, -0.5], [-2.0, 1.5, 0.0], [0.3, 0.0, 2.0]],
]
MIX = [
    [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0]],
    [[-1.0, 2.0, 0.5], [0.2, 0.2, 0.2], [1.0, 1.0, -1.0]],
]
LABELS, LAMS = [0, 1, 0], [0.1, 0.45, 0.3]


def as_tensors(requires_grad: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    def make(v):
        return torch.tensor(v, dtype=torch.float64, requires_grad=requires_grad)

    return make(CLEAN), make(MIX), torch.tensor(LABELS), torch.tensor(LAMS, dtype=torch.float64)


@pytest.mark.parametrize("weight", [5.0, 0.5, 0.0])
def test_loss_equals_hand_computation(weight):
    clean, mix, y, lam = as_tensors()
    got = smoothmix_loss(clean, mix, y, lam, weight)
    assert got.item() == pytest.approx(hand_smoothmix(CLEAN, MIX, LABELS, LAMS, weight), rel=1e-12)


def test_gradient_on_the_mixed_logits_is_the_kl_gradient_where_correct():
    """d/dz KL(t || softmax z) = softmax z - t, times weight / (m B); 0 where F(x_0) is wrong."""
    clean, mix, y, lam = as_tensors(requires_grad=True)
    smoothmix_loss(clean, mix, y, lam, 5.0).backward()
    with torch.no_grad():
        mean = clean.softmax(-1).mean(0)
        target = (1 - lam.view(-1, 1)) * mean + lam.view(-1, 1) / 3
        correct = (mean.argmax(-1) == y).double().view(1, -1, 1)
        expected = 5.0 * correct * (mix.softmax(-1) - target) / (2 * 3)
    assert correct.flatten().tolist() == [1.0, 1.0, 0.0]
    torch.testing.assert_close(mix.grad, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("detach_target", [True, False])
def test_gradient_on_the_clean_logits(detach_target):
    """Detached: the cross-entropy's gradient only. Not detached (the reference): plus the KL's
    gradient through the soft label, checked by central differences of the hand computation."""
    clean, mix, y, lam = as_tensors(requires_grad=True)
    smoothmix_loss(clean, mix, y, lam, 5.0, detach_target=detach_target).backward()
    with torch.no_grad():
        cross_entropy = (clean.softmax(-1) - nn.functional.one_hot(y, 3)) / (2 * 3)
    if detach_target:
        torch.testing.assert_close(clean.grad, cross_entropy, rtol=1e-12, atol=1e-14)
        return
    numeric, h = torch.zeros(2, 3, 3, dtype=torch.float64), 1e-6
    for index in range(18):
        j, i, k = index // 9, index // 3 % 3, index % 3
        up, down = [[row[:] for row in c] for c in CLEAN], [[row[:] for row in c] for c in CLEAN]
        up[j][i][k] += h
        down[j][i][k] -= h
        diff = hand_smoothmix(up, MIX, LABELS, LAMS, 5.0) - hand_smoothmix(
            down, MIX, LABELS, LAMS, 5.0
        )
        numeric[j, i, k] = diff / (2 * h)
    torch.testing.assert_close(clean.grad, numeric, rtol=1e-6, atol=1e-8)
    assert (clean.grad - cross_entropy)[:, :2].abs().max() > 1e-3  # the target's own gradient


class Linear(nn.Module):
    """A float64 linear classifier on flattened inputs (no batch statistics: train = eval)."""

    def __init__(self, features: int = 16, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(features, classes).double()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.flatten(1))


def fixed(regime: SmoothMix, noise: Tensor, lam: Tensor) -> SmoothMix:
    regime.draw_noise = lambda x: noise
    regime.draw_lambda = lambda x: lam
    return regime


def test_forward_is_the_loss_at_the_attack_and_mix_points():
    """The full step on a tiny model with fixed noise and lambda: the loss of the logits at
    x_0 + d_j and at (1 - lam) x_0 + lam x_adv + d_j, with x_0, x_adv from the attack."""
    model, x, y = Linear(), torch.rand(4, 1, 4, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    noise = 0.25 * torch.randn(2, 4, 1, 4, 4, dtype=torch.float64)
    lam = torch.tensor([0.0, 0.1, 0.25, 0.49], dtype=torch.float64)
    regime = fixed(
        SmoothMix(GaussianNoise(0.25), m=2, steps=3, eta=5.0, warmup_epochs=4), noise, lam
    )
    loss = regime(model, x, y)
    x_0, x_adv = smoothmix_pgd(model, x, y, noise, 0.5, 3)
    assert torch.equal(x_0, x)  # mix_step 0: the clean side is x
    x_mix = (1 - lam.view(-1, 1, 1, 1)) * x + lam.view(-1, 1, 1, 1) * x_adv
    clean, mix = (model((p + noise).flatten(0, 1)).view(2, 4, 3) for p in (x, x_mix))
    expected = hand_smoothmix(clean.tolist(), mix.tolist(), y.tolist(), lam.tolist(), 5.0 / 4)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_lambda_zero_is_gaussian_augmentation_plus_consistency_at_the_clean_point():
    """lam = 0 (and every smoothed prediction correct): the loss and its parameter gradient are
    Jeong & Shin's with lbd = eta * w and no entropy term (consistency_loss as the oracle)."""
    model, x = Linear(), torch.rand(5, 1, 4, 4, dtype=torch.float64)
    noise = 0.1 * torch.randn(3, 5, 1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        y = model((x + noise).flatten(0, 1)).view(3, 5, 3).softmax(-1).mean(0).argmax(-1)
    regime = SmoothMix(GaussianNoise(0.1), m=3, eta=5.0, warmup_epochs=0)
    loss = fixed(regime, noise, torch.zeros(5, dtype=torch.float64))(model, x, y)
    (grad,) = torch.autograd.grad(loss, model.fc.weight)
    oracle = consistency_loss(model((x + noise).flatten(0, 1)).view(3, 5, 3), y, 5.0, 0.0)
    (oracle_grad,) = torch.autograd.grad(oracle, model.fc.weight)
    assert loss.item() == pytest.approx(oracle.item(), rel=1e-12)
    torch.testing.assert_close(grad, oracle_grad, rtol=1e-10, atol=1e-12)


def digits_model() -> nn.Module:
    torch.manual_seed(0)
    return NormalizedClassifier(DigitsCNN(width=4), [0.3], [0.4])


def test_the_attack_raises_the_smoothed_nll_and_keeps_its_promises():
    model, x, y = digits_model().train(), torch.rand(8, 1, 8, 8), torch.randint(10, (8,))
    noise = 0.25 * torch.randn(2, 8, 1, 8, 8)
    regime = SmoothMix(GaussianNoise(0.25), m=2, steps=4, mix_step=1, warmup_epochs=2)
    x_0, x_adv = regime.attack(model, x, y, noise)
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())

    def nll(points: Tensor) -> Tensor:
        with torch.no_grad():
            return smoothed_nll(model.eval()((points + noise).flatten(0, 1)).view(2, 8, 10), y)

    assert (nll(x_adv) > nll(x)).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and x_0.min() >= 0 and x_0.max() <= 1
    # the one-step adversary, in warm-up (w = 1/2): within alpha * w = 0.25 of x
    assert ((x_0 - x).flatten(1).norm(dim=1) <= 0.25 + 1e-6).all() and not torch.equal(x_0, x)


def test_the_attack_takes_steps_of_alpha_and_respects_max_norm():
    model, x, y = digits_model().eval(), 0.3 + 0.4 * torch.rand(4, 1, 8, 8), torch.randint(10, (4,))
    noise = 0.25 * torch.randn(2, 4, 1, 8, 8)
    _, one_step = smoothmix_pgd(model, x, y, noise, alpha=0.1, steps=1)
    lengths = (one_step - x).flatten(1).norm(dim=1)  # far from the [0, 1] walls: no clamping
    torch.testing.assert_close(lengths, torch.full((4,), 0.1), rtol=1e-5, atol=1e-6)
    _, capped = smoothmix_pgd(model, x, y, noise, alpha=0.5, steps=4, max_norm=0.3)
    assert ((capped - x).flatten(1).norm(dim=1) <= 0.3 + 1e-5).all()


@pytest.mark.parametrize("noise", [LaplaceNoise(0.5), UniformNoise(0.5)])
def test_it_trains_with_any_noise_it_is_given(noise):
    model, x, y = digits_model(), torch.rand(4, 1, 8, 8), torch.randint(10, (4,))
    regime = SmoothMix(noise, m=3, steps=1)
    draws = regime.draw_noise(x)
    assert draws.shape == (3, 4, 1, 8, 8) and regime.alpha == 1.0  # 2 * sigma
    assert draws.std().item() == pytest.approx(0.5, rel=0.1)
    if isinstance(noise, UniformNoise):
        assert draws.abs().max() <= 0.5 * 3**0.5 + 1e-6  # U[-sigma sqrt 3, sigma sqrt 3]
    regime(model, x, y).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_warmup_scales_eta_and_the_contract_states_classifiers():
    regime = SmoothMix(GaussianNoise(0.5), warmup_epochs=10)
    assert regime.alpha == 1.0 and [regime.warmup_at(e) for e in (0, 4, 9, 20)] == [
        0.1,
        0.5,
        1.0,
        1.0,
    ]
    regime.on_epoch_start(4)
    assert regime.warmup == 0.5
    assert SmoothMix(GaussianNoise(0.5), warmup_epochs=0).warmup == 1.0
    regime.check_fits(CLASS_LOGITS, "classification")
    with pytest.raises(ConfigError, match="^regime=smoothmix trains class_logits models, not a"):
        regime.check_fits(LABEL_MAP, "segmentation")


@pytest.mark.parametrize(
    ("noise", "settings", "message"),
    [
        (GaussianNoise(0.0), {}, "noise sigma=0.0 must be > 0"),
        (GaussianNoise([0.25, 0.5]), {}, "needs an explicit step size: set regime.alpha"),
        (GaussianNoise(0.25), {"alpha": 0.0}, "regime.alpha=0.0 must be > 0"),
        (GaussianNoise(0.25), {"mix_step": 4}, "regime.mix_step=4 must be < regime.steps=4"),
        (GaussianNoise(0.25), {"eta": -1}, "regime.eta=-1.0 must be"),
        (GaussianNoise(0.25), {"m": 0}, "regime.m=0 must be"),
    ],
)
def test_bad_settings_are_one_line_errors(noise, settings, message):
    with pytest.raises(ConfigError, match=message) as info:
        SmoothMix(noise, **settings)
    assert "\n" not in str(info.value)


def test_the_config_builds_the_paper_defaults(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg("regime=smoothmix", "sigma=0.5", "debug=default", "logger=none")
    regime = instantiate(cfg.regime)
    assert isinstance(regime, SmoothMix) and regime.noise.sigma == 0.5
    assert (regime.m, regime.steps, regime.alpha, regime.eta) == (2, 4, 1.0, 5.0)
    assert (regime.warmup_epochs, regime.mix_step, regime.detach_target) == (10, 0, False)
    assert (CONF / "regime" / "smoothmix.yaml").exists()


def test_one_step_matches_art_smoothmix_with_a_real_step_size():
    """ART 1.20's PyTorchSmoothMix (a copy of the reference loop) as the oracle, when installed
    (the optional extra ``art``): with the same initialization, data order, noise and lambda
    draws, and ART's ``alpha`` set to a real step size, one chunked ART batch equals two of our
    steps on the chunks (we take one step per batch; the reference one per chunk of B / m)."""
    smoothing = pytest.importorskip("art.estimators.certification.randomized_smoothing")
    x, y = torch.rand(8, 1, 8, 8), torch.randint(10, (8,))

    def run(use_art: bool) -> list[Tensor]:
        model = digits_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        torch.manual_seed(1)
        if use_art:
            art = smoothing.PyTorchSmoothMix(
                model, nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer, clip_values=(0.0, 1.0),
                device_type="cpu", scale=0.25, eta=5.0, num_noise_vec=2, num_steps=3, warmup=1,
            )  # fmt: skip
            art.alpha = 0.5  # ART's step size is its alpha
            art.fit(x.numpy(), y.numpy(), batch_size=8, nb_epochs=1)
        else:
            regime = SmoothMix(GaussianNoise(0.25), m=2, steps=3, eta=5.0, warmup_epochs=1)
            (order,) = torch.utils.data.DataLoader(range(8), batch_size=8, shuffle=True)
            model.train()
            for chunk in order.view(2, 4):
                noises = [0.25 * torch.randn(4, 1, 8, 8) for _ in range(2)]
                regime.draw_noise = lambda _, noises=noises: torch.stack(noises)
                optimizer.zero_grad()
                regime(model, x[chunk], y[chunk]).backward()
                optimizer.step()
        return [p.detach().clone() for p in model.parameters()]

    for ours, theirs in zip(run(False), run(True), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
