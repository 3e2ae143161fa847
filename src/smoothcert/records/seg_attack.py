"""Segmentation-attack records: ``seg_attack.tsv``, one line per image and l2 radius:
``idx epsilon correct valid pixel_acc`` (pixels the base model labels correctly under the
attack, pixels with a label, and their ratio)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from smoothcert.records.schema import RecordSchema, resume_keys
from smoothcert.records.tsv import rows_by_index

__all__ = ["SEG_ATTACK_SCHEMA", "SegAttackRecord", "parse_seg_attack"]

SEG_ATTACK_COLUMNS = ("idx", "epsilon", "correct", "valid", "pixel_acc")
SEG_ATTACK_RESUME_KEYS = resume_keys("sigma", "steps", "radii", "scale", "flip")


@dataclass(frozen=True)
class SegAttackRecord:
    """One image under attack: at radius ``epsilons[i]`` the base model labels ``correct[i]`` of
    its ``valid`` labelled pixels correctly."""

    idx: int
    epsilons: tuple[float, ...]
    correct: tuple[int, ...]
    valid: int

    def to_row(self) -> str:
        return "\n".join(
            f"{self.idx}\t{float(e)!r}\t{c}\t{self.valid}\t{c / max(self.valid, 1)!r}"
            for e, c in zip(self.epsilons, self.correct, strict=True)
        )


def parse_seg_attack(
    metadata: Mapping[str, str], rows: Sequence[Mapping[str, str]]
) -> list[SegAttackRecord]:
    """One record per image (its lines in file order)."""
    return [
        SegAttackRecord(
            idx,
            tuple(float(r["epsilon"]) for r in group),
            tuple(int(r["correct"]) for r in group),
            int(group[0]["valid"]),
        )
        for idx, group in rows_by_index(rows).items()
    ]


SEG_ATTACK_SCHEMA: RecordSchema[SegAttackRecord] = RecordSchema(
    "seg_attack.tsv", SEG_ATTACK_COLUMNS, SEG_ATTACK_RESUME_KEYS, parse_seg_attack, "seg_attack"
)
