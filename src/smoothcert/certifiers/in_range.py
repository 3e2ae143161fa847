"""CERTIFY over brightness (or brightness+contrast) with the part of each certificate that keeps
the image in [0, 1] (:mod:`smoothcert.records.in_range`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from smoothcert.certifiers.classification import Smooth
from smoothcert.certifiers.examples import certify_group_details
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
    records, predictions, _ = certify_group_details(
        smooth, indices, xs, labels, generators, *settings
    )
    out = []
    for x, record, smoothed in zip(xs, records, predictions, strict=True):
        low, high, in_range = smooth.perturbation.in_range(x, record.radius)
        extra = InRangeRecord(
            record.idx, record.label, smoothed, record.radius, low, high, in_range
        )
        out.append((record, extra))
    return out
