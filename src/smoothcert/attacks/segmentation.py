"""l2 PGD on a base segmentation model (Fischer et al. 2021, App. C.1): untargeted PGD (Madry et
al.) whose loss is the mean of the per-pixel cross-entropies (Xie et al.), ignored pixels left
out. Not a certificate: an attack that fails proves nothing.

Hand-written rather than Foolbox's ``L2PGD``: Foolbox's attacks take one label per input and a
classification criterion, so a per-pixel loss with an ignore label would mean subclassing its
internals; the loop below is a dozen lines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothcert.modes import eval_mode

__all__ = ["PAPER_STEPS", "pixel_loss", "segmentation_pgd_l2"]

PAPER_STEPS = 100  # App. C: k = 100 steps of size s = 10 R / k


def pixel_loss(logits: Tensor, mask: Tensor, ignore_index: int) -> Tensor:
    """Per image ``[B]``: the mean cross-entropy over the pixels whose label is not
    ``ignore_index`` (eq. 3 of App. C.1; 0 for an image with no such pixel)."""
    per_pixel = F.cross_entropy(logits, mask, ignore_index=ignore_index, reduction="none")
    valid = (mask != ignore_index).flatten(1).sum(dim=1).clamp_min(1)
    return per_pixel.flatten(1).sum(dim=1) / valid


def segmentation_pgd_l2(
    model: nn.Module,
    x: Tensor,
    mask: Tensor,
    epsilon: Tensor,
    steps: int = PAPER_STEPS,
    ignore_index: int = 255,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Untargeted l2 PGD on ``model`` (``[B, C, H, W]`` in [0, 1] -> logits ``[B, K, H, W]``),
    run in eval mode, maximizing ``pixel_loss`` of each image against its ground truth ``mask``.

    As App. C: a random start inside the ball, then ``steps`` steps of length
    ``10 * epsilon / steps`` (the paper's s = 10 R / k) along the gradient, each followed by the
    projection onto the ball of radius ``epsilon`` around ``x`` and the clamp to [0, 1]. Two
    choices the paper leaves open: the gradient is normalized per image (Madry et al.'s l2 PGD;
    the raw gradient of a mean over pixels is tiny) and the projection is onto the ball, not
    the sphere (a point inside the ball is left where it is).

    Args:
        model: the base segmentation model; its parameters get no gradient.
        x: clean images ``[B, C, H, W]`` in [0, 1].
        mask: ground-truth labels ``[B, H, W]`` (``ignore_index``: pixels without a label).
        epsilon: l2 radius per image ``[B]`` (>= 0; 0 returns the clean image).
        steps: PGD steps (>= 1).
        ignore_index: the label of pixels that do not enter the loss.
        generator: the random start's generator.

    Returns:
        ``x_adv`` (detached) with ``||x_adv - x||_2 <= epsilon`` per image and values in [0, 1]:
        clamping ``x + delta`` to [0, 1] only shrinks each coordinate of a ``delta`` already in
        the ball.
    """
    with torch.inference_mode(False):  # normal tensors, even from inside inference mode
        x, mask = x.detach().clone(), mask.clone()
        return _pgd(model, x, mask, epsilon, steps, ignore_index, generator)


def _pgd(model, x, mask, epsilon, steps, ignore_index, generator) -> Tensor:
    """``segmentation_pgd_l2`` on normal (not inference) tensors."""
    shape = (-1, *([1] * (x.dim() - 1)))
    eps = torch.as_tensor(epsilon, dtype=x.dtype, device=x.device).reshape(shape)

    def project(delta: Tensor) -> Tensor:
        length = delta.flatten(1).norm(dim=1).reshape(shape)
        delta = delta * torch.where(length > eps, eps / length.clamp_min(1e-12), 1.0)
        return (x + delta).clamp(0, 1) - x

    start = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    fraction = torch.rand(eps.shape, generator=generator, device=x.device, dtype=x.dtype)
    start = start / start.flatten(1).norm(dim=1).reshape(shape).clamp_min(1e-12)
    delta = project(start * eps * fraction)
    with eval_mode(model), torch.enable_grad():
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = pixel_loss(model(x + delta), mask, ignore_index).sum()
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                norm = grad.flatten(1).norm(dim=1).reshape(shape).clamp_min(1e-12)
                delta = project(delta + 10 * eps / steps * grad / norm)
    return (x + delta).detach()
