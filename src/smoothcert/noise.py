"""Gaussian noise in [0, 1] pixel space, with streams that do not depend on the batch size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError, check_sigma

# A stream draws its noise in chunks of a fixed number of elements (rounded to whole samples), so
# the k-th noise sample of an example is the same whatever batch size consumes the stream.
NOISE_CHUNK_ELEMENTS = 1 << 18


def example_seed(seed: int, index: int) -> int:
    """A 63-bit seed mixed from ``(seed, index)``: distinct examples get unrelated noise."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def example_generator(seed: int, index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch Generator on ``device`` seeded from ``(seed, index)``.

    Certification draws each example's noise from its own generator, so results depend on neither
    the batch size nor how examples are sharded across devices.
    """
    generator = torch.Generator(device=device)
    generator.manual_seed(example_seed(seed, index))
    return generator


class GaussianNoise(nn.Module):
    """Adds N(0, sigma^2 I) to inputs in [0, 1] pixel space (no clipping, as in Cohen et al.).

    ``sigma`` may be a list of noise levels (training for certification at several levels, as
    ``certify=center`` does with a list): each example of a batch then gets a level drawn
    uniformly from the list. ``self.sigma`` is the number, or the sorted list of levels.
    """

    def __init__(self, sigma: float | Sequence[float]) -> None:
        super().__init__()
        levels = noise_levels(sigma, "sigma")
        self.sigma: float | list[float] = levels[0] if len(levels) == 1 else levels
        self.levels = levels

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.levels == [0.0]:
            return x
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if len(self.levels) == 1:
            return x + self.levels[0] * noise
        pick = torch.randint(len(self.levels), (x.shape[0],), generator=generator, device=x.device)
        sigmas = torch.tensor(self.levels, device=x.device, dtype=x.dtype)[pick]
        return x + sigmas.view(-1, *([1] * (x.dim() - 1))) * noise

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


def noise_levels(sigma: float | Sequence[float], name: str = "sigma") -> list[float]:
    """Sorted distinct noise levels from a number or a list; one-line ConfigError if empty or
    negative."""
    values = list(sigma) if isinstance(sigma, Sequence) and not isinstance(sigma, str) else [sigma]
    if not values:
        raise ConfigError(f"{name} is an empty list: give a noise level or a list of them")
    return sorted({check_sigma(v, name, allow_zero=True) for v in values})


class GaussianNoiseStream:
    """An endless stream of N(0, sigma^2 I) samples of a fixed shape, drawn from one generator.

    ``take(m)`` returns the next ``m`` samples. Noise is generated in fixed-size chunks (a function
    of the sample shape only), so concatenating ``take`` calls of any sizes gives the same sequence.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        sigma: float,
        generator: torch.Generator,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.shape = tuple(shape)
        self.sigma = float(sigma)
        self.generator = generator
        self.device = torch.device(device)
        self.dtype = dtype
        numel = int(np.prod(self.shape)) if self.shape else 1
        self.chunk = max(1, NOISE_CHUNK_ELEMENTS // numel)
        self._leftover: Tensor | None = None

    def _draw(self, out: Tensor | None = None) -> Tensor:
        size = (self.chunk, *self.shape)
        if out is not None:
            return torch.randn(size, generator=self.generator, out=out)
        return torch.randn(size, generator=self.generator, device=self.device, dtype=self.dtype)

    def take(self, m: int) -> Tensor:
        """Returns a fresh tensor ``[m, *shape]`` holding the next ``m`` noise samples."""
        out = torch.empty((m, *self.shape), device=self.device, dtype=self.dtype)
        filled = 0
        if self._leftover is not None:
            k = min(m, self._leftover.shape[0])
            out[:k] = self._leftover[:k]
            self._leftover = self._leftover[k:] if k < self._leftover.shape[0] else None
            filled = k
        while m - filled >= self.chunk:
            self._draw(out[filled : filled + self.chunk])
            filled += self.chunk
        if filled < m:
            fresh = self._draw()
            k = m - filled
            out[filled:] = fresh[:k]
            self._leftover = fresh[k:]
        return out.mul_(self.sigma)
