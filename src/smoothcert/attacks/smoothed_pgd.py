"""l2 PGD on the smoothed soft classifier (Salman et al. 2019): the attack SmoothAdv trains
against and the empirical-robustness check attacks certified models with.

``epsilon`` is an l2 radius in [0, 1] pixel units (the reference code's ``--epsilon`` is in
1/256 units: its 64, 127, 255 and 512 are our 0.25, 0.5, 1.0 and 2.0). It may be one radius for
the whole batch or one per example.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["smoothed_nll", "smoothed_pgd_l2"]


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
    x = x.detach()
    per_example = isinstance(epsilon, Tensor)
    if not per_example and epsilon == 0:
        return x.clone()
    m, batch = noise.shape[0], x.shape[0]
    if per_example:
        epsilon = epsilon.to(x.device, x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    step_size = 2 * epsilon / steps
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = model(((x + delta).unsqueeze(0) + noise).flatten(0, 1)).view(m, batch, -1)
        (grad,) = torch.autograd.grad(smoothed_nll(logits, y).sum(), delta)
        with torch.no_grad():
            norms = grad.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
            random = torch.randn_like(grad)
            grad = torch.where(norms > 0, grad, random)
            norms = grad.flatten(1).norm(dim=1).view_as(norms)
            delta = (x + delta + step_size * grad / norms).clamp_(0, 1) - x
            if per_example:  # renorm's projection, with one radius per example
                length = delta.flatten(1).norm(dim=1).view_as(epsilon)
                delta = delta * torch.where(length > epsilon, epsilon / (length + 1e-7), 1.0)
            else:
                delta = delta.renorm(p=2, dim=0, maxnorm=epsilon)
    return (x + delta).detach()
