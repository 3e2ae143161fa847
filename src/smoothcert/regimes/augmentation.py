"""Training objectives ("regimes"): pluggable losses for the classification and segmentation
modules, each stating its contract (noise, augmentation, output kinds: ``regimes/base.py``).

Here: Gaussian augmentation (Cohen et al. 2019) and consistency regularization (Jeong & Shin 2020);
SmoothAdv (Salman et al. 2019) is in :mod:`smoothcert.regimes.smoothadv`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothcert.errors import check_count, require
from smoothcert.noise import Noise
from smoothcert.perturbation import ADDITIVE, Perturbation, is_parametric
from smoothcert.regimes.base import CLASS_LOGITS, LABEL_MAP, TrainingObjective

__all__ = [
    "ConsistencyRegularization",
    "GaussianAugmentation",
    "TrainingObjective",
    "check_weight",
    "consistency_loss",
]


class GaussianAugmentation(TrainingObjective):
    """Cohen et al.'s training: cross-entropy of the base model on ``noise(x)`` (x + N(0, sigma^2 I)
    for Gaussian noise; any :class:`~smoothcert.noise.Noise` works).

    With a parameter ``perturbation`` (brightness, gamma, translation, ...; its noise must be
    ``noise``) it trains on the transformation the certifier smooths over instead: each example
    transformed by its own draw, ``psi_beta(x)``. Per pixel too: cross-entropy averages over the
    pixels of a segmenter's logits ``[B, K, H, W]``."""

    option, output_kinds = "gaussian", (CLASS_LOGITS, LABEL_MAP)

    def __init__(self, noise: Noise, perturbation: Perturbation = ADDITIVE) -> None:
        super().__init__()
        self.noise = noise
        self.perturbation = perturbation
        if is_parametric(perturbation):
            require(
                type(perturbation.noise) is type(noise) and perturbation.sigma == noise.sigma,
                f"regime.perturbation={perturbation.name} draws from {perturbation.noise!r}, the "
                f"regime's noise is {noise!r}: give the perturbation the noise node (${{noise}})",
            )

    def augment(self, x: Tensor) -> Tensor:
        """One random draw of the training distribution per example of the batch ``x``."""
        return self.perturbation(x) if is_parametric(self.perturbation) else self.noise(x)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(model(self.augment(x)), y)


def consistency_loss(logits: Tensor, y: Tensor, lbd: float, eta: float) -> Tensor:
    """Jeong & Shin's loss on the logits ``[m, B, K]`` of m noisy copies of a batch.

    Returns ``mean CE + lbd * mean_i KL(F_hat || F_i) + eta * H(F_hat)``, every term averaged over
    the batch (and the CE and KL terms over the copies), where ``F_i = softmax(logits[i])`` and
    ``F_hat`` is their mean. ``F_hat`` is not detached (as in the reference code), and its log is
    computed with a log-sum-exp, so the loss stays finite even when a probability underflows.
    """
    m, batch, num_classes = logits.shape
    log_probs = logits.log_softmax(dim=-1)
    cross_entropy = F.nll_loss(log_probs.reshape(m * batch, num_classes), y.repeat(m))
    log_mean = torch.logsumexp(log_probs, dim=0) - math.log(m)  # log F_hat, [B, K]
    mean_probs = log_mean.exp()
    kl = (mean_probs * (log_mean - log_probs)).sum(dim=-1).mean()
    entropy = -(mean_probs * log_mean).sum(dim=-1).mean()
    return cross_entropy + lbd * kl + eta * entropy


class ConsistencyRegularization(TrainingObjective):
    """Jeong & Shin (2020): Gaussian augmentation with m copies plus a consistency penalty.

    Each step draws m independent noises per example, runs the m x B noisy batch through the model
    in one forward pass (as the reference does, so BatchNorm sees all copies), and returns
    :func:`consistency_loss`. Costs about m times a Gaussian-augmentation step.

    Args:
        noise: the training noise (its sigma is the smoothing sigma).
        m: noisy copies per example (>= 1; m = 1 makes the KL term zero).
        lbd: weight lambda of the KL term (>= 0); the paper uses 5-20 on CIFAR-10.
        eta: weight of the entropy term (>= 0).

    Raises:
        ConfigError: on m < 1 or a negative weight, when constructed.
    """

    option, output_kinds = "consistency", (CLASS_LOGITS,)  # per pixel: regimes.segmentation

    def __init__(self, noise: Noise, m: int = 2, lbd: float = 10.0, eta: float = 0.5):
        super().__init__()
        self.noise = noise
        self.m = check_count(m, "regime.m")
        self.lbd = check_weight(lbd, "regime.lbd")
        self.eta = check_weight(eta, "regime.eta")

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        copies = x.repeat(self.m, *([1] * (x.dim() - 1)))  # [m * B, ...], copy-major
        logits = model(self.noise(copies))
        return consistency_loss(logits.view(self.m, x.shape[0], -1), y, self.lbd, self.eta)

    def extra_repr(self) -> str:
        return f"m={self.m}, lbd={self.lbd}, eta={self.eta}"


def check_weight(value: float, name: str) -> float:
    """Returns ``value`` as a float; raises ConfigError unless it is finite and >= 0."""
    value = float(value)
    require(math.isfinite(value) and value >= 0, f"{name}={value} must be a number >= 0")
    return value
