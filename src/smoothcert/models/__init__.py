"""Base models: classifiers (and their input normalization), segmenters, structured-output models
(autoencoders, box regressors) and denoisers. Every model takes pixels in [0, 1] and normalizes
in its first layer. The classifiers are importable from here (``smoothcert.models.DigitsCNN``)."""

from smoothcert.models.cifar_resnet import CifarResNet
from smoothcert.models.classifiers import (
    DigitsCNN,
    Normalize,
    NormalizedClassifier,
    adapt_cifar_stem,
)

__all__ = ["CifarResNet", "DigitsCNN", "Normalize", "NormalizedClassifier", "adapt_cifar_stem"]
