"""smoothcert: train noise-tolerant base models and certify them with randomized smoothing.

The core (this package) is pure PyTorch: no Lightning, Hydra or wandb imports.
"""

from smoothcert.center import CenterSmooth  # certified structured outputs
from smoothcert.certification import certify_examples, select_indices
from smoothcert.curves import (
    abstain_rate,
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_curve,
    summarize,
)
from smoothcert.distances import build_distance
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise, GaussianNoiseStream, example_generator
from smoothcert.records import CohenRecord, read_records
from smoothcert.segcertify import indivclass, jointclass, segcertify  # certified segmentation
from smoothcert.smooth import ABSTAIN, Smooth
from smoothcert.statistics import binom_test_two_sided, clopper_pearson_lower

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
    "select_indices",
    "summarize",
]
