"""Smoothing noises: one object per distribution, shared by training and certification.

Each :class:`Noise` is parametrised by ``sigma``, the per-coordinate standard deviation, draws
seeded batch-size-independent streams, augments training batches and owns its certificates
(``radius`` per supported norm). ``Gaussian``, ``Laplace`` and ``Uniform`` are short aliases of
``GaussianNoise``, ``LaplaceNoise`` and ``UniformNoise``. ``RayleighNoise`` draws multiplicative
parameters (gamma exponents) for ``perturbation=gamma``.
"""

from smoothcert.noise.base import (
    NORMS,
    Noise,
    build_noise,
    canonical_norm,
    noise_levels,
    supported_pairs,
)
from smoothcert.noise.certificate import Certificate, as_certificate, resolve_noise
from smoothcert.noise.gaussian import GaussianNoise, GaussianNoiseStream
from smoothcert.noise.laplace import LaplaceNoise
from smoothcert.noise.rayleigh import RayleighNoise
from smoothcert.noise.stream import (
    NOISE_CHUNK_ELEMENTS,
    NoiseStream,
    example_generator,
    example_seed,
)
from smoothcert.noise.uniform import UniformNoise

Gaussian = GaussianNoise
Laplace = LaplaceNoise
Uniform = UniformNoise

__all__ = [
    "Certificate",
    "NOISE_CHUNK_ELEMENTS",
    "NORMS",
    "Gaussian",
    "GaussianNoise",
    "GaussianNoiseStream",
    "Laplace",
    "LaplaceNoise",
    "Noise",
    "NoiseStream",
    "RayleighNoise",
    "Uniform",
    "UniformNoise",
    "as_certificate",
    "build_noise",
    "canonical_norm",
    "example_generator",
    "example_seed",
    "noise_levels",
    "resolve_noise",
    "supported_pairs",
]
