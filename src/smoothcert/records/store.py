"""The record files of one schema in one run directory: streamed shards, resume, atomic merge.

While certifying, each process streams its rows to disk (``certify.tsv`` itself with one process,
``certify.rank<r>.tsv`` with several). A crash therefore loses at most the examples in progress,
and a later run with ``resume`` continues from whatever rows exist, skipping finished examples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Generic

from smoothcert.errors import ConfigError
from smoothcert.records.schema import R, RecordSchema
from smoothcert.records.tsv import RecordWriter, write_records

__all__ = ["RecordStore"]


class RecordStore(Generic[R]):
    """The ``schema``'s merged file and its shard files in ``directory``, for a run whose header
    is ``metadata``. Records are deduplicated by their ``idx`` (the first complete copy wins)."""

    def __init__(
        self, directory: str | Path, schema: RecordSchema[R], metadata: Mapping[str, object]
    ) -> None:
        self.directory = Path(directory)
        self.schema = schema
        self.metadata = dict(metadata)
        self.final = self.directory / schema.file_name
        self._stem = schema.file_name.removesuffix(".tsv")

    @property
    def columns(self) -> tuple[str, ...]:
        return self.schema.columns

    def shard(self, rank: int) -> Path:
        return self.directory / f"{self._stem}.rank{rank}.tsv"

    def files(self) -> list[Path]:
        """Existing record files: the merged file first, then shards by rank."""
        shards = sorted(self.directory.glob(f"{self._stem}.rank*.tsv"))
        return ([self.final] if self.final.is_file() else []) + shards

    def check_fresh(self) -> None:
        """Raises ConfigError if records exist (they would be overwritten without resume)."""
        if self.files():
            raise ConfigError(
                f"{self.files()[0]} already exists: pass certify.resume=true to continue it, or "
                "choose a new hydra.run.dir"
            )

    def existing(self) -> list[R]:
        """All finished records (deduplicated by index, sorted) after checking every file's
        settings; raises ConfigError naming the first resume setting that differs from ours."""
        by_index: dict[int, R] = {}
        for path in self.files():
            metadata, records = self.schema.read(path)
            for key in self.schema.resume_keys:
                theirs, ours = metadata.get(key), self.metadata.get(key)
                if theirs is not None and theirs != str(ours):
                    raise ConfigError(
                        f"cannot resume {path}: it was written with {key}={theirs}, this run has "
                        f"{key}={ours}; use the same settings or a new hydra.run.dir"
                    )
            for record in records:
                by_index.setdefault(record.idx, record)
        return sorted(by_index.values(), key=lambda r: r.idx)

    def merge(self, records: Sequence[R]) -> None:
        """Atomically writes ``records`` sorted by index into the merged file, then drops shards."""
        ordered = sorted(records, key=lambda r: r.idx)
        write_records(self.final, self.metadata, ordered, self.columns)
        for path in self.directory.glob(f"{self._stem}.rank*.tsv"):
            path.unlink()

    def writer(self, rank: int, world_size: int) -> RecordWriter:
        """Where this process streams its rows: appended to the merged file with one process."""
        if world_size == 1:
            return RecordWriter(self.final, self.metadata, self.columns, append=True)
        return RecordWriter(self.shard(rank), self.metadata, self.columns)
