"""PREDICT records: ``predict.tsv`` with the columns of Cohen et al.'s ``predict.py``,
``idx label predict correct time`` (``predict`` -1 = abstain), after our ``#`` header."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from smoothcert.records.cohen import RESUME_KEYS
from smoothcert.records.schema import RecordSchema
from smoothcert.records.tsv import parse_time

__all__ = ["PREDICT_COLUMNS", "PREDICT_SCHEMA", "PredictRecord", "parse_predict"]

PREDICT_COLUMNS = ("idx", "label", "predict", "correct", "time")


@dataclass(frozen=True)
class PredictRecord:
    """One example's smoothed prediction (ABSTAIN = -1) and whether it is the label."""

    idx: int
    label: int
    predict: int
    correct: int
    time: float

    def to_row(self) -> str:
        return f"{self.idx}\t{self.label}\t{self.predict}\t{self.correct}\t{self.time:.6f}"


def parse_predict(
    metadata: Mapping[str, str], rows: Sequence[Mapping[str, str]]
) -> list[PredictRecord]:
    """One record per row (the time column may hold seconds or ``H:MM:SS.ffffff``)."""
    return [
        PredictRecord(
            int(row["idx"]),
            int(row["label"]),
            int(row["predict"]),
            int(row["correct"]),
            parse_time(row["time"]),
        )
        for row in rows
    ]


PREDICT_SCHEMA: RecordSchema[PredictRecord] = RecordSchema(
    "predict.tsv",
    PREDICT_COLUMNS,
    tuple(key for key in RESUME_KEYS if key != "n0"),
    parse_predict,
    "PREDICT",
)
