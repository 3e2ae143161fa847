"""Integer translation with circular padding: ``psi_t(x) = roll(x, t)``, ``t`` in whole pixels.

Smoothing: ``t = round(s)``, ``s ~ N(0, sigma^2 I_2)`` (sigma in pixels), where ``round(s) =
floor(s + 1/2)`` (half up, not torch's half to even, so that it commutes with adding an integer at
exact half-integers too: ``round(a + s) = a + round(s)`` for every integer ``a``). Why the rounding
keeps the certificate sound for integer attacks: write ``h(u) = f(roll(x, round(u)))`` for ``u`` in
R^2. For an integer shift ``a``, ``roll(roll(x, a), round(s)) = roll(x, a + round(s)) = roll(x,
round(a + s))`` (rolls compose exactly, and rounding commutes with adding an integer), so the
smoothed classifier at ``roll(x, a)`` is the Gaussian smoothing of ``h`` at ``a``, and at ``x`` the
one at 0. Cohen's theorem for the function ``h`` on R^2 then certifies every integer ``a`` with
``||a||_2 < sigma Phi^-1(p_A)`` (the default radius; in pixels, the l2 length of the shift vector).
Rounding is part of the base function ``h``; nothing is lost. Shifts that are not whole pixels are
not covered (they are not a roll). Since ``roll(x, a)`` only depends on ``a`` modulo the image
size, every shift congruent to a certified one is certified too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothcert.perturbation import ParameterPerturbation


def round_half_up(values: Tensor) -> Tensor:
    """``floor(values + 1/2)``: the nearest integer, halves rounded up. Unlike ``Tensor.round``
    (half to even: ``round(0.5) = 0`` but ``round(1.5) = 2``), it satisfies ``round(a + s) = a +
    round(s)`` for every integer ``a`` and every ``s``, which the certificate's proof uses."""
    return torch.floor(values + 0.5)


class Translation(ParameterPerturbation):
    """``roll(x, (ty, tx))`` with ``(ty, tx) = round(N(0, sigma^2 I_2))`` pixels; images only."""

    name, units, num_params = "translation", "pixels", 2
    images_only = True

    def params_from(self, draws: Tensor) -> Tensor:
        return round_half_up(draws)

    def transform(self, xs: Tensor, params: Tensor) -> Tensor:
        """Each image ``xs[i]`` (``[C, H, W]``) rolled down by ``params[i, 0]`` rows and right by
        ``params[i, 1]`` columns, circularly (``torch.roll`` per row, vectorised)."""
        batch, _, height, width = xs.shape
        shifts = round_half_up(params).long()
        rows = (torch.arange(height, device=xs.device) - shifts[:, :1]) % height  # [B, H]
        cols = (torch.arange(width, device=xs.device) - shifts[:, 1:]) % width  # [B, W]
        which = torch.arange(batch, device=xs.device)[:, None, None]
        channels_last = xs.permute(0, 2, 3, 1)[which, rows[:, :, None], cols[:, None, :]]
        return channels_last.permute(0, 3, 1, 2)
