"""CERTIFY with the randomized Clopper-Pearson bound (``certify.bound=randomized_cp``): the same
samples as CERTIFY, and a lower bound on p_A of exact level 1 - alpha, never below Clopper-Pearson's
(``smoothcert.stats.randomized``). Fixed n only: like Clopper-Pearson, it is not valid at a
data-dependent stopping time."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from smoothcert.certifiers.classification import Smooth
from smoothcert.records import RandomizedRecord
from smoothcert.stats.randomized import randomized_cp_lower

__all__ = ["certify_group_randomized", "example_uniform"]

U_STREAM = 0x52435  # tells U's generator apart from every other use of (seed, index)


def example_uniform(seed: int, index: int) -> float:
    """The uniform draw U of dataset example ``index``: from numpy's generator seeded by ``(seed,
    index, U_STREAM)``, so it is fixed before any sample is drawn, independent of the example's
    torch noise stream, and the same on every run (recorded in the ``u`` column)."""
    return float(np.random.default_rng([int(seed), int(index), U_STREAM]).random())


def certify_group_randomized(
    smooth: Smooth,
    indices: Sequence[int],
    xs: Sequence[torch.Tensor],
    labels: Sequence[int],
    generators: Sequence[torch.Generator],
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    seed: int,
) -> list[RandomizedRecord]:
    """CERTIFY of a group (the samples of ``Smooth.certify_many``) with the randomized
    Clopper-Pearson bound at each example's ``example_uniform(seed, index)``. Guarantee: with
    probability at least 1 - alpha over the noise and U, a returned class is g's answer within
    the radius (exactly 1 - alpha for the bound itself). Each ``time`` is an equal share."""
    start = time.perf_counter()
    c_hats, counts = smooth.selected_counts(xs, n0, n, alpha, batch_size, generators)
    rows = counts.cpu().tolist()
    records = []
    for idx, label, c_hat, row in zip(indices, labels, c_hats, rows, strict=True):
        u = example_uniform(seed, idx)
        p_lower = randomized_cp_lower(int(row[c_hat]), n, alpha, u)
        predict, radius = smooth.lower_bound_to_certificate(p_lower, c_hat, xs[0].numel())
        records.append((idx, label, predict, radius, int(predict == label), u))
    share = (time.perf_counter() - start) / len(records)
    return [RandomizedRecord(*r[:5], share, u=r[5]) for r in records]
