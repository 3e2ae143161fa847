"""Seeded noise streams that do not depend on the batch size, for any noise distribution."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import Tensor

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


class StandardDraw(Protocol):
    """Draws i.i.d. samples of a noise at unit scale (the noise's ``draw_standard``).

    Called with ``out`` it fills ``out`` (whose size is ``size``) in place and returns it; otherwise
    it returns a new tensor of ``size`` on ``device`` with ``dtype``. It consumes the generator the
    same way in both cases, so the values do not depend on which form is used.
    """

    def __call__(
        self,
        size: tuple[int, ...],
        generator: torch.Generator | None,
        device: torch.device | str,
        dtype: torch.dtype,
        out: Tensor | None = None,
    ) -> Tensor: ...


class NoiseStream:
    """An endless stream of ``scale * Z`` samples of a fixed shape, Z i.i.d. from ``draw_standard``.

    ``take(m)`` returns the next ``m`` samples. Noise is generated in fixed-size chunks (a function
    of the sample shape only), so concatenating ``take`` calls of any sizes gives the same sequence,
    and an example's noise is the same whatever batch size certifies it.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        draw_standard: StandardDraw,
        scale: float,
        generator: torch.Generator,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.shape = tuple(shape)
        self.draw_standard = draw_standard
        self.scale = float(scale)
        self.generator = generator
        self.device = torch.device(device)
        self.dtype = dtype
        numel = int(np.prod(self.shape)) if self.shape else 1
        self.chunk = max(1, NOISE_CHUNK_ELEMENTS // numel)
        self._leftover: Tensor | None = None

    def _draw(self, out: Tensor | None = None) -> Tensor:
        size = (self.chunk, *self.shape)
        return self.draw_standard(size, self.generator, self.device, self.dtype, out=out)

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
        return out.mul_(self.scale)
