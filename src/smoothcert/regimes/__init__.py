"""Training regimes: how a base model is trained to tolerate its noise (any ``Noise``).

``GaussianAugmentation`` (Cohen et al.), ``ConsistencyRegularization`` (Jeong & Shin) and
``SmoothAdv`` (Salman et al.), each a ``TrainingObjective`` that draws from the noise it is given.
"""

from smoothcert.regimes.augmentation import (
    ConsistencyRegularization,
    GaussianAugmentation,
    TrainingObjective,
    check_weight,
    consistency_loss,
)
from smoothcert.regimes.smoothadv import SmoothAdv, smoothed_nll, smoothed_pgd_l2

__all__ = [
    "ConsistencyRegularization",
    "GaussianAugmentation",
    "SmoothAdv",
    "TrainingObjective",
    "check_weight",
    "consistency_loss",
    "smoothed_nll",
    "smoothed_pgd_l2",
]
