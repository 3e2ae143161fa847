"""certify.n too small to certify anything is refused; n < n0 (likely swapped) is warned about,
with the cap on the radius it implies, which a model that is always right does reach."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from callbacks.certification.cohen import CohenCertification
from smoothcert import ABSTAIN, Smooth
from smoothcert.errors import ConfigError


class AlwaysClassZero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 3)
        logits[:, 0] = 1.0
        return logits


def certify_always_right(n: int, alpha: float) -> tuple[int, float]:
    smooth = Smooth(AlwaysClassZero(), 3, sigma=0.25)
    return smooth.certify(torch.rand(1, 2, 2), 10, n, alpha, 64, torch.Generator().manual_seed(0))


def test_n_that_certifies_nothing_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"certify.n=9 certifies nothing .* certify.n >= 10") as e:
        CohenCertification(0.25, "unused", n0=100, n=9, alpha=0.001)
    assert "\n" not in str(e.value)
    assert certify_always_right(9, 0.001) == (ABSTAIN, 0.0)  # the refusal is right
    assert certify_always_right(10, 0.001)[1] > 0  # and the smallest n it suggests certifies


def test_n_below_n0_warns_with_the_cap_on_every_radius():
    with pytest.warns(UserWarning, match=r"certify.n=100 < certify.n0=1000") as caught:
        CohenCertification(0.25, "unused", n0=1000, n=100, alpha=0.001)
    message = str(caught[0].message)
    assert "sigma * 1.500" in message and "did you mean certify.n0=100 certify.n=1000" in message
    _, radius = certify_always_right(100, 0.001)  # the best any model can do at n=100
    assert radius == pytest.approx(0.25 * 1.500, abs=1e-3)


def test_usual_sample_sizes_are_silent(recwarn):
    CohenCertification(0.25, "unused", n0=100, n=10_000, alpha=0.001)
    assert not [w for w in recwarn if "certify.n" in str(w.message)]
