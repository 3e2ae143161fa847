"""MACER and stability training: each loss against a hand computation on a tiny model, its
gradient against finite differences of that hand computation, and the terms that must switch off
(MACER's hinge above gamma, misclassified examples, non-finite radii)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm as normal
from torch import Tensor, nn

from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise, LaplaceNoise, RayleighNoise, UniformNoise
from smoothcert.regimes import MACER, StabilityTraining, stability_loss
from smoothcert.regimes.base import LABEL_MAP

K, D = 3, 4  # classes, input features of the tiny linear model


def softmax(row: np.ndarray) -> np.ndarray:
    exps = np.exp(row - row.max())
    return exps / exps.sum()


def linear_model(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(D, K).double()


def macer_by_hand(weight, bias, noisy, y, noise, k, beta, gamma, lbd) -> float:
    """The paper's loss with numpy scalars: ``noisy`` are the k x B noisy inputs (copy-major)."""
    batch, sigma = len(y), noise.certified_sigma
    logits = (noisy @ weight.T + bias).reshape(k, batch, K)
    total = 0.0
    for i in range(batch):
        mean = np.mean([softmax(logits[j, i]) for j in range(k)], axis=0)
        total += -math.log(mean[y[i]] + 1e-10)
        soft = np.mean([softmax(beta * logits[j, i]) for j in range(k)], axis=0)
        if np.argmax(soft) != y[i]:
            continue  # misclassified: no robustness term
        p1, p2 = np.sort(soft)[::-1][:2]
        if isinstance(noise, GaussianNoise):
            xi = normal.ppf(p1) - normal.ppf(p2)
            if np.isfinite(xi) and xi <= gamma:
                total += lbd * sigma / 2 * (gamma - xi)
        else:  # Laplace: the one-class l1 radius -lambda ln(2 (1 - p1)), cap gamma sigma / 2
            radius = -noise.scale_of(sigma) * math.log(2 * (1 - p1))
            if radius <= gamma * sigma / 2:
                total += lbd * (gamma * sigma / 2 - radius)
    return total / batch


def drawn_noisy_inputs(noise, x: Tensor, k: int, seed: int) -> np.ndarray:
    """The noisy inputs MACER draws after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return noise(x.repeat(k, 1)).numpy()


@pytest.mark.parametrize(
    ("noise", "beta", "gamma", "lbd"),
    [
        (GaussianNoise(0.5), 16.0, 8.0, 12.0),
        (GaussianNoise(0.25), 2.0, 1.3, 4.0),  # one xi above gamma, one below
        (LaplaceNoise(0.5), 4.0, 8.0, 2.0),
    ],
    ids=["gaussian-paper", "gaussian-other", "laplace"],
)
def test_macer_loss_and_gradient_equal_the_hand_computation(noise, beta, gamma, lbd):
    k, seed = 5, 3
    torch.manual_seed(1)
    x = torch.rand(6, D, dtype=torch.float64) * 2  # some examples misclassified, some not
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    model = linear_model()
    regime = MACER(noise, k=k, beta=beta, gamma=gamma, lbd=lbd)
    torch.manual_seed(seed)
    loss = regime(model, x, y)
    loss.backward()
    noisy = drawn_noisy_inputs(noise, x, k, seed)
    weight, bias = model.weight.detach().numpy(), model.bias.detach().numpy()
    args = (noisy, y.numpy(), noise, k, beta, gamma, lbd)
    expected = macer_by_hand(weight, bias, *args)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    assert macer_by_hand(weight, bias, *args[:-1], 0.0) != pytest.approx(expected)  # term active
    step, numeric = 1e-6, np.zeros_like(weight)
    for index in np.ndindex(weight.shape):
        shift = np.zeros_like(weight)
        shift[index] = step
        numeric[index] = (
            macer_by_hand(weight + shift, bias, *args) - macer_by_hand(weight - shift, bias, *args)
        ) / (2 * step)
    np.testing.assert_allclose(model.weight.grad.numpy(), numeric, rtol=1e-5, atol=1e-8)


class PresetLogits(nn.Module):
    """Logits ``scale * row`` for every input (a learnable scale): the noise cannot move them."""

    def __init__(self, row: list[list[float]]) -> None:
        super().__init__()
        self.row = torch.tensor(row, dtype=torch.float64)
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return (self.scale * self.row).repeat(x.shape[0] // len(self.row), 1)


def loss_and_gradient(regime: MACER, model: nn.Module, y: list[int]) -> tuple[float, float]:
    model.zero_grad()
    loss = regime(model, torch.zeros(len(y), D, dtype=torch.float64), torch.tensor(y))
    loss.backward()
    return loss.item(), model.scale.grad.item()


def test_the_hinge_is_inactive_above_gamma():
    # beta * logits = (0, -16, -17.6): p2 ~ 1.1e-7, xi = Phi^-1(p1) - Phi^-1(p2) ~ 10.3
    model = PresetLogits([[0.0, -1.0, -1.1]])
    soft = softmax(16 * np.array([0.0, -1.0, -1.1]))
    xi = normal.ppf(soft[0]) - normal.ppf(soft[1])
    assert 8 < xi < 12 and np.isfinite(xi)
    plain = loss_and_gradient(MACER(GaussianNoise(0.25), k=2, lbd=0.0), model, [0])
    above = loss_and_gradient(MACER(GaussianNoise(0.25), k=2, gamma=8.0), model, [0])
    assert above == pytest.approx(plain, rel=1e-12)  # xi > gamma: no robustness term
    below = loss_and_gradient(MACER(GaussianNoise(0.25), k=2, gamma=12.0, lbd=12.0), model, [0])
    assert below[0] == pytest.approx(plain[0] + 12.0 * 0.25 / 2 * (12.0 - xi), rel=1e-6)
    assert below[1] != pytest.approx(plain[1])


def test_misclassified_examples_get_no_robustness_term():
    model = PresetLogits([[0.3, 0.1, -0.2]])  # top class 0
    plain = loss_and_gradient(MACER(GaussianNoise(0.25), k=2, lbd=0.0), model, [1])
    wrong = loss_and_gradient(MACER(GaussianNoise(0.25), k=2), model, [1])
    assert wrong == pytest.approx(plain, rel=1e-12)
    right = loss_and_gradient(MACER(GaussianNoise(0.25), k=2), model, [0])
    right_plain = loss_and_gradient(MACER(GaussianNoise(0.25), k=2, lbd=0.0), model, [0])
    assert right[0] > right_plain[0] and right[1] != pytest.approx(right_plain[1])


def test_non_finite_radii_are_dropped_without_nan_gradients():
    # float32 p2 underflows to 0 (Phi^-1 = -inf) for the first example; the second is finite
    model = PresetLogits([[0.0, -10.0, -10.0], [0.1, 0.0, -0.1]]).float()
    model.row = model.row.float()
    regime = MACER(GaussianNoise(0.25), k=2)
    loss = regime(model, torch.zeros(2, D), torch.tensor([0, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(model.scale.grad)
    plain = MACER(GaussianNoise(0.25), k=2, lbd=0.0)(model, torch.zeros(2, D), torch.tensor([0, 0]))
    assert loss.item() > plain.item()  # the finite example still pays its hinge


def test_macer_defaults_lambda_per_sigma_and_deferral():
    regime = MACER(GaussianNoise(0.25))
    assert (regime.k, regime.beta, regime.gamma, regime.lbd) == (16, 16.0, 8.0, 12.0)
    assert MACER(GaussianNoise(0.5)).lbd == 4.0 and MACER(GaussianNoise(0.5), lbd=7).lbd == 7.0
    deferred = MACER(GaussianNoise(0.25), deferred_epochs=2)
    assert deferred.current_lbd == 0.0
    deferred.on_epoch_start(1)
    assert deferred.current_lbd == 0.0
    deferred.on_epoch_start(2)
    assert deferred.current_lbd == 12.0
    assert MACER(UniformNoise(0.25)).cap == pytest.approx(1.0)


def test_macer_refuses_what_it_cannot_train_in_one_line():
    cases = [
        (lambda: MACER(RayleighNoise(0.5)), "regime=macer trains on the noise's radius: rayleigh"),
        (lambda: MACER(GaussianNoise([0.25, 0.5])), "single noise level"),
        (lambda: MACER(GaussianNoise(0.25), k=0), "regime.k=0 must be an integer >= 1"),
        (lambda: MACER(GaussianNoise(0.25), beta=0), "regime.beta=0 must be > 0"),
        (lambda: MACER(GaussianNoise(0.25)).check_fits(LABEL_MAP, "seg"), "regime=macer trains"),
    ]
    for build, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            build()
        assert "\n" not in str(info.value)


def stability_by_hand(weight, bias, x, noisy, y, lbd) -> float:
    total = 0.0
    for i in range(len(y)):
        clean = softmax(x[i] @ weight.T + bias)
        shifted = softmax(noisy[i] @ weight.T + bias)
        total += -math.log(clean[y[i]]) + lbd * float(np.sum(clean * np.log(clean / shifted)))
    return total / len(y)


@pytest.mark.parametrize("lbd", [2.0, 0.5])
def test_stability_loss_and_gradient_equal_the_hand_computation(lbd):
    noise = GaussianNoise(0.5)
    torch.manual_seed(2)
    x = torch.rand(5, D, dtype=torch.float64) * 3
    y = torch.tensor([0, 1, 2, 1, 0])
    model = linear_model(1)
    torch.manual_seed(7)
    loss = StabilityTraining(noise, lbd=lbd)(model, x, y)
    loss.backward()
    torch.manual_seed(7)
    noisy = noise(x).numpy()
    weight, bias = model.weight.detach().numpy(), model.bias.detach().numpy()
    args = (x.numpy(), noisy, y.numpy(), lbd)
    assert loss.item() == pytest.approx(stability_by_hand(weight, bias, *args), rel=1e-10)
    assert stability_by_hand(weight, bias, *args[:-1], 0.0) != pytest.approx(loss.item())
    step, numeric = 1e-6, np.zeros_like(weight)
    for index in np.ndindex(weight.shape):
        shift = np.zeros_like(weight)
        shift[index] = step
        numeric[index] = (
            stability_by_hand(weight + shift, bias, *args)
            - stability_by_hand(weight - shift, bias, *args)
        ) / (2 * step)
    np.testing.assert_allclose(model.weight.grad.numpy(), numeric, rtol=1e-5, atol=1e-8)


def test_stability_kl_vanishes_for_identical_predictions_and_refuses_negative_lambda():
    logits = torch.tensor([[1.0, -0.5, 2.0]], requires_grad=True)
    y = torch.tensor([2])
    loss = stability_loss(logits, logits.detach().clone(), y, 2.0)
    assert loss.item() == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert StabilityTraining(LaplaceNoise(0.5)).lbd == 2.0
    with pytest.raises(ConfigError, match="regime.lbd=-1.0 must be a number >= 0"):
        StabilityTraining(GaussianNoise(0.25), lbd=-1)
