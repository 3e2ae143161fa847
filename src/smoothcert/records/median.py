"""Median-smoothing records: one per example, one TSV line per (eps, output coordinate).

A file ``median.tsv`` holds, after a ``#`` header (which states the guarantee: per coordinate or
simultaneous, with the ranks of every eps), the columns ``idx eps coord estimate lower upper
target time``: ``estimate`` is the plug-in h_p(x) (the same on every eps's lines), ``lower`` and
``upper`` the certified interval of h_p(x + delta) for ||delta||_2 <= eps (-inf / inf where n is
too small), ``target`` the ground truth of the coordinate (nan when the task has none per
coordinate). Floats are written with ``repr``.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from smoothcert.records.schema import RecordSchema, resume_keys

__all__ = ["MEDIAN_COLUMNS", "MEDIAN_RESUME_KEYS", "MedianRecord", "median_schema"]

MEDIAN_COLUMNS = ("idx", "eps", "coord", "estimate", "lower", "upper", "target", "time")
MEDIAN_RESUME_KEYS = resume_keys("sigma", "n", "alpha", "p", "guarantee", "eps", "outputs")


@dataclass(frozen=True)
class MedianRecord:
    """One example: the estimate ``[m]``, and per eps the bounds ``lower``/``upper`` ``[E, m]``."""

    idx: int
    eps: tuple[float, ...]
    estimate: np.ndarray  # [m]
    lower: np.ndarray  # [E, m]
    upper: np.ndarray  # [E, m]
    target: np.ndarray  # [m], nan where unknown
    time: float

    def to_row(self) -> str:
        lines = []
        for k, eps in enumerate(self.eps):
            for j in range(len(self.estimate)):
                values = (self.estimate[j], self.lower[k, j], self.upper[k, j], self.target[j])
                cells = [str(self.idx), repr(float(eps)), str(j), *(repr(float(v)) for v in values)]
                lines.append("\t".join([*cells, f"{self.time:.6f}"]))
        return "\n".join(lines)


def parse_median(
    metadata: Mapping[str, str], rows: Sequence[Mapping[str, str]]
) -> list[MedianRecord]:
    """The complete examples: ``len(eps) * outputs`` consecutive lines of one idx in the order
    ``to_row`` writes them (a crash's partial example is dropped; the first complete copy wins)."""
    eps = tuple(float(e) for e in ast.literal_eval(metadata.get("eps", "[]")))
    m = int(metadata.get("outputs", "0") or 0)
    expected = [(e, j) for e in eps for j in range(m)]
    examples: dict[int, MedianRecord] = {}
    run: list[Mapping[str, str]] = []
    for row in rows if expected else []:
        if run and (row["idx"] != run[0]["idx"] or len(run) == len(expected)):
            run = []
        if (float(row["eps"]), int(row["coord"])) != expected[len(run)]:
            run = []
            if (float(row["eps"]), int(row["coord"])) != expected[0]:
                continue
        run.append(row)
        if len(run) == len(expected):
            table = {
                c: np.array([float(r[c]) for r in run]).reshape(len(eps), m)
                for c in ("estimate", "lower", "upper", "target")
            }
            record = MedianRecord(
                int(run[0]["idx"]),
                eps,
                table["estimate"][0],
                table["lower"],
                table["upper"],
                table["target"][0],
                float(run[0]["time"]),
            )
            examples.setdefault(record.idx, record)
    return list(examples.values())


def median_schema(name: str = "median") -> RecordSchema[MedianRecord]:
    """The records of ``<name>.tsv`` (``median``, or ``expectation`` for the expectation bound,
    whose ``estimate`` is the sample mean)."""
    return RecordSchema(f"{name}.tsv", MEDIAN_COLUMNS, MEDIAN_RESUME_KEYS, parse_median, name)
