"""Transformations smoothed over their parameters (see :mod:`smoothcert.perturbation` for the
interface): brightness, brightness and contrast, gamma and integer translation compose exactly,
so their radii are certificates in parameter units."""

from smoothcert.perturbation import ParameterPerturbation
from smoothcert.transforms.photometric import Brightness, BrightnessContrast, Gamma
from smoothcert.transforms.translation import Translation

__all__ = ["Brightness", "BrightnessContrast", "Gamma", "ParameterPerturbation", "Translation"]
