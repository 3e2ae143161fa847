"""PGD on the smoothed soft classifier (Salman et al. 2019): the attack SmoothAdv trains
against (l2) and the empirical-robustness check attacks certified models with (l2, and l1 / linf
beside the l1 / linf certificates of Laplace, uniform or Gaussian noise).

``epsilon`` is a radius in [0, 1] pixel units (the reference code's l2 ``--epsilon`` is in
1/256 units: its 64, 127, 255 and 512 are our 0.25, 0.5, 1.0 and 2.0). It may be one radius for
the whole batch or one per example.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError

__all__ = ["ATTACK_NORMS", "project_l1", "smoothed_nll", "smoothed_pgd", "smoothed_pgd_l2"]

ATTACK_NORMS = ("l1", "l2", "linf")
SPARSE_QUANTILE = 0.99  # Foolbox's SparseL1DescentAttack default: step on the top 1% of |grad|


def smoothed_nll(logits: Tensor, y: Tensor) -> Tensor:
    """``-log(mean_i softmax(logits[i])_y)`` per example, from logits ``[m, B, K]``; shape ``[B]``.

    This is the cross-entropy of the Monte-Carlo estimate of the smoothed soft classifier
    ``G(x) = E[softmax(f(x + delta))]``: the log of a mean, not the mean of logs. Computed with a
    log-sum-exp, so it is finite even when every copy gives class ``y`` a tiny probability.
    """
    log_probs = logits.log_softmax(dim=-1)
    index = y.view(1, -1, 1).expand(logits.shape[0], -1, 1)
    log_py = log_probs.gather(-1, index).squeeze(-1)  # [m, B]
    return math.log(logits.shape[0]) - torch.logsumexp(log_py, dim=0)


def smoothed_pgd_l2(
    model: nn.Module, x: Tensor, y: Tensor, noise: Tensor, epsilon: float | Tensor, steps: int
) -> Tensor:
    """l2 PGD on the smoothed soft classifier: approximately maximizes ``smoothed_nll``.

    Args:
        model: maps ``[N, C, H, W]`` in [0, 1] pixel space to logits. Its train/eval mode is used
            as given (callers choose; :class:`SmoothAdv` uses eval mode).
        x: clean inputs ``[B, C, H, W]`` in [0, 1].
        y: labels ``[B]``.
        noise: ``[m, B, C, H, W]``, the m noise vectors per example, fixed during the attack.
        epsilon: l2 radius in [0, 1] pixel units (>= 0): a number, or one per example ``[B]``.
        steps: PGD steps (>= 1), each of length ``2 * epsilon / steps`` along the per-example
            normalized gradient (a zero gradient is replaced by a random direction).

    Returns:
        ``x_adv`` (detached) with ``||x_adv - x||_2 <= epsilon`` per example and values in [0, 1]:
        every step is projected onto [0, 1] and then onto the ball, and shrinking ``x_adv - x``
        towards 0 keeps ``x_adv`` a convex combination of two points of [0, 1]. Model parameters
        get no gradient (only the perturbation is differentiated).
    """
    return _smoothed_pgd(model, x, y, noise, epsilon, steps, _l2_step)


def _smoothed_pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    noise: Tensor,
    epsilon: float | Tensor,
    steps: int,
    step: Callable[[Tensor, Tensor, Tensor, float | Tensor, float | Tensor], Tensor],
) -> Tensor:
    """The PGD loop on ``smoothed_nll`` shared by every norm: ``step(x, delta, grad, step_size,
    radius)`` is the norm's step and projection (``radius``: ``epsilon``, reshaped to
    ``[B, 1, ...]`` when it is one per example)."""
    x = x.detach()
    per_example = isinstance(epsilon, Tensor)
    if not per_example and epsilon == 0:
        return x.clone()
    m, batch = noise.shape[0], x.shape[0]
    radius = epsilon
    if per_example:
        radius = epsilon.to(x.device, x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    step_size = 2 * radius / steps
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = model(((x + delta).unsqueeze(0) + noise).flatten(0, 1)).view(m, batch, -1)
        (grad,) = torch.autograd.grad(smoothed_nll(logits, y).sum(), delta)
        with torch.no_grad():
            delta = step(x, delta, grad, step_size, radius)
    return (x + delta).detach()


def _l2_step(x: Tensor, delta: Tensor, grad: Tensor, step_size, radius) -> Tensor:
    """A step along the normalized gradient (a random direction where it is zero), then [0, 1]
    and the l2 ball."""
    norms = grad.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
    random = torch.randn_like(grad)
    grad = torch.where(norms > 0, grad, random)
    norms = grad.flatten(1).norm(dim=1).view_as(norms)
    delta = (x + delta + step_size * grad / norms).clamp_(0, 1) - x
    if isinstance(radius, Tensor):  # renorm's projection, with one radius per example
        length = delta.flatten(1).norm(dim=1).view_as(radius)
        return delta * torch.where(length > radius, radius / (length + 1e-7), 1.0)
    return delta.renorm(p=2, dim=0, maxnorm=radius)


def _linf_step(x: Tensor, delta: Tensor, grad: Tensor, step_size, radius) -> Tensor:
    """A signed-gradient step, then the box ``[x - radius, x + radius]`` and [0, 1]."""
    moved = x + delta + step_size * grad.sign()
    delta = torch.maximum(torch.minimum(moved - x, radius), -radius)
    return (x + delta).clamp_(0, 1) - x


def _l1_step(x: Tensor, delta: Tensor, grad: Tensor, step_size, radius) -> Tensor:
    """Foolbox's sparse l1 descent step, then the exact l1-ball projection and [0, 1]."""
    moved = x + delta + step_size * sparse_l1_direction(grad, x + delta)
    return project_l1(moved, x, radius).clamp_(0, 1) - x


def project_l1(x: Tensor, x0: Tensor, epsilon: float | Tensor) -> Tensor:
    """The Euclidean projection of ``x`` onto the l1 ball of radius ``epsilon`` (a number or one
    per example) around ``x0``, per example: Duchi et al. (2008)'s sort-based projection
    ``sign(d) max(|d| - theta, 0)``, ``theta`` from the largest ``rho`` with
    ``mu_rho > (sum_{j<=rho} mu_j - epsilon) / rho`` (``mu``: ``|d|`` sorted descending).

    Written here because Foolbox 3.3.4's ``SparseL1DescentAttack.project`` takes the first
    ``rho`` that fails that test instead of the last that passes, so its points can lie outside
    the ball (``[3, -1.5, 0.7, 0.2, 0.1]`` at radius 1 gives ``[1.25, 0, 0, 0, 0]``; the tests
    check ours against a bisection for ``theta``)."""
    delta = (x - x0).flatten(1)
    batch, dim = delta.shape
    eps = torch.as_tensor(epsilon, dtype=delta.dtype, device=delta.device).reshape(-1, 1)
    eps = eps.expand(batch, 1)
    size = delta.abs()
    mu = size.sort(dim=1, descending=True).values
    cumsum = mu.cumsum(dim=1)
    ranks = torch.arange(1, dim + 1, dtype=delta.dtype, device=delta.device)
    rho = (mu - (cumsum - eps) / ranks > 0).sum(dim=1, keepdim=True).clamp_(min=1)
    theta = ((cumsum.gather(1, rho - 1) - eps) / rho.to(delta.dtype)).clamp_(min=0)
    projected = delta.sign() * (size - theta).clamp_(min=0)
    inside = size.sum(dim=1, keepdim=True) <= eps
    return x0 + torch.where(inside, delta, projected).view_as(x)


def sparse_l1_direction(grad: Tensor, x: Tensor) -> Tensor:
    """Foolbox's ``SparseL1DescentAttack`` step direction (Tramer & Boneh 2019): the signs of
    the gradient's largest entries (its top 1%, leaving out pixels at a bound of [0, 1] that
    the gradient pushes outwards), scaled to l1 norm 1."""
    import eagerpy as ep
    from foolbox.attacks import SparseL1DescentAttack
    from foolbox.types import Bounds

    slide = SparseL1DescentAttack(quantile=SPARSE_QUANTILE)
    return slide.normalize(ep.astensor(grad), x=ep.astensor(x), bounds=Bounds(0.0, 1.0)).raw


def smoothed_pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    noise: Tensor,
    epsilon: float | Tensor,
    steps: int,
    norm: str = "l2",
) -> Tensor:
    """PGD on the smoothed soft classifier in ``norm``: ``smoothed_pgd_l2`` for l2; for linf,
    signed-gradient steps clipped to the box ``[x - epsilon, x + epsilon]`` and [0, 1]; for l1,
    Foolbox's sparse l1 descent step (SLIDE) then the exact projection onto the l1 ball
    (``project_l1``) and [0, 1]. Steps are ``2 epsilon / steps`` long in ``norm``, as for l2.

    Returns ``x_adv`` (detached) with ``||x_adv - x||_norm <= epsilon`` per example and values in
    [0, 1] (clipping to [0, 1] moves no coordinate away from ``x``, so it keeps every norm in
    the ball). Arguments as ``smoothed_pgd_l2``, except that a zero gradient is no step here (l2
    takes a random direction; all Monte Carlo draws stay in ``smoothcert.sampling``, this one is
    l2's only exception). An unknown ``norm`` is a one-line ConfigError.
    """
    if norm not in ATTACK_NORMS:
        raise ConfigError(f"attack norm={norm!r} is unknown: use one of {', '.join(ATTACK_NORMS)}")
    step = {"l2": _l2_step, "linf": _linf_step, "l1": _l1_step}[norm]
    return _smoothed_pgd(model, x, y, noise, epsilon, steps, step)
