"""The differentiable radius (``Noise.radius_torch``): the numpy certificate's values where it
certifies, and gradients equal to the analytic derivative and to finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm as normal

from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise, LaplaceNoise, RayleighNoise, UniformNoise

P = [0.3, 0.5, 0.51, 0.7, 0.9, 0.99, 0.999]
CASES = [  # (noise, norm, dim)
    (GaussianNoise(0.25), "l2", None),
    (GaussianNoise(0.5), "l1", None),
    (GaussianNoise(0.5), "linf", 64),
    (LaplaceNoise(0.5), "l1", None),
    (UniformNoise(0.25), "l1", None),
    (UniformNoise(0.5), "linf", 64),
]


def analytic_derivative(noise, norm: str, dim: int | None, p: np.ndarray) -> np.ndarray:
    """d radius / d p_lower, written out from each certificate's formula."""
    sigma = noise.certified_sigma
    if isinstance(noise, GaussianNoise):  # sigma * Phi^-1(p): sigma / phi(Phi^-1(p))
        slope = sigma / normal.pdf(normal.ppf(p))
        return slope / math.sqrt(dim) if norm == "linf" else slope
    lam = noise.scale_of(sigma)
    if isinstance(noise, LaplaceNoise):  # -lam ln(2 (1 - p))
        return lam / (1 - p)
    if norm == "linf":  # 2 lam (1 - (3/2 - p)^(1/d))
        return 2 * lam / dim * np.power(1.5 - p, 1.0 / dim - 1)
    return np.full_like(p, 2 * lam)  # 2 lam (p - 1/2)


@pytest.mark.parametrize(("noise", "norm", "dim"), CASES, ids=lambda c: str(c))
def test_equals_the_numpy_radius_and_has_the_analytic_gradient(noise, norm, dim):
    p = torch.tensor(P, dtype=torch.float64, requires_grad=True)
    radius = noise.radius_torch(p, norm, dim)
    expected = noise.radius(np.array(P), norm, dim)
    certifies = np.array(P) > 0.5
    np.testing.assert_allclose(radius.detach().numpy()[certifies], expected[certifies], rtol=1e-12)
    np.testing.assert_allclose(radius.detach().clamp(min=0).numpy(), expected, rtol=1e-12)
    assert (radius.detach().numpy()[~certifies] <= 1e-15).all()  # continued below 1/2, not 0
    (gradient,) = torch.autograd.grad(radius.sum(), p)
    slope = analytic_derivative(noise, norm, dim, np.array(P))
    np.testing.assert_allclose(gradient.numpy(), slope, rtol=1e-9)


@pytest.mark.parametrize(("noise", "norm", "dim"), CASES, ids=lambda c: str(c))
def test_gradient_matches_finite_differences(noise, norm, dim):
    p = torch.tensor([0.55, 0.8, 0.95], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: noise.radius_torch(q, norm, dim), (p,))


def test_gaussian_two_class_radius_and_its_gradients():
    noise = GaussianNoise(0.25)
    p = torch.tensor([0.6, 0.9, 0.99], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([0.3, 0.05, 0.001], dtype=torch.float64, requires_grad=True)
    radius = noise.radius_torch(p, p_upper=q)
    expected = noise.radius(p.detach().numpy(), p_upper=q.detach().numpy())
    np.testing.assert_allclose(radius.detach().numpy(), expected, rtol=1e-12)
    grad_p, grad_q = torch.autograd.grad(radius.sum(), (p, q))
    pn, qn = p.detach().numpy(), q.detach().numpy()
    np.testing.assert_allclose(grad_p.numpy(), 0.125 / normal.pdf(normal.ppf(pn)), rtol=1e-9)
    np.testing.assert_allclose(grad_q.numpy(), -0.125 / normal.pdf(normal.ppf(qn)), rtol=1e-9)
    assert torch.autograd.gradcheck(lambda a, b: noise.radius_torch(a, p_upper=b), (p, q))


def test_float32_matches_and_the_ends_are_infinite():
    noise = GaussianNoise(0.5)
    radius = noise.radius_torch(torch.tensor([0.5, 0.9, 1.0]))
    assert radius[0] == 0 and math.isclose(radius[1], 0.5 * normal.ppf(0.9), rel_tol=1e-6)
    assert torch.isinf(radius[2])
    assert torch.isinf(LaplaceNoise(0.5).radius_torch(torch.tensor([1.0]))).all()


def test_noises_without_a_differentiable_radius_say_so_in_one_line():
    with pytest.raises(ConfigError, match="rayleigh noise certifies a multiplicative range"):
        RayleighNoise(0.5).radius_torch(torch.tensor([0.9]))
    with pytest.raises(ConfigError, match="laplace noise certifies no l2 radius"):
        LaplaceNoise(0.5).radius_torch(torch.tensor([0.9]), "l2")
    with pytest.raises(ConfigError, match="only gaussian noise has a two-class radius"):
        UniformNoise(0.5).radius_torch(torch.tensor([0.9]), p_upper=torch.tensor([0.1]))
    with pytest.raises(ConfigError, match="needs the input dim"):
        GaussianNoise(0.5).radius_torch(torch.tensor([0.9]), "linf")
    with pytest.raises(ConfigError, match="single noise level"):
        GaussianNoise([0.25, 0.5]).radius_torch(torch.tensor([0.9]))
