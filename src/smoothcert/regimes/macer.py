"""MACER (Zhai et al., ICLR 2020): maximize the certified radius of the soft smoothed classifier.

Follows the reference implementation (RuntianZ/macer, ``macer.py``) and the paper's Algorithm 1.
Per batch of B examples with k noisy copies each (logits ``u_ij``):

- classification: ``L_C = sum_i -log(mean_j softmax(u_ij)_{y_i} + 1e-10)`` (the soft smoothed
  classifier, no temperature);
- robustness: ``p_hat_i = mean_j softmax(beta * u_ij)`` with top-2 values ``p1 >= p2``; only for
  examples whose top class under ``p_hat`` is ``y_i``, the hinge ``max(0, gamma * sigma / 2 - R)``
  on the noise's differentiable radius ``R`` (:meth:`~smoothcert.noise.Noise.radius_torch`).
  For Gaussian noise ``R`` is the two-class radius ``sigma / 2 * (Phi^-1(p1) - Phi^-1(p2))``, so
  the hinge is the paper's ``sigma / 2 * max(0, gamma - xi)``, ``xi = Phi^-1(p1) - Phi^-1(p2)``.
  Noises without a two-class radius (Laplace, uniform) use their one-class radius of ``p1`` in
  their natural norm (l1), with the same cap ``gamma * sigma / 2``; that extension is ours, not
  the paper's.
- total: ``(L_C + lambda * L_R) / B``.

As in the reference code, examples whose radius is not finite (``p1`` rounds to 1 or ``p2`` to 0,
so ``Phi^-1`` is infinite) are dropped from the robustness term without a word: they are the most
robust examples, whose hinge would be inactive anyway. The radius is recomputed on the kept
examples only, so a dropped one contributes no NaN gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothcert.errors import ConfigError, check_count, require
from smoothcert.noise import Noise
from smoothcert.regimes.augmentation import check_weight
from smoothcert.regimes.base import CLASS_LOGITS, TrainingObjective

__all__ = ["MACER", "macer_lambda"]


def macer_lambda(sigma: float) -> float:
    """The reference runs' weight of the robustness term on CIFAR-10: 12 at sigma <= 0.25, 4 at
    sigma 0.5 and 1.0 (the smoothing-consistency re-runs use the same, e.g. ``lbd_4.0`` at 0.5)."""
    return 12.0 if sigma <= 0.25 else 4.0


class MACER(TrainingObjective):
    """Zhai et al. (2020): cross-entropy of the soft smoothed classifier plus a hinge on its
    certified radius (see the module docstring for the loss).

    Each step draws ``k`` noises per example (from ``noise``, so Laplace and uniform noise work
    through their own radius) and runs the k x B noisy batch through the model in one forward pass
    (as the reference does, so BatchNorm sees all copies). Costs about k Gaussian steps.

    Args:
        noise: the training noise; it must have a differentiable radius (gaussian, laplace,
            uniform) and a single level sigma (the radius is stated at one sigma).
        k: noisy copies per example (the reference's ``gauss_num``, 16).
        beta: inverse temperature of the soft smoothed classifier in the robustness term (16).
        gamma: hinge cap, in the paper's units of ``xi`` (8): examples with radius above
            ``gamma * sigma / 2`` get no robustness loss.
        lbd: weight lambda of the robustness term; None (the default) is the reference runs'
            value for the noise's sigma: 12 at sigma <= 0.25, 4 above (:func:`macer_lambda`).
        deferred_epochs: lambda is 0 during the first ``deferred_epochs`` epochs (the
            smoothing-consistency re-runs' ``--deferred``, there one learning-rate step); 0 (the
            default, as the paper's code) trains with lambda from the start.

    Raises:
        ConfigError: (one line, when constructed) for a noise without a differentiable radius or
            with several levels, k < 1, a negative beta, gamma or lambda, or deferred_epochs < 0.
    """

    option, output_kinds = "macer", (CLASS_LOGITS,)

    def __init__(
        self,
        noise: Noise,
        k: int = 16,
        beta: float = 16.0,
        gamma: float = 8.0,
        lbd: float | None = None,
        deferred_epochs: int = 0,
    ) -> None:
        super().__init__()
        self.noise = noise
        try:  # the noise must state one radius at one sigma
            sigma = noise.certified_sigma
            noise.radius_torch(torch.tensor([0.75]))
        except ConfigError as error:
            raise ConfigError(f"regime=macer trains on the noise's radius: {error}") from None
        self.k = check_count(k, "regime.k")
        self.beta = check_weight(beta, "regime.beta")
        require(self.beta > 0, f"regime.beta={beta} must be > 0 (the paper uses 16)")
        self.gamma = check_weight(gamma, "regime.gamma")
        self.lbd = macer_lambda(sigma) if lbd is None else check_weight(lbd, "regime.lbd")
        self.deferred_epochs = check_count(deferred_epochs, "regime.deferred_epochs", minimum=0)
        self.cap = self.gamma * sigma / 2  # the hinge's cap as a radius
        self.current_lbd = 0.0
        self.on_epoch_start(0)

    def on_epoch_start(self, epoch: int) -> None:
        """Sets ``current_lbd``: 0 during the deferred epochs, ``lbd`` after."""
        self.current_lbd = 0.0 if epoch < self.deferred_epochs else self.lbd

    def radius(self, p1: Tensor, p2: Tensor) -> Tensor:
        """The noise's differentiable radius of the soft smoothed classifier (two-class where the
        noise has one)."""
        return self.noise.radius_torch(p1, p_upper=p2 if self.noise.two_class else None)

    def robustness_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """``L_R`` (a sum over the batch) for the logits ``[k, B, K]`` of the noisy copies."""
        soft = (self.beta * logits).softmax(dim=-1).mean(dim=0)  # [B, K]
        top = soft.topk(2, dim=-1)
        correct = top.indices[:, 0] == y
        p1, p2 = top.values[correct, 0], top.values[correct, 1]
        with torch.no_grad():
            radius = self.radius(p1, p2)
            keep = torch.isfinite(radius) & (radius <= self.cap)
        return (self.cap - self.radius(p1[keep], p2[keep])).sum()

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        batch = x.shape[0]
        copies = x.repeat(self.k, *([1] * (x.dim() - 1)))  # [k * B, ...], copy-major
        logits = model(self.noise(copies)).view(self.k, batch, -1)
        mean_probs = logits.softmax(dim=-1).mean(dim=0)
        loss = F.nll_loss((mean_probs + 1e-10).log(), y, reduction="sum")
        if self.current_lbd > 0:
            loss = loss + self.current_lbd * self.robustness_loss(logits, y)
        return loss / batch

    def extra_repr(self) -> str:
        return (
            f"k={self.k}, beta={self.beta}, gamma={self.gamma}, lbd={self.lbd}, "
            f"deferred_epochs={self.deferred_epochs}"
        )
