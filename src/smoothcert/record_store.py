"""The certification records of one run directory: streamed shards, resume, atomic merge.

While certifying, each process streams its rows to disk (``certify.tsv`` itself with one process,
``certify.rank<r>.tsv`` with several). A crash therefore loses at most the examples in progress,
and a later run with ``resume`` continues from whatever rows exist, skipping finished examples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from smoothcert.errors import ConfigError
from smoothcert.records import (
    COHEN_COLUMNS,
    Record,
    RecordWriter,
    read_records,
    write_records,
)

# Settings that must agree for rows of two runs to belong to one certification.
RESUME_KEYS = (
    "certifier",
    "sigma",
    "n0",
    "n",
    "alpha",
    "seed",
    "split",
    "skip",
    "dataset",
    "normalization",
)


class RecordStore:
    """``certify.tsv`` and its shard files in ``directory``, for a run with ``metadata``.

    Cohen-schema records by default; another record type passes its file ``name``, ``columns``,
    ``reader`` (path -> metadata and the complete records in it) and the metadata keys that must
    agree for a resume (``resume_keys``). Records are deduplicated by their ``idx``.
    """

    def __init__(
        self,
        directory: str | Path,
        metadata: Mapping[str, object],
        name: str = "certify.tsv",
        columns: Iterable[str] = COHEN_COLUMNS,
        reader: Callable[[Path], tuple[dict[str, str], Sequence[Record]]] = read_records,
        resume_keys: Iterable[str] = RESUME_KEYS,
    ) -> None:
        self.directory = Path(directory)
        self.metadata = dict(metadata)
        self.final = self.directory / name
        self._stem = name.removesuffix(".tsv")
        self.columns, self.reader, self.resume_keys = tuple(columns), reader, tuple(resume_keys)

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

    def existing(self) -> list[Record]:
        """All finished rows (deduplicated by index) after checking every file's settings.

        Raises ConfigError naming the first setting whose value differs from this run's.
        """
        by_index: dict[int, Record] = {}
        for path in self.files():
            metadata, records = self.reader(path)
            for key in self.resume_keys:
                theirs, ours = metadata.get(key), self.metadata.get(key)
                if theirs is not None and theirs != str(ours):
                    raise ConfigError(
                        f"cannot resume {path}: it was written with {key}={theirs}, this run has "
                        f"{key}={ours}; use the same settings or a new hydra.run.dir"
                    )
            for record in records:
                by_index.setdefault(record.idx, record)
        return sorted(by_index.values(), key=lambda r: r.idx)

    def merge(self, records: Sequence[Record]) -> None:
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
