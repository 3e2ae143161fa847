"""Moved to ``smoothcert.records.store``. This module keeps the old constructor,
``RecordStore(directory, metadata, name, columns, reader, resume_keys)``, as a thin adapter."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from smoothcert.records import store
from smoothcert.records.cohen import COHEN_SCHEMA, RESUME_KEYS, read_records
from smoothcert.records.schema import RecordSchema
from smoothcert.records.tsv import COHEN_COLUMNS, Record

__all__ = ["RESUME_KEYS", "RecordStore"]

Reader = Callable[[Path], tuple[dict[str, str], Sequence[Record]]]


@dataclass(frozen=True)
class _ReaderSchema(RecordSchema):
    """A schema whose files are read by a given function (the old ``reader`` argument)."""

    reader: Reader = field(default=read_records)

    def read(self, path: str | Path) -> tuple[dict[str, str], list]:
        metadata, records = self.reader(Path(path))
        return metadata, list(records)


class RecordStore(store.RecordStore):
    """``smoothcert.records.RecordStore`` built from the old arguments (Cohen's by default)."""

    def __init__(
        self,
        directory: str | Path,
        metadata: Mapping[str, object],
        name: str = "certify.tsv",
        columns: Iterable[str] = COHEN_COLUMNS,
        reader: Reader = read_records,
        resume_keys: Iterable[str] = RESUME_KEYS,
    ) -> None:
        schema = _ReaderSchema(
            name, tuple(columns), tuple(resume_keys), COHEN_SCHEMA.parse, "record", reader=reader
        )
        super().__init__(directory, schema, metadata)
