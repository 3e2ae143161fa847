"""Resume keys come from the schema: every record file's keys are the certifier, its own settings
and the run's settings (``RUN_KEYS``), so no schema can forget which examples or data it holds."""

from __future__ import annotations

import pytest

from smoothcert.records.center import center_schema
from smoothcert.records.cohen import COHEN_SCHEMA
from smoothcert.records.empirical import EMPIRICAL_SCHEMA, EmpiricalRecord
from smoothcert.records.in_range import IN_RANGE_SCHEMA
from smoothcert.records.median import median_schema
from smoothcert.records.predict import PREDICT_SCHEMA
from smoothcert.records.schema import RUN_KEYS, resume_keys
from smoothcert.records.seg_attack import SEG_ATTACK_SCHEMA, SegAttackRecord
from smoothcert.records.segmentation import SEG_BASE_SCHEMA, SEG_SCHEMA
from smoothcert.records.topk import TOPK_SCHEMA

SCHEMAS = [
    COHEN_SCHEMA, TOPK_SCHEMA, IN_RANGE_SCHEMA, PREDICT_SCHEMA, EMPIRICAL_SCHEMA,
    SEG_ATTACK_SCHEMA, SEG_SCHEMA, SEG_BASE_SCHEMA, center_schema("l2"), median_schema(),
    median_schema("expectation"),
]  # fmt: skip


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.file_name)
def test_every_schema_resumes_on_the_certifier_and_the_run(schema):
    keys = schema.resume_keys
    assert keys[0] == "certifier" and len(set(keys)) == len(keys)
    assert set(RUN_KEYS) <= set(keys)


def test_cohen_keys_are_the_reference_order():
    """Cohen's keys as they were written out before the schema built them."""
    assert COHEN_SCHEMA.resume_keys == (
        "certifier", "sigma", "noise", "norm", "n0", "n", "alpha",
        "seed", "split", "skip", "dataset", "normalization",
    )  # fmt: skip
    assert resume_keys() == ("certifier", *RUN_KEYS)


def test_records_of_several_lines_read_back_per_example():
    """``rows_by_index``: each attack record's lines come back as one record, in order."""
    attacks = [
        EmpiricalRecord(3, 1, 0.5, ("grid", "1.50R"), (0.25, 0.75), (1, -1)),
        EmpiricalRecord(5, 2, 0.0, ("grid",), (0.25,), (2,)),
    ]
    assert EMPIRICAL_SCHEMA.unpack(EMPIRICAL_SCHEMA.pack(attacks), {}) == attacks
    images = [SegAttackRecord(0, (0.25, 0.5), (10, 5), 20), SegAttackRecord(2, (0.25,), (3,), 4)]
    assert SEG_ATTACK_SCHEMA.unpack(SEG_ATTACK_SCHEMA.pack(images), {}) == images
