"""Transformations smoothed over their parameters (see :mod:`smoothcert.perturbation` for the
interface): brightness, brightness and contrast, gamma and integer translation compose exactly,
so their radii are certificates in parameter units; rotation does not (interpolation), so its
Cohen radius is a heuristic and DistSPT (:mod:`smoothcert.certifiers.distspt`) certifies it.
Point clouds (:mod:`smoothcert.transforms.rotation3d`): rotation about one axis composes exactly
(a certificate in radians); about three axes it does not (a heuristic)."""

from smoothcert.perturbation import ParameterPerturbation
from smoothcert.transforms.photometric import Brightness, BrightnessContrast, Gamma
from smoothcert.transforms.rotation import Rotation
from smoothcert.transforms.rotation3d import AxisAngleRotation3D, AxisRotation3D
from smoothcert.transforms.translation import Translation

__all__ = [
    "AxisAngleRotation3D",
    "AxisRotation3D",
    "Brightness",
    "BrightnessContrast",
    "Gamma",
    "ParameterPerturbation",
    "Rotation",
    "Translation",
]
