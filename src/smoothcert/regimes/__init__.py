"""Training regimes: how a base model is trained to tolerate its noise (any ``Noise``).

``GaussianAugmentation`` (Cohen et al.), ``ConsistencyRegularization`` (Jeong & Shin), its
per-pixel ``SegmentationConsistency``, ``SmoothAdv`` (Salman et al.), ``MACER`` (Zhai et al.) and
``StabilityTraining`` (Li et al.), each a
``TrainingObjective`` that draws from the noise it is given and states its contract (noise,
augmentation, the model output kinds it trains: ``regimes/base.py``). ``SmoothMix``: Jeong et al.
2021.
"""

from smoothcert.regimes.augmentation import (
    ConsistencyRegularization,
    GaussianAugmentation,
    TrainingObjective,
    check_weight,
    consistency_loss,
)
from smoothcert.regimes.base import RegimeContract, regimes_for
from smoothcert.regimes.macer import MACER
from smoothcert.regimes.segmentation import SegmentationConsistency
from smoothcert.regimes.smoothadv import SmoothAdv, smoothed_nll, smoothed_pgd_l2
from smoothcert.regimes.smoothmix import SmoothMix, smoothmix_loss, smoothmix_pgd
from smoothcert.regimes.stability import StabilityTraining, stability_loss

__all__ = [
    "ConsistencyRegularization",
    "GaussianAugmentation",
    "MACER",
    "RegimeContract",
    "SegmentationConsistency",
    "SmoothAdv",
    "SmoothMix",
    "StabilityTraining",
    "TrainingObjective",
    "check_weight",
    "consistency_loss",
    "regimes_for",
    "smoothed_nll",
    "smoothed_pgd_l2",
    "smoothmix_loss",
    "smoothmix_pgd",
    "stability_loss",
]
