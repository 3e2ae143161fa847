"""Transformations smoothed over their parameters (see :mod:`smoothcert.perturbation` for the
interface): brightness, brightness and contrast, gamma and integer translation compose exactly,
so their radii are certificates in parameter units; rotation does not (interpolation), so its
Cohen radius is a heuristic and DistSPT (:mod:`smoothcert.certifiers.distspt`) certifies it."""

from smoothcert.perturbation import ParameterPerturbation
from smoothcert.transforms.photometric import Brightness, BrightnessContrast, Gamma
from smoothcert.transforms.rotation import Rotation
from smoothcert.transforms.translation import Translation

__all__ = [
    "Brightness",
    "BrightnessContrast",
    "Gamma",
    "ParameterPerturbation",
    "Rotation",
    "Translation",
]
