"""In-range records of a brightness (or brightness+contrast) certificate: ``in_range.tsv`` beside
Cohen's ``certify.tsv`` (whose six columns stay the reference's), one line per example:
``idx label smoothed radius low high in_range_radius``.

The certificate covers every shift ``|b| < radius`` of ``x + b`` before clipping (TSS's threat
model); a clipped brightness change is not covered. The shifts that keep this image in [0, 1] are
``[-min x, 1 - max x]`` (with contrast: ``[-min x, e^-k_high - max x]``), so the certified shifts
that are also real images are ``(low, high)`` = their intersection with ``(-radius, radius)``
(empty when ``low > high``), and ``in_range_radius = max(0, min(radius, -low, high))`` is its
symmetric part. On images that span [0, 1] (most digits) it is 0.

``smoothed`` is the smoothed prediction at ``x`` itself (ABSTAIN = -1 unless its lower bound
exceeds 1/2), which may differ from ``certify.tsv``'s ``predict`` where the certificate abstains
on a radius of 0: the clean accuracy counts this column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from smoothcert.records.cohen import RESUME_KEYS
from smoothcert.records.schema import RecordSchema

__all__ = ["IN_RANGE_SCHEMA", "InRangeRecord", "clean_accuracy", "in_range_curve", "parse_in_range"]

IN_RANGE_COLUMNS = ("idx", "label", "smoothed", "radius", "low", "high", "in_range_radius")


@dataclass(frozen=True)
class InRangeRecord:
    """One example: its smoothed prediction at ``x``, its certified radius and the certified
    shifts ``(low, high)`` that keep it in [0, 1], with their symmetric part."""

    idx: int
    label: int
    smoothed: int
    radius: float
    low: float
    high: float
    in_range_radius: float

    @property
    def correct(self) -> int:
        """Whether the in-range certificate is of the right class (what the curves count)."""
        return int(self.smoothed == self.label and self.radius > 0)

    def to_row(self) -> str:
        values = (self.radius, self.low, self.high, self.in_range_radius)
        numbers = "\t".join(repr(float(v)) for v in values)
        return f"{self.idx}\t{self.label}\t{self.smoothed}\t{numbers}"


def parse_in_range(
    metadata: Mapping[str, str], rows: Sequence[Mapping[str, str]]
) -> list[InRangeRecord]:
    """One record per row."""
    return [
        InRangeRecord(
            int(row["idx"]),
            int(row["label"]),
            int(row["smoothed"]),
            *(float(row[c]) for c in ("radius", "low", "high", "in_range_radius")),
        )
        for row in rows
    ]


IN_RANGE_SCHEMA: RecordSchema[InRangeRecord] = RecordSchema(
    "in_range.tsv", IN_RANGE_COLUMNS, RESUME_KEYS, parse_in_range, "in-range"
)


def in_range_curve(records: Sequence[InRangeRecord], radii: Sequence[float]) -> np.ndarray:
    """Certified accuracy restricted to in-range shifts: the fraction of examples certified
    correct with ``in_range_radius >= r``, at each ``r`` of ``radii``."""
    if not records:
        raise ValueError("no in-range records: certify at least one example")
    correct = np.array([r.correct for r in records], dtype=bool)
    radius = np.array([r.in_range_radius for r in records], dtype=np.float64)
    return (correct[None, :] & (radius[None, :] >= np.asarray(radii)[:, None])).mean(axis=1)


def clean_accuracy(records: Sequence[InRangeRecord]) -> float:
    """The smoothed classifier's accuracy at the clean inputs (abstentions count as wrong)."""
    return float(np.mean([r.smoothed == r.label for r in records]))
