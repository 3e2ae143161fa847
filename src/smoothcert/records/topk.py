"""Top-k records: ``topk.tsv`` beside Cohen's ``certify.tsv``, one line per example and k:
``idx label k certified radius`` (radius 0 when not certified, ``inf`` for k = the number of
classes). An example's lines are written together, in the order of the header's ``topk``."""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from smoothcert.records.cohen import RESUME_KEYS
from smoothcert.records.schema import RecordSchema

__all__ = ["TOPK_SCHEMA", "TopKRecord", "parse_topk", "topk_accuracy_curve"]

TOPK_COLUMNS = ("idx", "label", "k", "certified", "radius")


@dataclass(frozen=True)
class TopKRecord:
    """One example's top-k certificates of its true label: ``radii[i]`` for ``ks[i]`` (None: not
    certified in the top ``ks[i]``)."""

    idx: int
    label: int
    ks: tuple[int, ...]
    radii: tuple[float | None, ...]

    def to_row(self) -> str:
        return "\n".join(
            f"{self.idx}\t{self.label}\t{k}\t{int(r is not None)}\t{float(r or 0.0)!r}"
            for k, r in zip(self.ks, self.radii, strict=True)
        )


def parse_topk(metadata: Mapping[str, str], rows: Sequence[Mapping[str, str]]) -> list[TopKRecord]:
    """One record per example that has a line for every k of the header's ``topk``."""
    ks = tuple(int(k) for k in ast.literal_eval(metadata.get("topk", "[]")))
    by_idx: dict[int, dict[int, tuple[int, float | None]]] = {}
    for row in rows:
        radius = float(row["radius"]) if int(row["certified"]) else None
        by_idx.setdefault(int(row["idx"]), {})[int(row["k"])] = (int(row["label"]), radius)
    return [
        TopKRecord(idx, lines[ks[0]][0], ks, tuple(lines[k][1] for k in ks))
        for idx, lines in by_idx.items()
        if ks and all(k in lines for k in ks)
    ]


TOPK_SCHEMA: RecordSchema[TopKRecord] = RecordSchema(
    "topk.tsv", TOPK_COLUMNS, (*RESUME_KEYS, "topk"), parse_topk, "top-k"
)


def topk_accuracy_curve(
    records: Sequence[TopKRecord], k: int, radii: Sequence[float]
) -> np.ndarray:
    """Certified top-k accuracy at each radius: the fraction of examples whose true label is
    certified among the top ``k`` with radius >= r (non-increasing in r)."""
    if not records:
        raise ValueError("no top-k records: certify at least one example")
    column = records[0].ks.index(k)
    radius = np.array(
        [-math.inf if r.radii[column] is None else r.radii[column] for r in records], dtype=float
    )
    grid = np.asarray(radii, dtype=np.float64)
    return (radius[None, :] >= grid[:, None]).mean(axis=1)
