"""How the noise meets the input. Every certifier today smooths over ``x + delta``
(``Additive``); parameter-space smoothing (brightness, gamma, translation, rotation) plugs in
here: it turns the drawn parameters into perturbed inputs and states its certificate in the
parameters' units."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Perturbation(Protocol):
    """Turns ``m`` draws of the smoothing distribution into ``m`` perturbed copies of ``x``."""

    units: str  # what a certified radius measures

    def apply(self, x: Tensor, draws: Tensor) -> Tensor:
        """``[m, *x.shape]`` perturbed inputs from ``x`` and the draws ``[m, ...]`` (which it may
        overwrite: the stream hands out fresh tensors)."""
        ...


class Additive:
    """``x + delta`` in input space: the draws are the noise itself (``[m, *x.shape]``)."""

    units = "input space"

    def apply(self, x: Tensor, draws: Tensor) -> Tensor:
        return draws.add_(x)

    def __repr__(self) -> str:
        return "Additive()"


ADDITIVE = Additive()
