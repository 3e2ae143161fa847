"""smoothcert: train noise-tolerant base models and certify them with randomized smoothing.

The core (this package) is pure PyTorch: no Lightning, Hydra or wandb imports.
"""

from smoothcert.certifiers.center import CenterSmooth  # certified structured outputs
from smoothcert.certifiers.classification import ABSTAIN, Smooth
from smoothcert.certifiers.examples import certify_examples, select_indices
from smoothcert.certifiers.segmentation import (  # certified segmentation
    indivclass,
    jointclass,
    segcertify,
)
from smoothcert.certifiers.topk import topk_radius  # top-k certificates
from smoothcert.distances import build_distance
from smoothcert.errors import ConfigError
from smoothcert.metrics.certified import (
    abstain_rate,
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_curve,
    summarize,
)
from smoothcert.models.loading import load  # a classifier from the weights you have
from smoothcert.noise import GaussianNoise, GaussianNoiseStream, example_generator
from smoothcert.records import CohenRecord, read_records
from smoothcert.stats.binomial import binom_test_two_sided, clopper_pearson_lower

__version__ = "0.1.0"

__all__ = [
    "ABSTAIN",
    "CenterSmooth",
    "CohenRecord",
    "ConfigError",
    "GaussianNoise",
    "GaussianNoiseStream",
    "Smooth",
    "abstain_rate",
    "average_certified_radius",
    "binom_test_two_sided",
    "build_distance",
    "certified_accuracy",
    "certified_accuracy_curve",
    "certify_examples",
    "clopper_pearson_lower",
    "example_generator",
    "read_records",
    "segcertify",
    "indivclass",
    "jointclass",
    "load",
    "select_indices",
    "summarize",
    "topk_radius",
]
