"""CERTIFY over brightness (or brightness+contrast) with the part of each certificate that keeps
the image in [0, 1] (:mod:`smoothcert.records.in_range`)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from smoothcert.certifiers.classification import Smooth
from smoothcert.records import CohenRecord
from smoothcert.records.in_range import InRangeRecord


def certify_group_in_range(
    smooth: Smooth,
    indices: Sequence[int],
    xs: Sequence[torch.Tensor],
    labels: Sequence[int],
    generators: Sequence[torch.Generator],
    settings: tuple[int, int, float, int],
) -> list[tuple[CohenRecord, InRangeRecord]]:
    """The records of :func:`~smoothcert.certifiers.examples.certify_group` (same noise, same
    certificates) and, per example, its smoothed prediction at ``x`` and its certificate
    restricted to the shifts that keep ``x`` in [0, 1] (``smooth.perturbation.in_range``;
    ``settings`` = ``(n0, n, alpha, batch_size)``)."""
    n0, n, alpha, batch_size = settings
    start = time.perf_counter()
    results, predictions, _ = smooth.certify_many_with_predictions(
        xs, n0, n, alpha, batch_size, generators
    )
    share = (time.perf_counter() - start) / len(results)
    out = []
    for x, idx, label, (prediction, radius), smoothed in zip(
        xs, indices, labels, results, predictions, strict=True
    ):
        record = CohenRecord(idx, label, prediction, radius, int(prediction == label), share)
        low, high, in_range = smooth.perturbation.in_range(x, radius)
        out.append((record, InRangeRecord(idx, label, smoothed, radius, low, high, in_range)))
    return out
