"""A record schema: one certifier's record file (name, columns, resume keys) and the one way its
records travel, as TSV text, both to disk and between processes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import torch

from smoothcert.records.tsv import Record, parse_table, read_table

__all__ = ["RUN_KEYS", "RecordSchema", "resume_keys"]

R = TypeVar("R", bound=Record)
# Header (key -> text) and rows (column -> text) -> the complete records among the rows, in order.
Parser = Callable[[Mapping[str, str], Sequence[Mapping[str, str]]], list]

# Header settings of the run that every certification's rows depend on: which examples (seed,
# split, skip) of which data, at which input normalization.
RUN_KEYS = ("seed", "split", "skip", "dataset", "normalization")


def resume_keys(*settings: str) -> tuple[str, ...]:
    """A schema's resume keys: the certifier, its own ``settings``, then the run's (``RUN_KEYS``):
    the header settings that must agree for rows of two runs to belong to one certification."""
    return ("certifier", *settings, *RUN_KEYS)


@dataclass(frozen=True)
class RecordSchema(Generic[R]):
    """The rows of one certifier's record file.

    Attributes:
        file_name: the merged file in the run directory (shards are ``<stem>.rank<r>.tsv``).
        columns: the TSV columns, in order.
        resume_keys: header settings that must agree for rows of two runs to be one certification.
        parse: builds the complete records from a header and rows; a record cut short by a crash
            (some of its lines missing) is left out, so a resume certifies that example again.
        kind: what the file is called in error messages.
        drop_unterminated: files drop a last line without its newline (cut short by a crash).

    ``pack``/``unpack`` are the only encoding between processes: a rank's records go as the UTF-8
    bytes of exactly the lines written to disk, so what is gathered, merged and resumed is the
    same text, whatever the record type, with floats at full precision (``repr``).
    """

    file_name: str
    columns: tuple[str, ...]
    resume_keys: tuple[str, ...]
    parse: Parser
    kind: str
    drop_unterminated: bool = True

    def read(self, path: str | Path) -> tuple[dict[str, str], list[R]]:
        """The ``#`` header and the complete records of a file of this schema."""
        metadata, rows = read_table(path, self.columns, self.kind, self.drop_unterminated)
        return metadata, self.parse(metadata, rows)

    def pack(self, records: Sequence[R]) -> torch.Tensor:
        """``records`` as a 1-D uint8 tensor (their TSV lines), ready for an all-gather."""
        text = "".join(record.to_row() + "\n" for record in records).encode("utf-8")
        return torch.frombuffer(bytearray(text), dtype=torch.uint8) if text else _EMPTY.clone()

    def unpack(self, packed: torch.Tensor, metadata: Mapping[str, object]) -> list[R]:
        """Inverts ``pack`` for records written under the header ``metadata``."""
        text = bytes(packed.cpu().tolist()).decode("utf-8")
        header = {key: str(value).strip() for key, value in metadata.items()}
        lines = text.splitlines(keepends=True)
        _, rows = parse_table(lines, (), self.kind, columns=self.columns)
        return self.parse(header, rows)


_EMPTY = torch.zeros(0, dtype=torch.uint8)
