"""Certification records in Cohen et al.'s TSV schema, streamed to disk row by row."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

COHEN_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time")


class Record(Protocol):
    """What ``RecordWriter`` and ``RecordStore`` need of a record: its example index and its
    TSV line(s) (a record may span several lines, e.g. one per certified radius)."""

    idx: int

    def to_row(self) -> str: ...


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


def parse_time(text: str) -> float:
    """Seconds from ``'1.5'`` or the reference implementation's ``'H:MM:SS.ffffff'``."""
    if ":" not in text:
        return float(text)
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


class RecordWriter:
    """Writes a ``#`` metadata header, the column row, then one flushed line per record.

    Each row is flushed (and fsync'ed every ``sync_every`` rows) as soon as it is written, so a
    crash loses at most the example in progress. ``append`` continues an existing file (its header
    stays as it is).
    """

    def __init__(
        self,
        path: str | Path,
        metadata: Mapping[str, object],
        columns: Iterable[str] = COHEN_COLUMNS,
        sync_every: int = 20,
        append: bool = False,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        continuing = append and self.path.is_file() and self.path.stat().st_size > 0
        self._file: TextIO = open(self.path, "a" if continuing else "w", encoding="utf-8")  # noqa: SIM115
        if not continuing:
            for key, value in metadata.items():
                self._file.write(f"# {key}: {value}\n")
            self._file.write("\t".join(columns) + "\n")
        self._file.flush()
        self._sync_every = sync_every
        self._count = 0

    def write(self, record: Record) -> None:
        self._file.write(record.to_row() + "\n")
        self._file.flush()
        self._count += 1
        if self._count % self._sync_every == 0:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_records(
    path: str | Path,
    metadata: Mapping[str, object],
    records: Iterable[Record],
    columns: Iterable[str] = COHEN_COLUMNS,
) -> None:
    """Writes a complete TSV file of ``records`` (header included), atomically: the file is either
    the old one or the complete new one, never a half-written mix."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with RecordWriter(partial, metadata, columns, sync_every=10**9) as writer:
        for record in records:
            writer.write(record)
    os.replace(partial, path)


def read_table(
    path: str | Path, required: Iterable[str], schema: str, drop_unterminated: bool = False
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The ``#`` metadata and the rows (column name -> text) of a TSV with a header row.

    Raises ValueError naming ``schema`` if a ``required`` column is missing. With
    ``drop_unterminated``, a last line without its newline (cut short by a crash) is dropped.
    """
    metadata: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    columns: list[str] | None = None
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if not line.strip() or (drop_unterminated and not raw.endswith("\n")):
                continue
            if line.startswith("#"):
                key, _, value = line[1:].partition(":")
                metadata[key.strip()] = value.strip()
                continue
            fields = line.split("\t")
            if columns is None:
                columns = fields
                missing = set(required) - set(columns)
                if missing:
                    raise ValueError(f"{path}: not a {schema} TSV, missing {sorted(missing)}")
                continue
            rows.append(dict(zip(columns, fields, strict=False)))
    return metadata, rows


def read_records(path: str | Path) -> tuple[dict[str, str], list[CohenRecord]]:
    """Reads a Cohen-schema TSV (ours, or the reference implementation's) into records.

    Returns the ``#`` metadata (empty for reference files) and the rows. The time column may hold
    seconds or ``H:MM:SS.ffffff``.
    """
    metadata, rows = read_table(path, COHEN_COLUMNS, "Cohen-schema")
    records = [
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
    return metadata, records


def records_to_columns(records: Iterable[CohenRecord]) -> dict[str, list]:
    """Column-major view of records (handy for plotting and tables)."""
    fields = [f.name for f in dataclasses.fields(CohenRecord)]
    out: dict[str, list] = {name: [] for name in fields}
    for record in records:
        for name in fields:
            out[name].append(getattr(record, name))
    return out
