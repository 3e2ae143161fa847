"""Center-smoothing records: one per example and distance, one TSV line per certified eps_in.

A file ``center_<distance>.tsv`` holds, after a ``#`` metadata header, the columns
``idx eps_in eps_out smoothing_error abstain time`` (then ``p_hat center_radius quantile_radius``):
eps_out is inf on abstention or where q > 1, smoothing_error = d(f(x), smoothed f(x)) is nan on
abstention. Floats are written with ``repr`` (full precision), times with microseconds.
"""

from __future__ import annotations

import ast
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from smoothcert.center import CenterSmooth
from smoothcert.noise import example_generator
from smoothcert.records import read_table

CENTER_COLUMNS = (
    "idx",
    "eps_in",
    "eps_out",
    "smoothing_error",
    "abstain",
    "time",
    "p_hat",
    "center_radius",
    "quantile_radius",
)
# Settings that must agree for rows of two runs to belong to one certification.
CENTER_RESUME_KEYS = (
    "certifier",
    "sigma",
    "n",
    "m",
    "delta",
    "alpha1",
    "alpha2",
    "gamma",
    "distance",
    "eps_in",
    "seed",
    "split",
    "skip",
    "dataset",
    "normalization",
)
SCALARS = ("smoothing_error", "abstain", "time", "p_hat", "center_radius")


@dataclass(frozen=True)
class CenterRecord:
    """One example under one distance: the certificate at every eps_in, from one center."""

    idx: int
    eps_in: tuple[float, ...]
    eps_out: tuple[float, ...]  # inf on abstention or where q > 1
    quantile_radius: tuple[float, ...]  # R per eps_in (eps_out = gamma (1 + 2 gamma) R)
    smoothing_error: float  # d(f(x), smoothed f(x)); nan on abstention
    abstain: int
    time: float  # seconds to smooth and certify this example under this distance
    p_hat: float
    center_radius: float  # median distance r of the center to the first n samples

    def to_row(self) -> str:
        """One line per eps_in (the example's lines are written together)."""
        lines = []
        for eps_in, eps_out, radius in zip(
            self.eps_in, self.eps_out, self.quantile_radius, strict=True
        ):
            lines.append(
                "\t".join(
                    [
                        str(self.idx),
                        repr(float(eps_in)),
                        repr(float(eps_out)),
                        repr(float(self.smoothing_error)),
                        str(int(self.abstain)),
                        f"{self.time:.6f}",
                        repr(float(self.p_hat)),
                        repr(float(self.center_radius)),
                        repr(float(radius)),
                    ]
                )
            )
        return "\n".join(lines)

    def pack(self) -> list[float]:
        """Floats for ``gather_rows`` (index first); ``unpack`` inverts it given the eps_in."""
        head = [float(self.idx), *(float(getattr(self, name)) for name in SCALARS)]
        return head + [*self.eps_out, *self.quantile_radius]

    @staticmethod
    def packed_width(num_eps_in: int) -> int:
        """How many floats ``pack`` gives for ``num_eps_in`` radii."""
        return 1 + len(SCALARS) + 2 * num_eps_in

    @staticmethod
    def unpack(values: Sequence[float], eps_in: Sequence[float]) -> CenterRecord:
        k, scalars = len(eps_in), len(SCALARS)
        idx, error, abstain, seconds, p_hat, radius = values[: 1 + scalars]
        tail = values[1 + scalars :]
        return CenterRecord(
            int(idx),
            tuple(float(e) for e in eps_in),
            tuple(tail[:k]),
            tuple(tail[k : 2 * k]),
            error,
            int(abstain),
            seconds,
            p_hat,
            radius,
        )


def certify_example(
    smoother: CenterSmooth,
    x: Tensor,
    idx: int,
    eps_in: Sequence[float],
    seed: int,
    base_output: Tensor,
) -> tuple[CenterRecord, Tensor | None]:
    """Smooths and certifies dataset example ``idx`` (``x``, whose base output ``f(x)`` is
    ``base_output`` ``[1, ...]``) at every eps_in; returns its record and the center (None on
    abstention). The noise comes from a generator seeded by ``(seed, idx)``, so the record depends
    on neither the batch size nor the order or sharding of the examples."""
    start = time.perf_counter()
    result = smoother.certify_details(x, eps_in, example_generator(seed, idx, x.device))
    center = result.center
    with torch.inference_mode():
        error = math.nan if center is None else float(smoother.distance(base_output, center[None]))
    record = CenterRecord(
        idx,
        tuple(float(e) for e in eps_in),
        tuple(result.eps_out),
        tuple(result.quantile_radius),
        error,
        int(center is None),
        time.perf_counter() - start,
        result.smoothed.p_hat,
        result.smoothed.radius,
    )
    return record, center


def read_center_records(path: str | Path) -> tuple[dict[str, str], list[CenterRecord]]:
    """The ``#`` metadata and the complete records of a ``center_<distance>.tsv``.

    An example counts once its consecutive lines cover exactly the eps_in of the header, so the
    lines of an example a crash interrupted are dropped (a resume certifies it again and appends
    its complete lines; the first complete copy of an example wins).
    """
    metadata, rows = read_table(path, CENTER_COLUMNS, "center-smoothing", drop_unterminated=True)
    expected = [float(e) for e in ast.literal_eval(metadata.get("eps_in", "[]"))]
    records: dict[int, CenterRecord] = {}
    run: list[dict[str, str]] = []  # consecutive lines of one example
    for row in rows if expected else []:
        if run and (row["idx"] != run[0]["idx"] or len(run) == len(expected)):
            run = []
        if float(row["eps_in"]) != expected[len(run)]:
            run = []
            if float(row["eps_in"]) != expected[0]:
                continue
        run.append(row)
        if len(run) == len(expected):
            first = run[0]
            record = CenterRecord(
                int(first["idx"]),
                tuple(expected),
                tuple(float(r["eps_out"]) for r in run),
                tuple(float(r["quantile_radius"]) for r in run),
                float(first["smoothing_error"]),
                int(first["abstain"]),
                float(first["time"]),
                float(first["p_hat"]),
                float(first["center_radius"]),
            )
            records.setdefault(record.idx, record)
    return metadata, list(records.values())


def median_curves(records: Sequence[CenterRecord]) -> dict[str, list[float]]:
    """Per eps_in, the median eps_out over all examples (abstentions count as inf, so the median
    is inf once half of them abstain) and the median smoothing error over the examples that did
    not abstain (nan if all did); the paper's Figs. 3-5 plot both against eps_in."""
    eps_in = list(records[0].eps_in)
    eps_out = np.array([r.eps_out for r in records], dtype=np.float64)
    errors = np.array([r.smoothing_error for r in records if not r.abstain], dtype=np.float64)
    error = float(np.median(errors)) if len(errors) else math.nan
    return {
        "eps_in": eps_in,
        "eps_out": [float(v) for v in np.median(eps_out, axis=0)],
        "smoothing_error": [error] * len(eps_in),
    }
