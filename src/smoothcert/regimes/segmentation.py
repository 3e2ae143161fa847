"""Per-pixel regimes for segmenters (``label_map`` outputs): consistency regularization with every
pixel that is not ignored as one example. (Gaussian augmentation needs no per-pixel version:
cross-entropy already averages over the pixels.)"""

from __future__ import annotations

from torch import Tensor, nn

from smoothcert.models.segmenters import IGNORE
from smoothcert.noise import Noise
from smoothcert.regimes.augmentation import ConsistencyRegularization, consistency_loss
from smoothcert.regimes.base import LABEL_MAP

__all__ = ["SegmentationConsistency"]


class SegmentationConsistency(ConsistencyRegularization):
    """Jeong & Shin's consistency regularization per pixel (App. B.3): ``consistency_loss`` with
    every pixel that is not ignored (target ``IGNORE``) as one example, so each term is averaged
    over those pixels (and the copies). Defaults are the paper's m=2, lambda=1, eta=0.5."""

    option, output_kinds = "seg_consistency", (LABEL_MAP,)

    def __init__(self, noise: Noise, m: int = 2, lbd: float = 1.0, eta: float = 0.5):
        super().__init__(noise, m, lbd, eta)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        logits = model(self.noise(x.repeat(self.m, 1, 1, 1)))  # [m * B, K, H, W], copy-major
        num_classes = logits.shape[1]
        per_pixel = logits.flatten(2).transpose(1, 2).reshape(self.m, -1, num_classes)
        target = y.reshape(-1)
        valid = target != IGNORE
        if not bool(valid.any()):
            return logits.sum() * 0.0
        return consistency_loss(per_pixel[:, valid], target[valid], self.lbd, self.eta)
