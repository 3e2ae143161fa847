"""Curves and summaries against hand computations; Cohen-schema TSV files round-trip exactly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from smoothcert import (
    ABSTAIN,
    CohenRecord,
    abstain_rate,
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_curve,
    read_records,
    summarize,
)
from smoothcert.metrics.certified import radius_grid
from smoothcert.records import (
    COHEN_COLUMNS,
    RecordWriter,
    parse_time,
    records_to_columns,
    write_records,
)


def _record(idx: int, label: int, predict: int, radius: float, time: float = 1.0) -> CohenRecord:
    return CohenRecord(idx, label, predict, radius, int(predict == label), time)


# Five examples: three correct (radii 0.5, 1.2, 0.25), one wrong with a radius, one abstention.
HAND = [
    _record(0, 1, 1, 0.5),
    _record(1, 2, 2, 1.2),
    _record(2, 0, 3, 0.8),  # wrong class: never counts, whatever its radius
    _record(3, 1, ABSTAIN, 0.0),
    _record(4, 0, 0, 0.25),
]


@pytest.mark.parametrize(
    ("radius", "expected"),
    [
        (0.0, 3 / 5),
        (0.1, 3 / 5),
        (0.25, 3 / 5),
        (0.3, 2 / 5),
        (0.5, 2 / 5),
        (0.8, 1 / 5),
        (1.2, 1 / 5),
        (1.2000001, 0.0),
        (5.0, 0.0),
    ],
)
def test_certified_accuracy_by_hand(radius: float, expected: float) -> None:
    assert certified_accuracy(HAND, radius) == pytest.approx(expected, abs=1e-15)


def test_curve_matches_pointwise_accuracy_by_hand() -> None:
    grid = [0.0, 0.25, 0.26, 0.5, 0.51, 1.2, 1.3]
    curve = certified_accuracy_curve(HAND, grid)
    np.testing.assert_allclose(curve, [0.6, 0.6, 0.4, 0.4, 0.2, 0.2, 0.0], atol=1e-15)
    assert curve.shape == (len(grid),)


def test_acr_and_abstain_rate_by_hand() -> None:
    assert average_certified_radius(HAND) == pytest.approx((0.5 + 1.2 + 0.25) / 5, abs=1e-15)
    assert abstain_rate(HAND) == pytest.approx(1 / 5, abs=1e-15)
    assert abstain_rate([_record(0, 0, ABSTAIN, 0.0), _record(1, 1, ABSTAIN, 0.0)]) == 1.0
    assert abstain_rate(HAND[:3]) == 0.0


def test_summarize_by_hand() -> None:
    summary = summarize(HAND, [0.0, 0.5, 1.0])
    assert summary == pytest.approx(
        {
            "cert/acc@0.00": 0.6,
            "cert/acc@0.50": 0.4,
            "cert/acc@1.00": 0.2,
            "cert/acr": 0.39,
            "cert/abstain": 0.2,
            "cert/clean_acc": 0.6,
            "cert/num_examples": 5.0,
        },
        abs=1e-12,
    )


def _random_records(count: int, seed: int) -> list[CohenRecord]:
    rng = np.random.default_rng(seed)
    records = []
    for idx in range(count):
        label = int(rng.integers(10))
        abstain = rng.random() < 0.2
        predict = ABSTAIN if abstain else (label if rng.random() < 0.7 else int(rng.integers(10)))
        radius = 0.0 if abstain else float(rng.exponential(0.5))
        records.append(_record(idx, label, predict, radius, round(float(rng.random()) * 9, 6)))
    return records


@pytest.mark.parametrize("seed", range(5))
def test_curve_is_non_increasing_and_agrees_with_definitions(seed: int) -> None:
    records = _random_records(300, seed)
    grid = radius_grid(records, step=0.01)
    curve = certified_accuracy_curve(records, grid)
    assert np.all(np.diff(curve) <= 0)
    assert grid[0] == 0.0 and grid[-1] > max(r.radius for r in records)
    assert curve[-1] == 0.0
    # Brute-force definitions.
    for r in grid[::25]:
        brute = sum(x.correct and x.radius >= r for x in records) / len(records)
        assert certified_accuracy(records, float(r)) == pytest.approx(brute, abs=1e-15)
    acr = sum(x.radius for x in records if x.correct) / len(records)
    assert average_certified_radius(records) == pytest.approx(acr, rel=1e-12)
    # ACR is the area under the certified-accuracy curve.
    fine = np.linspace(0, grid[-1], 200_001)
    curve_fine = certified_accuracy_curve(records, fine)
    area = float(np.sum((curve_fine[1:] + curve_fine[:-1]) / 2 * np.diff(fine)))
    assert area == pytest.approx(acr, abs=1e-3)
    abstained = sum(x.predict == ABSTAIN for x in records) / len(records)
    assert abstain_rate(records) == pytest.approx(abstained, abs=1e-15)


@pytest.mark.parametrize(
    "function",
    [abstain_rate, average_certified_radius, lambda r: certified_accuracy(r, 0.5)],
)
def test_empty_records_raise(function) -> None:
    with pytest.raises(ValueError):
        function([])


ROUND_TRIP = [
    CohenRecord(0, 3, 3, 0.1 + 0.2, 1, 0.123456),
    CohenRecord(7, 1, ABSTAIN, 0.0, 0, 12.5),
    CohenRecord(8, 2, 2, 1 / 3, 1, 3600.000001),
    CohenRecord(9, 0, 5, math.pi, 0, 0.0),
    CohenRecord(10, 9, 9, 2.220446049250313e-16, 1, 1e-6),
    CohenRecord(11, 4, 4, 1.2345678901234567, 1, 0.5),
]
METADATA = {
    "sigma": 0.25,
    "n0": 100,
    "n": 100000,
    "alpha": 0.001,
    "seed": 0,
    "checkpoint": "outputs/2024-01-01/12:30:00/checkpoints/last.ckpt",
    "normalization": "mean=(0.4914, 0.4822, 0.4465) std=(0.247, 0.2435, 0.2616)",
}


def test_writer_and_reader_round_trip_exactly(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "certify.tsv"
    with RecordWriter(path, METADATA) as writer:
        for record in ROUND_TRIP:
            writer.write(record)
    metadata, records = read_records(path)
    assert metadata == {key: str(value) for key, value in METADATA.items()}
    assert records == ROUND_TRIP  # dataclass equality: radius and time compared with ==
    # Reference scripts read the file with a '#'-comment-aware TSV reader: columns in Cohen's order.
    header = [line for line in path.read_text().splitlines() if not line.startswith("#")][0]
    assert header.split("\t") == list(COHEN_COLUMNS)


def test_write_records_round_trip_many(tmp_path: Path) -> None:
    records = _random_records(200, seed=9)
    write_records(tmp_path / "all.tsv", {"sigma": 0.5}, records)
    metadata, read_back = read_records(tmp_path / "all.tsv")
    assert metadata == {"sigma": "0.5"}
    assert read_back == records


def test_rows_are_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "streaming.tsv"
    writer = RecordWriter(path, {"sigma": 0.25}, sync_every=2)
    try:
        for count, record in enumerate(ROUND_TRIP[:3], start=1):
            writer.write(record)
            assert read_records(path)[1] == ROUND_TRIP[:count]
    finally:
        writer.close()
    writer.close()  # idempotent


def test_reads_reference_format(tmp_path: Path) -> None:
    # As written by Cohen et al.'s certify.py: no metadata, radius to 3 significant digits, and
    # the time as str(datetime.timedelta(...)).
    path = tmp_path / "reference.tsv"
    path.write_text(
        "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
        "0\t3\t3\t0.437\t1\t0:00:01.500000\n"
        "20\t8\t-1\t0.0\t0\t0:00:02\n"
        "40\t0\t6\t0.0891\t0\t1:02:03.250000\n"
    )
    metadata, records = read_records(path)
    assert metadata == {}
    assert records == [
        CohenRecord(0, 3, 3, 0.437, 1, 1.5),
        CohenRecord(20, 8, ABSTAIN, 0.0, 0, 2.0),
        CohenRecord(40, 0, 6, 0.0891, 0, 3723.25),
    ]


def test_reads_seconds_format_with_reordered_columns(tmp_path: Path) -> None:
    path = tmp_path / "seconds.tsv"
    path.write_text(
        "# sigma: 0.5\n"
        "# note: a: b\n"
        "\n"
        "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
        "5\t1\t1\t0.75\t1\t1.5\n"
        "6\t2\t-1\t0.0\t0\t0.000123\n"
    )
    metadata, records = read_records(path)
    assert metadata == {"sigma": "0.5", "note": "a: b"}
    assert records == [CohenRecord(5, 1, 1, 0.75, 1, 1.5), CohenRecord(6, 2, -1, 0.0, 0, 0.000123)]

    shuffled = tmp_path / "shuffled.tsv"
    shuffled.write_text("time\tcorrect\tradius\tpredict\tlabel\tidx\n1.5\t1\t0.75\t1\t1\t5\n")
    assert read_records(shuffled)[1] == [CohenRecord(5, 1, 1, 0.75, 1, 1.5)]


def test_rejects_files_without_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "other.tsv"
    path.write_text("idx\tlabel\tpredict\tcorrect\n0\t1\t1\t1\n")
    with pytest.raises(ValueError, match="radius"):
        read_records(path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.5", 1.5),
        ("0:00:01.500000", 1.5),
        ("0:00:02", 2.0),
        ("0:01:00", 60.0),
        ("2:00:00.000001", 7200.000001),
        ("12.25", 12.25),
    ],
)
def test_parse_time(text: str, seconds: float) -> None:
    assert parse_time(text) == pytest.approx(seconds, abs=1e-9)


def test_records_to_columns() -> None:
    columns = records_to_columns(HAND)
    assert list(columns) == list(COHEN_COLUMNS)
    assert columns["radius"] == [0.5, 1.2, 0.8, 0.0, 0.25]
    assert columns["correct"] == [1, 1, 0, 0, 1]
