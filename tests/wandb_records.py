"""A minimal reader of wandb's offline transaction log (``run-<id>.wandb``).

wandb 0.31 no longer ships a Python reader for these files (``wandb.sdk.internal.datastore`` is
gone), so this module implements the format, as checked byte by byte against files written by
wandb 0.31.0 (whose writer is the Go ``wandb-core`` service):

* A 7-byte file header, ``struct "<4sHB"``: ident ``b":W&B"``, magic ``0xBEE1`` (bytes
  ``e1 be``), version ``0``.
* Then a LevelDB-log-style stream of 32 KiB blocks; the file header counts towards block 0, so
  block ``k`` starts at file offset ``k * 32768``. Each chunk has a 7-byte header ``"<IHB"``:
  checksum, payload length, type (1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST). When fewer than 7 bytes
  remain in a block they are zero padding and the next chunk starts at the next block. A record
  longer than what is left of a block is split into FIRST, MIDDLE..., LAST chunks.
* The checksum is *not* LevelDB's masked CRC32C: it is plain zlib CRC-32 (IEEE) of the type byte
  followed by the payload, ``zlib.crc32(bytes([type]) + payload)``, unmasked.
* Each reassembled payload is one serialized ``wandb.proto.wandb_internal_pb2.Record``; the
  first is a ``header`` record, the last (after ``wandb.finish()``) an ``exit`` record, and
  ``record.num`` counts 1, 2, 3, ...

Checked on files from wandb 0.31.0 offline runs: train.py's (13 KB, one block, FULL chunks only),
one with 100 KB config and 90 KB history records (FIRST/MIDDLE/LAST chunks, every chunk inside
its block when blocks start at multiples of 32768 counted from the file start), and one of 5.4 MB
(164 blocks, 13 zero-filled 1-6 byte trailers, and zero-length FIRST chunks where exactly 7 bytes
were left in a block), all 20000 logged rows read back in order.

A file still being written may end in a partial chunk; ``read_records`` stops there (``strict``
makes that an error), but a bad checksum or a chunk out of sequence is always an error.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

FILE_HEADER = struct.Struct("<4sHB")
FILE_IDENT, FILE_MAGIC, FILE_VERSION = b":W&B", 0xBEE1, 0
CHUNK_HEADER = struct.Struct("<IHB")
BLOCK_LEN = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class WandbFileError(ValueError):
    """The file is not a well-formed wandb transaction log."""


def read_payloads(path: str | Path, strict: bool = False) -> Iterator[bytes]:
    """The raw (reassembled) record payloads of a ``.wandb`` file, in order."""
    data = Path(path).read_bytes()
    if len(data) < FILE_HEADER.size:
        raise WandbFileError(f"{path}: {len(data)} bytes, shorter than the file header")
    ident, magic, version = FILE_HEADER.unpack_from(data, 0)
    if (ident, magic, version) != (FILE_IDENT, FILE_MAGIC, FILE_VERSION):
        raise WandbFileError(f"{path}: bad header {ident!r} {magic:#x} {version}")
    pos = FILE_HEADER.size
    pending: list[bytes] | None = None  # chunks of a record split across blocks
    while pos < len(data):
        left_in_block = BLOCK_LEN - pos % BLOCK_LEN
        if left_in_block < CHUNK_HEADER.size:
            pos += left_in_block  # block trailer: padding
            continue
        if pos + CHUNK_HEADER.size > len(data):
            if strict:
                raise WandbFileError(f"{path}: truncated chunk header at offset {pos}")
            return
        checksum, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        start = pos + CHUNK_HEADER.size
        if length > left_in_block - CHUNK_HEADER.size:
            raise WandbFileError(f"{path}: chunk at offset {pos} crosses a block boundary")
        if start + length > len(data):
            if strict:
                raise WandbFileError(f"{path}: truncated chunk at offset {pos}")
            return
        payload = data[start : start + length]
        if zlib.crc32(bytes([kind]) + payload) != checksum:
            raise WandbFileError(f"{path}: bad checksum of the chunk at offset {pos}")
        pos = start + length
        if kind == FULL and pending is None:
            yield payload
        elif kind == FIRST and pending is None:
            pending = [payload]
        elif kind == MIDDLE and pending is not None:
            pending.append(payload)
        elif kind == LAST and pending is not None:
            pending.append(payload)
            yield b"".join(pending)
            pending = None
        else:
            raise WandbFileError(f"{path}: chunk type {kind} out of sequence at offset {pos}")
    if pending is not None and strict:
        raise WandbFileError(f"{path}: the last record is incomplete")


def read_records(path: str | Path, strict: bool = False) -> Iterator[wandb_internal_pb2.Record]:
    """The decoded ``Record`` protobufs of a ``.wandb`` file, in order."""
    for payload in read_payloads(path, strict):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        yield record


def item_path(item: Any) -> tuple[str, ...]:
    """Where an item's value goes: ``(item.key,)``, or the path ``item.nested_key``.

    wandb-core writes most items with ``nested_key``; its first element is the top-level key
    (which may itself contain ``/``, e.g. ``cert/acr``), the rest index into nested dicts (a logged
    table is stored as ``["cert/certified_accuracy_table", "_type"]``, ``[..., "path"]``, ...).
    """
    return (item.key,) if item.key else tuple(item.nested_key)


def _assign(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[path[-1]] = value


def _discard(target: dict[str, Any], path: tuple[str, ...]) -> None:
    for part in path[:-1]:
        target = target.get(part)
        if not isinstance(target, dict):
            return
    target.pop(path[-1], None)


def _apply(target: dict[str, Any], update: Any = (), remove: Any = ()) -> dict[str, Any]:
    """Applies items (JSON-decoded values, nested keys as nested dicts) and removals."""
    for item in update:
        _assign(target, item_path(item), json.loads(item.value_json))
    for item in remove:
        _discard(target, item_path(item))
    return target


def _records_of(path: str | Path, kind: str) -> Iterator[wandb_internal_pb2.Record]:
    return (r for r in read_records(path) if r.WhichOneof("record_type") == kind)


def history_items(path: str | Path) -> list[dict[str, Any]]:
    """One dict per history row (``record.history.item``): key -> JSON-decoded value.

    Nested keys become nested dicts: a logged ``wandb.Table`` is a dict with ``_type``
    ``"table-file"``, ``path`` (relative to the run's ``files`` dir), ``sha256``, ``nrows``....
    """
    return [_apply({}, r.history.item) for r in _records_of(path, "history")]


def summary_items(path: str | Path) -> dict[str, Any]:
    """The final run summary: every ``record.summary`` update and removal, in order."""
    summary: dict[str, Any] = {}
    for record in _records_of(path, "summary"):
        _apply(summary, record.summary.update, record.summary.remove)
    return summary


def config_dict(path: str | Path) -> dict[str, Any]:
    """The final run config: the run record's config, then every ``record.config``, in order.

    Values are the JSON-decoded values as logged (wandb-core does not wrap them in
    ``{"value": ...}`` here, unlike ``config.yaml``); wandb's own state is under ``_wandb``
    (custom charts under ``_wandb.visualize``).
    """
    config: dict[str, Any] = {}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            _apply(config, record.run.config.update, record.run.config.remove)
        elif kind == "config":
            _apply(config, record.config.update, record.config.remove)
    return config
