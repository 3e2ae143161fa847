"""Cohen et al.'s records: one line per example, in the reference implementation's columns
``idx label predict radius correct time`` (radius at full precision)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from smoothcert.records.schema import RecordSchema, resume_keys
from smoothcert.records.tsv import COHEN_COLUMNS, parse_time

__all__ = [
    "COHEN_SCHEMA",
    "RESUME_KEYS",
    "SEQUENTIAL_COLUMNS",
    "SEQUENTIAL_SCHEMA",
    "STOP_REASONS",
    "CohenRecord",
    "SequentialRecord",
    "parse_sequential",
    "RANDOMIZED_SCHEMA",
    "RandomizedRecord",
    "without_interrupted",
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


# ----- sequential CERTIFY (certify.sequential=true, issue 23) ------------------------------------

# Cohen's columns, then: estimation samples used, count of the selected class among them, the
# final lower bound on p_A (of the confidence sequence), why sampling stopped, and the largest
# grid radius certified (nan: none). ``radius`` is the noise's certificate at ``p_lower``.
SEQUENTIAL_COLUMNS = (*COHEN_COLUMNS, "samples", "count", "p_lower", "stop", "grid_radius")
STOP_REASONS = ("decided", "cap", "budget", "interrupted")
SEQUENTIAL_RESUME_KEYS = resume_keys(
    "sigma", "noise", "norm", "n0", "n", "alpha", "sequential", "radii", "budget",
    "confidence_sequence", "checks",
)  # fmt: skip


@dataclass(frozen=True)
class SequentialRecord(CohenRecord):
    """A sequential CERTIFY record: Cohen's, plus ``samples`` (estimation samples drawn after the
    n0 selection ones), ``count`` (of the selected class among them), ``p_lower`` (the final
    lower bound of the confidence sequence, valid at the stopping time), ``stop`` (one of
    ``STOP_REASONS``) and ``grid_radius`` (the largest certified radius of the grid; nan: none)."""

    samples: int = 0
    count: int = 0
    p_lower: float = 0.0
    stop: str = "decided"
    grid_radius: float = math.nan

    def to_row(self) -> str:
        extra = [str(self.samples), str(self.count), repr(float(self.p_lower)), self.stop]
        return "\t".join([super().to_row(), *extra, repr(float(self.grid_radius))])


def parse_sequential(
    metadata: Mapping[str, str], rows: Sequence[Mapping[str, str]]
) -> list[SequentialRecord]:
    """One sequential record per row."""
    cohen = parse_cohen(metadata, rows)
    return [
        SequentialRecord(
            *dataclasses.astuple(record),
            samples=int(row["samples"]),
            count=int(row["count"]),
            p_lower=float(row["p_lower"]),
            stop=row["stop"],
            grid_radius=float(row["grid_radius"]),
        )
        for record, row in zip(cohen, rows, strict=True)
    ]


SEQUENTIAL_SCHEMA: RecordSchema[SequentialRecord] = RecordSchema(
    "certify.tsv",
    SEQUENTIAL_COLUMNS,
    SEQUENTIAL_RESUME_KEYS,
    parse_sequential,
    "sequential CERTIFY",
)


def without_interrupted(previous: Mapping[str, list], key: str) -> tuple[dict[str, list], set[int]]:
    """Resume's view of a sequential run: every file's records (``previous``, by file key) but
    those of the examples whose ``key`` record an interrupt stopped (stop "interrupted"), and
    their indices (to certify again from scratch)."""
    redo = {r.idx for r in previous[key] if getattr(r, "stop", "") == "interrupted"}
    return {k: [r for r in rs if r.idx not in redo] for k, rs in previous.items()}, redo


# ----- CERTIFY with the randomized Clopper-Pearson bound (certify.bound=randomized_cp) -----------


@dataclass(frozen=True)
class RandomizedRecord(CohenRecord):
    """A CERTIFY record whose bound is the randomized Clopper-Pearson one, with its uniform draw
    ``u`` (fixed by the seed and the index before sampling)."""

    u: float = 1.0

    def to_row(self) -> str:
        return "\t".join([super().to_row(), repr(float(self.u))])


def parse_randomized(
    metadata: Mapping[str, str], rows: Sequence[Mapping[str, str]]
) -> list[RandomizedRecord]:
    """One randomized-bound record per row."""
    cohen = parse_cohen(metadata, rows)
    return [
        RandomizedRecord(*dataclasses.astuple(record), u=float(row["u"]))
        for record, row in zip(cohen, rows, strict=True)
    ]


RANDOMIZED_SCHEMA: RecordSchema[RandomizedRecord] = RecordSchema(
    "certify.tsv",
    (*COHEN_COLUMNS, "u"),
    (*RESUME_KEYS, "bound"),
    parse_randomized,
    "randomized-bound CERTIFY",
)
