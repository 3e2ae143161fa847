"""Center-smoothing records: one per example and distance, one TSV line per (sigma, eps_in).

A file ``center_<distance>.tsv`` holds, after a ``#`` metadata header, the columns
``idx eps_in eps_out smoothing_error abstain time`` (then ``sigma p_hat center_radius
quantile_radius``): eps_out is inf on abstention or where q > 1, smoothing_error = d(f(x),
smoothed f(x)) is nan on abstention. An example's lines are written together, noise level by noise
level (in the order of the header's ``sigma``), each level's eps_in in the header's order. Floats
are written with ``repr`` (full precision), times with microseconds.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smoothcert.records.schema import RecordSchema, resume_keys

__all__ = [
    "CENTER_COLUMNS",
    "CENTER_RESUME_KEYS",
    "CenterExample",
    "CenterRecord",
    "Grid",
    "center_schema",
    "grid_of",
    "median_curves",
    "parse_center",
    "read_center_records",
]

CENTER_COLUMNS = (
    "idx",
    "eps_in",
    "eps_out",
    "smoothing_error",
    "abstain",
    "time",
    "sigma",
    "p_hat",
    "center_radius",
    "quantile_radius",
)
# Settings that must agree for rows of two runs to belong to one certification.
CENTER_RESUME_KEYS = resume_keys(
    "sigma", "n", "m", "delta", "alpha1", "alpha2", "gamma", "distance", "candidates", "eps_in"
)
# The noise levels certified and each one's input radii, in the order of the file's lines.
Grid = Sequence[tuple[float, Sequence[float]]]


@dataclass(frozen=True)
class CenterRecord:
    """One example under one distance at one sigma: the certificate at every eps_in, from one
    center."""

    idx: int
    sigma: float
    eps_in: tuple[float, ...]
    eps_out: tuple[float, ...]  # inf on abstention or where q > 1
    quantile_radius: tuple[float, ...]  # R per eps_in (eps_out = gamma (1 + 2 gamma) R)
    smoothing_error: float  # d(f(x), smoothed f(x)); nan on abstention
    abstain: int
    time: float  # seconds to smooth and certify this example under this distance at this sigma
    p_hat: float
    center_radius: float  # median distance r of the center to the first n samples

    def to_row(self) -> str:
        """One line per eps_in."""
        error, abstain = repr(float(self.smoothing_error)), str(int(self.abstain))
        shared = [error, abstain, f"{self.time:.6f}", repr(float(self.sigma))]
        shared += [repr(float(self.p_hat)), repr(float(self.center_radius))]
        return "\n".join(
            "\t".join([str(self.idx), repr(float(eps_in)), repr(float(eps_out)), *shared])
            + f"\t{float(radius)!r}"
            for eps_in, eps_out, radius in zip(
                self.eps_in, self.eps_out, self.quantile_radius, strict=True
            )
        )


@dataclass(frozen=True)
class CenterExample:
    """One example under one distance at every sigma (``levels``, in the grid's order): the unit
    a record file streams, resumes and merges (an example is finished once all levels are)."""

    idx: int
    levels: tuple[CenterRecord, ...]

    @property
    def time(self) -> float:
        return sum(level.time for level in self.levels)

    def to_row(self) -> str:
        return "\n".join(level.to_row() for level in self.levels)


def grid_of(metadata: Mapping[str, str]) -> list[tuple[float, tuple[float, ...]]]:
    """The (sigma, eps_in) grid a header states: ``sigma`` a number (``eps_in`` a list) or a list
    of levels (``eps_in`` one list per level)."""
    sigma = ast.literal_eval(metadata.get("sigma", "None"))
    eps_in = ast.literal_eval(metadata.get("eps_in", "[]"))
    if sigma is None or not eps_in:
        return []
    if isinstance(sigma, (int, float)):
        return [(float(sigma), tuple(float(e) for e in eps_in))]
    return [(float(s), tuple(float(e) for e in es)) for s, es in zip(sigma, eps_in, strict=True)]


def _record(
    rows: Sequence[Mapping[str, str]], sigma: float, eps_in: Sequence[float]
) -> CenterRecord:
    """The record of one level from its consecutive lines (one per eps_in)."""
    first = rows[0]
    return CenterRecord(
        int(first["idx"]),
        sigma,
        tuple(eps_in),
        tuple(float(r["eps_out"]) for r in rows),
        tuple(float(r["quantile_radius"]) for r in rows),
        float(first["smoothing_error"]),
        int(first["abstain"]),
        float(first["time"]),
        float(first["p_hat"]),
        float(first["center_radius"]),
    )


def parse_center(
    metadata: Mapping[str, str], rows: Sequence[Mapping[str, str]]
) -> list[CenterExample]:
    """The complete examples among the rows of a ``center_<distance>.tsv`` with header
    ``metadata``.

    An example counts once its consecutive lines cover exactly the header's (sigma, eps_in) grid,
    so the lines of an example a crash interrupted (some of its levels, or some of a level's
    radii) are dropped: a resume certifies it again at every sigma and appends its complete lines;
    the first complete copy of an example wins.
    """
    grid = grid_of(metadata)
    expected = [(sigma, eps) for sigma, eps_in in grid for eps in eps_in]
    examples: dict[int, CenterExample] = {}
    run: list[Mapping[str, str]] = []  # consecutive lines of one example
    for row in rows if expected else []:
        if run and (row["idx"] != run[0]["idx"] or len(run) == len(expected)):
            run = []
        key = (float(row["sigma"]), float(row["eps_in"]))
        if key != expected[len(run)]:
            run = []
            if key != expected[0]:
                continue
        run.append(row)
        if len(run) == len(expected):
            levels, start = [], 0
            for sigma, eps_in in grid:
                levels.append(_record(run[start : start + len(eps_in)], sigma, eps_in))
                start += len(eps_in)
            example = CenterExample(levels[0].idx, tuple(levels))
            examples.setdefault(example.idx, example)
    return list(examples.values())


def center_schema(distance: str) -> RecordSchema[CenterExample]:
    """The records of ``center_<distance>.tsv``."""
    return RecordSchema(
        f"center_{distance}.tsv",
        CENTER_COLUMNS,
        CENTER_RESUME_KEYS,
        parse_center,
        "center-smoothing",
    )


def read_center_records(path: str | Path) -> tuple[dict[str, str], list[CenterExample]]:
    """The ``#`` metadata and the complete examples (see ``parse_center``) of a
    ``center_<distance>.tsv``."""
    return center_schema("").read(path)


def median_curves(records: Sequence[CenterRecord]) -> dict[str, list[float]]:
    """For the records of one sigma, per eps_in: the median eps_out over all examples
    (abstentions count as inf, so the median is inf once half of them abstain) and the median
    smoothing error over the examples that did not abstain (nan if all did); the paper's Figs.
    3-5 plot both against eps_in, growing sigma with eps_in at a fixed h = eps_in / sigma."""
    eps_in = list(records[0].eps_in)
    eps_out = np.array([r.eps_out for r in records], dtype=np.float64)
    errors = np.array([r.smoothing_error for r in records if not r.abstain], dtype=np.float64)
    error = float(np.median(errors)) if len(errors) else math.nan
    return {
        "eps_in": eps_in,
        "eps_out": [float(v) for v in np.median(eps_out, axis=0)],
        "smoothing_error": [error] * len(eps_in),
    }
