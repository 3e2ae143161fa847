"""Record files as TSV: a ``#`` metadata header, a column row, then rows streamed one at a time."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol, TextIO

__all__ = [
    "COHEN_COLUMNS",
    "Record",
    "RecordWriter",
    "parse_table",
    "parse_time",
    "read_table",
    "rows_by_index",
    "write_records",
]

# Cohen et al.'s columns, as the reference implementation writes them: the writer's default.
COHEN_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time")


class Record(Protocol):
    """What writers, stores and schemas need of a record: its example index and its TSV line(s)
    (a record may span several lines, e.g. one per certified radius)."""

    idx: int

    def to_row(self) -> str: ...


def rows_by_index(rows: Iterable[Mapping[str, str]]) -> dict[int, list[Mapping[str, str]]]:
    """The rows of each example (column ``idx``), in file order: how a record written as several
    lines is read back."""
    lines: dict[int, list[Mapping[str, str]]] = {}
    for row in rows:
        lines.setdefault(int(row["idx"]), []).append(row)
    return lines


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


def parse_table(
    lines: Iterable[str],
    required: Iterable[str],
    schema: str,
    drop_unterminated: bool = False,
    source: object = "records",
    columns: Iterable[str] | None = None,
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The ``#`` metadata and the rows (column name -> text) of TSV ``lines`` (with newlines).

    The first non-comment line names the columns unless ``columns`` are given. Raises ValueError
    naming ``source`` and ``schema`` if a ``required`` column is missing. With
    ``drop_unterminated``, a line without its newline (cut short by a crash) is dropped.
    """
    metadata: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    names: list[str] | None = None if columns is None else list(columns)
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip() or (drop_unterminated and not raw.endswith("\n")):
            continue
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            metadata[key.strip()] = value.strip()
            continue
        fields = line.split("\t")
        if names is None:
            names = fields
            missing = set(required) - set(names)
            if missing:
                raise ValueError(f"{source}: not a {schema} TSV, missing {sorted(missing)}")
            continue
        rows.append(dict(zip(names, fields, strict=False)))
    return metadata, rows


def read_table(
    path: str | Path, required: Iterable[str], schema: str, drop_unterminated: bool = False
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """``parse_table`` of the file at ``path`` (errors name the file)."""
    with open(path, encoding="utf-8") as handle:
        return parse_table(handle, required, schema, drop_unterminated, source=path)
