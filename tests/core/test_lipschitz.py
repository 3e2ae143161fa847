"""The Lipschitz bound of the logit map: power iteration against exact spectral norms, the bound
against logit changes of pairs of nearby points, and unsupported layers refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoothcert.certifiers.lipschitz import (
    _conv_operator,
    conv_upper_bound,
    lipschitz_bound,
    lipschitz_radius,
    pool_norm,
    spectral_norm,
)
from smoothcert.errors import ConfigError
from smoothcert.models.classifiers import DigitsCNN, NormalizedClassifier


def test_power_iteration_matches_the_dense_spectral_norm():
    w = torch.randn(30, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = spectral_norm(lambda v: v @ w.T, lambda u: u @ w, (20,))
    assert got == pytest.approx(float(torch.linalg.matrix_norm(w, ord=2)), rel=1e-8)


@pytest.mark.parametrize(
    ("stride", "padding", "size"), [(1, 1, 4), (2, 1, 8), (2, 1, 7), (2, 0, 6)]
)
def test_conv_operator_norm_matches_its_matrix(stride, padding, size):
    torch.manual_seed(stride + size)
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=padding, bias=False)
    scale = torch.rand(3) + 0.5
    forward, transpose = _conv_operator(conv, scale, (2, size, size))
    # The operator's matrix, column by column, and its transpose against the adjoint.
    basis = torch.eye(2 * size * size, dtype=torch.float64).view(-1, 2, size, size)
    matrix = forward(basis).flatten(1).T
    y = torch.randn((1, *forward(basis[:1]).shape[1:]), dtype=torch.float64)
    assert torch.allclose(transpose(y).flatten(), matrix.T @ y.flatten())
    got = spectral_norm(forward, transpose, (2, size, size))
    exact = float(torch.linalg.matrix_norm(matrix, ord=2))
    # Power iteration approaches from below (a tightness check only).
    assert exact * (1 - 1e-5) <= got <= exact * (1 + 1e-9)


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups", "size"),
    [
        (1, 1, 1, 1, 4),
        (2, 1, 1, 1, 8),
        (2, 1, 1, 1, 7),
        (2, 0, 1, 1, 6),
        (1, 2, 2, 1, 6),
        (1, 1, 1, 2, 5),
        (1, 0, 1, 1, 5),
    ],
)
def test_conv_bound_is_above_the_exact_norm_and_close_to_it(
    stride, padding, dilation, groups, size
):
    # The bound lipschitz_bound uses: never below the operator's exact norm (its matrix's SVD).
    torch.manual_seed(stride + size + 7 * dilation + 11 * groups)
    conv = nn.Conv2d(2, 4, 3, stride=stride, padding=padding, dilation=dilation, groups=groups)
    scale = torch.rand(4) + 0.5
    forward, _ = _conv_operator(conv, scale, (2, size, size))
    basis = torch.eye(2 * size * size, dtype=torch.float64).view(-1, 2, size, size)
    exact = float(torch.linalg.matrix_norm(forward(basis).flatten(1).T, ord=2))
    bound = conv_upper_bound(conv, scale, (2, size, size))
    assert exact * (1 - 1e-12) <= bound
    if dilation == 1:  # the circular norm is close; dilation on a small image loosens it
        assert bound <= 1.25 * exact


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "shape"),
    [(2, 3, 1, (1, 3, 2)), (2, 3, 1, (2, 3, 2)), (1, 4, 0, (1, 5, 3)), (3, 2, 1, (1, 7, 4))],
)
def test_stride_larger_than_the_kernel_on_a_small_input_is_bounded(kernel, stride, padding, shape):
    # Once a raw RuntimeError (the transpose, called without output_padding, had width <= 0).
    torch.manual_seed(kernel + stride)
    conv = nn.Conv2d(shape[0], 3, kernel, stride=stride, padding=padding, bias=False)
    forward, transpose = _conv_operator(conv, None, shape)
    count = shape[0] * shape[1] * shape[2]
    matrix = forward(torch.eye(count, dtype=torch.float64).view(-1, *shape)).flatten(1).T
    y = torch.randn((1, *forward(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:]))
    assert torch.allclose(transpose(y.double()).flatten(), matrix.T @ y.double().flatten())
    exact = float(torch.linalg.matrix_norm(matrix, ord=2))
    bound = lipschitz_bound(nn.Sequential(conv, nn.Flatten()), shape)
    assert exact * (1 - 1e-12) <= bound.constant <= 2 * exact


@pytest.mark.parametrize(
    "pool", [nn.AvgPool2d(2), nn.AvgPool2d(3, stride=1, padding=1), nn.AdaptiveAvgPool2d(3)]
)
def test_pool_norm_is_the_exact_norm_of_the_pooling(pool):
    shape = (3, 5, 5)
    basis = torch.eye(75, dtype=torch.float64).view(75, *shape)
    exact = float(torch.linalg.matrix_norm(pool(basis).flatten(1).T, ord=2))
    assert pool_norm(pool, shape) == pytest.approx(exact, rel=1e-12)


def _trained_like(model: nn.Module) -> nn.Module:
    """Random BatchNorm statistics, so BatchNorm is not the identity in eval mode."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.05, 2.0)
            m.running_mean.uniform_(-1, 1)
            m.weight.data.uniform_(0.5, 2.0)
    return model.eval()


def _max_ratio(model: nn.Module, x: torch.Tensor, pairs: int, scale: float) -> float:
    """The largest ||f(a) - f(b)|| / ||a - b|| over random pairs near ``x`` and over pairs along
    each point's top right singular vector of the Jacobian (where the ratio is largest)."""
    gen = torch.Generator().manual_seed(2)
    a = x + scale * torch.randn((pairs, *x.shape[1:]), generator=gen)
    b = a + scale * torch.randn(a.shape, generator=gen)
    with torch.no_grad():
        ratios = [(model(a) - model(b)).flatten(1).norm(dim=1) / (a - b).flatten(1).norm(dim=1)]
    for point in a[:8]:
        jac = torch.autograd.functional.jacobian(lambda z: model(z[None]).flatten(), point)
        _, _, vh = torch.linalg.svd(jac.flatten(1))
        step = 1e-3 * vh[0].view_as(point)
        with torch.no_grad():
            change = (model((point + step)[None]) - model(point[None])).norm()
        ratios.append((change / step.norm()).view(1))
    return float(torch.cat(ratios).max())


@pytest.mark.parametrize(
    "net",
    [
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
        lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)),
        lambda: DigitsCNN(width=4),
    ],
    ids=["linear", "conv_bn", "digits_cnn"],
)
def test_no_pair_of_nearby_points_moves_the_logits_more_than_l(net):
    model = _trained_like(NormalizedClassifier(net(), [0.3], [0.1]))
    bound = lipschitz_bound(model, (1, 8, 8))
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    ratio = _max_ratio(model, x, 512, 0.05)
    assert ratio <= bound.constant
    if isinstance(model.net, nn.Sequential) and isinstance(
        model.net[0], nn.Flatten
    ):  # one dense map: the bound is its exact norm
        assert ratio >= 0.999 * bound.constant
    elif isinstance(model.net, nn.Sequential):  # one conv: the circular bound is near its norm
        assert ratio >= 0.8 * bound.constant


def test_radius_is_half_the_margin_over_l():
    logits = torch.tensor([[3.0, 1.0, 0.5], [0.0, 0.2, 0.1]])
    predict, radius = lipschitz_radius(logits, 4.0)
    assert predict.tolist() == [0, 1]
    assert radius.tolist() == pytest.approx([2.0 / 8, 0.1 / 8])


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


@pytest.mark.parametrize(
    ("net", "message"),
    [
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.GELU()), "cannot bound GELU"),
        (nn.Sequential(nn.MaxPool2d(3, stride=1), nn.Flatten()), "overlaps its windows"),
        (_Residual(), "not part of a chain"),
    ],
)
def test_unsupported_layers_are_refused_in_one_line(net, message):
    with pytest.raises(ConfigError, match=message) as error:
        lipschitz_bound(NormalizedClassifier(net, [0.3], [0.4]), (1, 8, 8))
    assert "\n" not in str(error.value)
