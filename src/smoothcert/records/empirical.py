"""Empirical-robustness records: ``empirical.tsv``, one line per example and attack radius:
``idx label certified_radius target epsilon predict correct`` (``target``: ``grid`` for a radius
of the grid, ``1.50R`` for 1.5 times the example's certified radius)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from smoothcert.records.schema import RecordSchema, resume_keys
from smoothcert.records.tsv import rows_by_index

__all__ = ["EMPIRICAL_SCHEMA", "EmpiricalRecord", "parse_empirical"]

EMPIRICAL_COLUMNS = ("idx", "label", "certified_radius", "target", "epsilon", "predict", "correct")
EMPIRICAL_RESUME_KEYS = resume_keys(
    "attack", "sigma", "steps", "m", "n", "alpha", "radii", "multiples"
)


@dataclass(frozen=True)
class EmpiricalRecord:
    """One example's attacks: PREDICT's answer ``predicts[i]`` at radius ``epsilons[i]`` (what
    it aimed at: ``targets[i]``), with Cohen's certified radius (0: not certified correctly)."""

    idx: int
    label: int
    certified_radius: float
    targets: tuple[str, ...]
    epsilons: tuple[float, ...]
    predicts: tuple[int, ...]

    def to_row(self) -> str:
        rows = zip(self.targets, self.epsilons, self.predicts, strict=True)
        return "\n".join(
            f"{self.idx}\t{self.label}\t{self.certified_radius!r}\t{t}\t{float(e)!r}\t{p}\t"
            f"{int(p == self.label)}"
            for t, e, p in rows
        )


def parse_empirical(
    metadata: Mapping[str, str], rows: Sequence[Mapping[str, str]]
) -> list[EmpiricalRecord]:
    """One record per example (its lines in file order); every line of an example is written
    in one go, so an example a crash cut short lacks its last lines and is attacked again."""
    return [
        EmpiricalRecord(
            idx,
            int(group[0]["label"]),
            float(group[0]["certified_radius"]),
            tuple(r["target"] for r in group),
            tuple(float(r["epsilon"]) for r in group),
            tuple(int(r["predict"]) for r in group),
        )
        for idx, group in rows_by_index(rows).items()
    ]


EMPIRICAL_SCHEMA: RecordSchema[EmpiricalRecord] = RecordSchema(
    "empirical.tsv", EMPIRICAL_COLUMNS, EMPIRICAL_RESUME_KEYS, parse_empirical, "empirical"
)
