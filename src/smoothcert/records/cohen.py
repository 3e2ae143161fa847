"""Cohen et al.'s records: one line per example, in the reference implementation's columns
``idx label predict radius correct time`` (radius at full precision)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from smoothcert.records.schema import RecordSchema, resume_keys
from smoothcert.records.tsv import COHEN_COLUMNS, parse_time

__all__ = [
    "COHEN_SCHEMA",
    "RESUME_KEYS",
    "CohenRecord",
    "parse_cohen",
    "read_records",
    "records_to_columns",
]

# Settings that must agree for rows of two runs to belong to one certification.
RESUME_KEYS = resume_keys("sigma", "noise", "norm", "n0", "n", "alpha")


@dataclass(frozen=True)
class CohenRecord:
    """One certified example: smoothed prediction (ABSTAIN = -1), radius (0 when abstaining)."""

    idx: int
    label: int
    predict: int
    radius: float
    correct: int
    time: float

    def to_row(self) -> str:
        # repr keeps the radius at full precision (shortest string that round-trips).
        return "\t".join(
            [
                str(self.idx),
                str(self.label),
                str(self.predict),
                repr(float(self.radius)),
                str(self.correct),
                f"{self.time:.6f}",
            ]
        )


def parse_cohen(
    metadata: Mapping[str, str], rows: Sequence[Mapping[str, str]]
) -> list[CohenRecord]:
    """One record per row (the time column may hold seconds or ``H:MM:SS.ffffff``)."""
    return [
        CohenRecord(
            idx=int(row["idx"]),
            label=int(row["label"]),
            predict=int(row["predict"]),
            radius=float(row["radius"]),
            correct=int(row["correct"]),
            time=parse_time(row["time"]),
        )
        for row in rows
    ]


# Reference files may end without a newline, so no line is dropped for lacking one.
COHEN_SCHEMA: RecordSchema[CohenRecord] = RecordSchema(
    "certify.tsv", COHEN_COLUMNS, RESUME_KEYS, parse_cohen, "Cohen-schema", drop_unterminated=False
)


def read_records(path: str | Path) -> tuple[dict[str, str], list[CohenRecord]]:
    """Reads a Cohen-schema TSV (ours, or the reference implementation's) into records.

    Returns the ``#`` metadata (empty for reference files) and the rows. The time column may hold
    seconds or ``H:MM:SS.ffffff``.
    """
    return COHEN_SCHEMA.read(path)


def records_to_columns(records: Iterable[CohenRecord]) -> dict[str, list]:
    """Column-major view of records (handy for plotting and tables)."""
    fields = [f.name for f in dataclasses.fields(CohenRecord)]
    out: dict[str, list] = {name: [] for name in fields}
    for record in records:
        for name in fields:
            out[name].append(getattr(record, name))
    return out
