"""SmoothAdv (Salman et al. 2019): adversarial training of the smoothed soft classifier (the
attack, :func:`smoothed_pgd_l2`, lives in :mod:`smoothcert.attacks.smoothed_pgd`).

Follows the reference implementation (Hadi Salman's ``smoothing-adversarial``, ``PGD_L2`` with
``num_noise_vec`` noise vectors), with one deliberate difference: ``epsilon`` is an l2 radius in
[0, 1] pixel units, whereas the reference divides its ``--epsilon`` by 256 (its 64, 127, 255 and
512 are our 0.25, 0.5, 1.0 and 2.0).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from smoothcert.attacks.smoothed_pgd import smoothed_nll, smoothed_pgd_l2
from smoothcert.errors import check_count, require
from smoothcert.modes import eval_mode
from smoothcert.noise import Noise
from smoothcert.regimes.base import CLASS_LOGITS, TrainingObjective

# An l2 radius this large in [0, 1] pixel units is almost surely a value in the reference code's
# 1/256 units (e.g. 64 or 127) that was not divided.
MAX_EPSILON = 8.0

__all__ = ["MAX_EPSILON", "SmoothAdv", "smoothed_nll", "smoothed_pgd_l2"]  # the attack re-exported


class SmoothAdv(TrainingObjective):
    """Salman et al. (2019): train on noisy copies of ``x' = argmax_{||x'-x|| <= eps} smoothed CE``.

    Each step draws ``m`` noise vectors per example, runs :func:`smoothed_pgd_l2` with them (the
    model in **eval mode**, as the reference does, so attack forward passes neither use nor update
    BatchNorm batch statistics; the previous mode is restored), then returns the cross-entropy of
    the model (in its training mode) on ``x' + noise_i``: all m copies with ``multi_noise=True``,
    the first copy only otherwise. The same noise vectors are used by the attack and the training
    loss, as in the reference. Costs at most ``m * (steps + 1)`` Gaussian-augmentation steps (attack
    passes compute no weight gradients: about 14x for m 2, 10 steps, benchmarks/regime_cost.py).

    Epsilon warm-up (reference ``--warmup``): at epoch ``e`` the radius is
    ``epsilon * min(1, (e + 1) / warmup_epochs)``; ``warmup_epochs=0`` means no warm-up.

    Args:
        noise: the training noise (its sigma is the smoothing sigma).
        epsilon: l2 radius of the attack in [0, 1] pixel units (NOT the reference's 1/256 units).
        steps: PGD steps (>= 1).
        m: noise vectors per example (>= 1).
        warmup_epochs: epochs over which epsilon grows linearly (>= 0).
        multi_noise: train on all m noisy copies of x' (True) or on one (False).

    Raises:
        ConfigError: on epsilon < 0 (or > 8, a value left in 1/256 units), steps < 1, m < 1 or
            warmup_epochs < 0, when constructed.
    """

    option, output_kinds = "smoothadv", (CLASS_LOGITS,)

    def __init__(
        self,
        noise: Noise,
        epsilon: float = 0.25,
        steps: int = 10,
        m: int = 2,
        warmup_epochs: int = 10,
        multi_noise: bool = True,
    ) -> None:
        super().__init__()
        self.noise = noise
        epsilon = float(epsilon)
        require(
            math.isfinite(epsilon) and epsilon >= 0,
            f"regime.epsilon={epsilon} must be >= 0: an l2 radius in [0, 1] pixel units, e.g. 0.25",
        )
        require(
            epsilon <= MAX_EPSILON,
            f"regime.epsilon={epsilon} is in [0, 1] pixel units, not the reference code's 1/256 "
            f"units: divide it by 256 (e.g. 64 -> 0.25)",
        )
        self.epsilon = epsilon
        self.steps = check_count(steps, "regime.steps")
        self.m = check_count(m, "regime.m")
        self.warmup_epochs = check_count(warmup_epochs, "regime.warmup_epochs", minimum=0)
        self.multi_noise = bool(multi_noise)
        self.current_epsilon = 0.0
        self.on_epoch_start(0)

    def epsilon_at(self, epoch: int) -> float:
        """The attack radius used during ``epoch`` (0-based): the warm-up schedule."""
        if self.warmup_epochs == 0:
            return self.epsilon
        return self.epsilon * min(1.0, (epoch + 1) / self.warmup_epochs)

    def on_epoch_start(self, epoch: int) -> None:
        """Sets ``current_epsilon`` to the warm-up schedule's radius for ``epoch``."""
        self.current_epsilon = self.epsilon_at(epoch)

    def draw_noise(self, x: Tensor) -> Tensor:
        """``m`` independent draws of ``noise`` per example (N(0, sigma^2 I) for Gaussian noise):
        ``[m, *x.shape]``. With several noise levels each of the m copies gets its own level."""
        return self.noise(x.new_zeros((self.m, *x.shape)))

    def attack(self, model: nn.Module, x: Tensor, y: Tensor, noise: Tensor) -> Tensor:
        """:func:`smoothed_pgd_l2` at ``current_epsilon`` with ``model`` in eval mode."""
        with eval_mode(model):
            return smoothed_pgd_l2(model, x, y, noise, self.current_epsilon, self.steps)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        noise = self.draw_noise(x)
        x_adv = self.attack(model, x, y, noise)
        if not self.multi_noise:
            return F.cross_entropy(model(x_adv + noise[0]), y)
        logits = model((x_adv.unsqueeze(0) + noise).flatten(0, 1))
        return F.cross_entropy(logits, y.repeat(self.m))

    def extra_repr(self) -> str:
        return (
            f"epsilon={self.epsilon}, steps={self.steps}, m={self.m}, "
            f"warmup_epochs={self.warmup_epochs}, multi_noise={self.multi_noise}"
        )
