"""Consistency regularization and SmoothAdv: losses against hand computations, attack guarantees."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError
from smoothcert.models import DigitsCNN, NormalizedClassifier
from smoothcert.noise import GaussianNoise
from smoothcert.regimes import ConsistencyRegularization, consistency_loss
from smoothcert.regimes.smoothadv import SmoothAdv, smoothed_nll, smoothed_pgd_l2


def softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def hand_consistency(logits: list[list[list[float]]], labels: list[int], lbd, eta) -> float:
    """The loss of Jeong & Shin written out with scalars: copies i, examples b, classes k."""
    m, batch = len(logits), len(labels)
    probs = [[softmax(logits[i][b]) for b in range(batch)] for i in range(m)]
    total = 0.0
    for b in range(batch):
        mean = [sum(probs[i][b][k] for i in range(m)) / m for k in range(len(probs[0][b]))]
        ce = sum(-math.log(probs[i][b][labels[b]]) for i in range(m)) / m
        kl = sum(
            sum(p * (math.log(p) - math.log(q)) for p, q in zip(mean, probs[i][b], strict=True))
            for i in range(m)
        )
        entropy = -sum(p * math.log(p) for p in mean)
        total += ce + lbd * kl / m + eta * entropy
    return total / batch


LOGITS = [  # m = 3 copies, batch 2, 3 classes
    [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]],
    [[1.0, 0.0, -0.5], [-2.0, 1.5, 0.0]],
    [[0.3, 0.3, 2.5], [0.0, 0.0, 0.0]],
]


@pytest.mark.parametrize("lbd,eta", [(10.0, 0.5), (0.0, 0.0), (1.0, 2.0)])
def test_consistency_loss_equals_hand_computation(lbd, eta):
    labels = [0, 1]
    got = consistency_loss(
        torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(labels), lbd, eta
    )
    assert got.item() == pytest.approx(hand_consistency(LOGITS, labels, lbd, eta), rel=1e-12)


def test_consistency_with_identical_copies_is_cross_entropy_plus_entropy():
    logits = torch.tensor([LOGITS[0]] * 2, dtype=torch.float64)  # KL term vanishes
    y = torch.tensor([0, 2])
    probs = logits[0].softmax(-1)
    expected = nn.functional.cross_entropy(logits[0], y) - 0.5 * (probs * probs.log()).sum(1).mean()
    assert consistency_loss(logits, y, 10.0, 0.5).item() == pytest.approx(expected.item())


def test_consistency_loss_is_finite_when_probabilities_underflow():
    logits = torch.tensor([[[300.0, -300.0]], [[-300.0, 300.0]]], requires_grad=True)
    loss = consistency_loss(logits, torch.tensor([0]), 10.0, 0.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


class FixedLogits(nn.Module):
    """Returns preset logits for a batch of m * B inputs (records what it was called with)."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.inputs.append(x)
        return self.logits.reshape(-1, self.logits.shape[-1])


def test_consistency_objective_feeds_m_noisy_copies_in_copy_major_order():
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    model = FixedLogits(logits)
    objective = ConsistencyRegularization(GaussianNoise(0.0), m=3, lbd=10.0, eta=0.5)
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 1])
    loss = objective(model, x, y)
    assert loss.item() == pytest.approx(hand_consistency(LOGITS, [0, 1], 10.0, 0.5))
    assert torch.equal(model.inputs[0], x.repeat(3, 1, 1, 1))  # sigma 0: exact copies


def test_consistency_copies_get_independent_noise():
    model = FixedLogits(torch.zeros(2, 4, 10))
    ConsistencyRegularization(GaussianNoise(0.5), m=2)(
        model, torch.rand(4, 1, 8, 8), torch.ones(4).long()
    )
    first, second = model.inputs[0].chunk(2)
    assert not torch.equal(first, second)


@pytest.mark.parametrize(
    "kwargs,setting",
    [({"m": 0}, "regime.m"), ({"lbd": -1}, "regime.lbd"), ({"eta": -0.1}, "regime.eta")],
)
def test_consistency_rejects_bad_settings(kwargs, setting):
    with pytest.raises(ConfigError, match=setting) as info:
        ConsistencyRegularization(GaussianNoise(0.25), **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs,setting",
    [
        ({"m": 0}, "regime.m"),
        ({"steps": 0}, "regime.steps"),
        ({"epsilon": -0.1}, "regime.epsilon"),
        ({"epsilon": 64}, "divide it by 256"),
        ({"warmup_epochs": -1}, "regime.warmup_epochs"),
    ],
)
def test_smoothadv_rejects_bad_settings(kwargs, setting):
    with pytest.raises(ConfigError, match=setting) as info:
        SmoothAdv(GaussianNoise(0.25), **kwargs)
    assert "\n" not in str(info.value)


def test_smoothed_nll_is_minus_log_of_mean_probability():
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    got = smoothed_nll(logits, torch.tensor([2, 1]))
    for b, label in enumerate([2, 1]):
        mean = sum(softmax(LOGITS[i][b])[label] for i in range(3)) / 3
        assert got[b].item() == pytest.approx(-math.log(mean), rel=1e-12)


def digits_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return NormalizedClassifier(DigitsCNN(10, width=8), [0.3], [0.4]).double()


def smoothed_loss(model: nn.Module, x: Tensor, y: Tensor, noise: Tensor) -> Tensor:
    m, batch = noise.shape[:2]
    with torch.no_grad():
        logits = model((x.unsqueeze(0) + noise).flatten(0, 1)).view(m, batch, -1)
    return smoothed_nll(logits, y)


def test_attack_stays_in_the_ball_and_unit_box_and_beats_random_points():
    model = digits_model().eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=generator, dtype=torch.float64)
    x[:4] = 0.0  # corners of the box: the [0, 1] projection binds
    x[4:8] = 1.0
    y = torch.randint(0, 10, (16,), generator=generator)
    noise = 0.25 * torch.randn(4, *x.shape, generator=generator, dtype=torch.float64)
    epsilon = 0.5
    x_adv = smoothed_pgd_l2(model, x, y, noise, epsilon, steps=10)
    distance = (x_adv - x).flatten(1).norm(dim=1)
    assert (distance <= epsilon + 1e-9).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    attacked = smoothed_loss(model, x_adv, y, noise)
    # A random point of the ball (uniform direction and radius), projected onto [0, 1].
    direction = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    direction /= direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    radius = epsilon * torch.rand(16, 1, 1, 1, generator=generator, dtype=torch.float64)
    random_point = (x + radius * direction).clamp(0, 1)
    assert (attacked > smoothed_loss(model, random_point, y, noise)).all()
    assert (attacked > smoothed_loss(model, x, y, noise)).all()


def test_attack_with_zero_epsilon_returns_the_input_and_leaves_parameters_without_gradients():
    model = digits_model()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    noise = torch.zeros(2, *x.shape, dtype=torch.float64)
    assert torch.equal(smoothed_pgd_l2(model, x, torch.zeros(3).long(), noise, 0.0, 5), x)
    smoothed_pgd_l2(model, x, torch.zeros(3).long(), noise, 0.3, 3)
    assert all(p.grad is None for p in model.parameters())


def test_smoothadv_attacks_in_eval_mode_and_keeps_batchnorm_statistics():
    model = digits_model()
    model.train()
    objective = SmoothAdv(GaussianNoise(0.25), epsilon=0.5, steps=3, m=2, warmup_epochs=0)
    x, y = torch.rand(8, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (8,))
    modes = []
    model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    loss = objective(model, x, y)
    assert modes == [False] * 3 + [True]  # three attack passes in eval mode, one training pass
    assert model.training
    # BatchNorm counted one batch per layer: attack passes did not touch its running statistics.
    tracked = [v.item() for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")]
    assert tracked == [1] * 3
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_smoothadv_without_multi_noise_trains_on_one_copy():
    model = FixedLogits(torch.zeros(1, 5, 10))
    objective = SmoothAdv(GaussianNoise(0.25), epsilon=0.0, steps=2, m=4, multi_noise=False)
    objective(model, torch.rand(5, 1, 8, 8), torch.zeros(5).long())
    assert [len(t) for t in model.inputs] == [5]  # epsilon 0: no attack passes


@pytest.mark.parametrize(
    "warmup,expected",
    [(4, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]), (1, [1.0] * 6), (0, [1.0] * 6)],
)
def test_warmup_grows_epsilon_linearly(warmup, expected):
    objective = SmoothAdv(GaussianNoise(0.25), epsilon=1.0, warmup_epochs=warmup)
    got = []
    for epoch in range(6):
        objective.on_epoch_start(epoch)
        got.append(objective.current_epsilon)
    assert got == pytest.approx(expected)


def test_warmup_epsilon_reaches_the_attack():
    model = digits_model().eval()
    objective = SmoothAdv(GaussianNoise(0.25), epsilon=1.0, steps=5, m=2, warmup_epochs=4)
    x, y = torch.full((4, 1, 8, 8), 0.5, dtype=torch.float64), torch.arange(4)
    noise = torch.zeros(2, *x.shape, dtype=torch.float64)
    distances = []
    for epoch in (0, 1, 3):
        objective.on_epoch_start(epoch)
        x_adv = objective.attack(model, x, y, noise)
        distances.append((x_adv - x).flatten(1).norm(dim=1).max().item())
    assert distances[0] <= 0.25 + 1e-9 and distances[1] <= 0.5 + 1e-9
    assert distances[0] < distances[1] < distances[2] <= 1.0 + 1e-9
