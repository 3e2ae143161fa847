"""Sweeps (of sigma, of n) with a summary, and smoothcert.report on our and the reference's TSV
files."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbacks.sweep_summary import job_results
from conftest import TINY, run_script
from smoothcert import report
from smoothcert.records import read_records
from tests.wandb_records import read_records as read_wandb

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


def by_hand(path: Path, radius: float) -> float:
    _, records = read_records(path)
    return sum(r.correct == 1 and r.radius >= radius for r in records) / len(records)


def tsv_rows(path: Path) -> list[dict[str, str]]:
    header, *rows = (line.split("\t") for line in path.read_text().splitlines())
    return [dict(zip(header, row, strict=True)) for row in rows]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    result = run_script(
        "train.py",
        "-m",
        "sigma=0.25,0.5",
        *TINY,
        "logger=wandb",
        "certify.num_examples=8",
        f"hydra.sweep.dir={out}",
        env={"WANDB_MODE": "offline"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_sweep_summary_has_one_curve_per_sigma_and_the_envelope(sweep):
    jobs = sorted(sweep.glob("*/certify.tsv"))
    assert len(jobs) == 2
    summary = sweep / "sweep_summary"
    runs = tsv_rows(summary / "runs.tsv")
    assert [(row["run"], row["sigma"]) for row in runs] == [
        ("sigma=0.25", "0.25"),
        ("sigma=0.5", "0.5"),
    ]
    assert (summary / "certified_accuracy.png").stat().st_size > 1000
    file_of = {row["run"]: sweep / row["file"] for row in runs}
    for entry in tsv_rows(summary / "envelope.tsv"):
        radius = float(entry["radius"])
        accuracies = {run: by_hand(path, radius) for run, path in file_of.items()}
        best = max(accuracies.values())
        best_file = file_of[entry["best_run"]]
        assert float(entry["certified_accuracy"]) == pytest.approx(best)
        assert accuracies[entry["best_run"]] == pytest.approx(best)
        assert float(entry["best_sigma"]) == float(read_records(best_file)[0]["sigma"])
        assert float(entry["clean_accuracy"]) == pytest.approx(by_hand(best_file, 0.0))
    assert "| radius |" in (summary / "envelope.md").read_text()


@pytest.mark.slow
def test_an_n_sweep_has_one_row_per_job_labelled_by_n(tmp_path):
    out = tmp_path / "sweep"
    result = run_script("train.py", "-m", "certify.n=1000,100", *TINY, f"hydra.sweep.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = tsv_rows(out / "sweep_summary" / "runs.tsv")
    assert [(row["run"], row["certify.n"], row["sigma"]) for row in runs] == [
        ("n=100", "100", "0.25"),
        ("n=1000", "1000", "0.25"),
    ]
    for row in runs:
        metadata, records = read_records(out / row["file"])
        assert metadata["n"] == row["certify.n"]
        assert float(row["acc@0.00"]) == pytest.approx(by_hand(out / row["file"], 0.0))
    legend = report.curve_names(job_results(out))
    assert legend == ["n=100", "n=1000"]
    assert (out / "sweep_summary" / "certified_accuracy.png").stat().st_size > 1000


@pytest.mark.slow
def test_sweep_jobs_share_one_wandb_group_with_the_summary(sweep):
    groups = set()
    for wandb_file in sweep.glob("**/offline-run-*/run-*.wandb"):
        runs = [r.run for r in read_wandb(wandb_file) if r.WhichOneof("record_type") == "run"]
        groups |= {run.run_group for run in runs}
    assert len(list(sweep.glob("**/offline-run-*/run-*.wandb"))) == 3  # two jobs + the summary
    assert groups == {f"train-{sweep.name}"}
    # The summary's run holds both figures as images, the very PNGs the summary wrote.
    from tests.wandb_records import history_items

    (summary_file,) = sweep.glob("sweep_summary/wandb/offline-run-*/run-*.wandb")
    images = {k: v for row in history_items(summary_file) for k, v in row.items() if "_png" in k}
    assert sorted(images) == ["sweep/certified_accuracy_png", "sweep/objectives_png"]
    for key, ref in images.items():
        logged = summary_file.parent / "files" / ref["path"]
        name = key.removeprefix("sweep/").removesuffix("_png")
        assert logged.read_bytes() == (sweep / "sweep_summary" / f"{name}.png").read_bytes()


def test_report_reads_both_time_formats_like_a_hand_computation(tmp_path, capsys):
    rows = [(0, 3, 3, 0.61, 1), (1, 5, 2, 0.30, 0), (2, 7, 7, 0.12, 1), (3, 1, -1, 0.0, 0)]
    reference = tmp_path / "noise_0.50" / "test" / "sigma_0.50"
    reference.parent.mkdir(parents=True)
    with open(reference, "w") as handle:  # the reference layout: no header, H:MM:SS time
        handle.write("idx\tlabel\tpredict\tradius\tcorrect\ttime\n")
        for i, label, pred, radius, correct in rows:
            handle.write(f"{i}\t{label}\t{pred}\t{radius:.3}\t{correct}\t0:00:01.250000\n")
    ours = tmp_path / "certify.tsv"
    with open(ours, "w") as handle:
        handle.write("# sigma: 0.25\nidx\tlabel\tpredict\tradius\tcorrect\ttime\n")
        for i, label, pred, radius, correct in rows[:2]:
            handle.write(f"{i}\t{label}\t{pred}\t{radius}\t{correct}\t1.25\n")
    out = ["--out", str(tmp_path / "rep"), "--allow-mixed"]  # 4 examples against 2
    assert report.main([str(reference), str(ours), *out]) == 0
    printed = capsys.readouterr().out
    results = [report.load_result(reference), report.load_result(ours)]
    assert [r.sigma for r in results] == [0.5, 0.25]
    assert all(r.records[0].time == 1.25 for r in results)
    for radius, expected in [(0.0, 2 / 4), (0.2, 1 / 4), (0.7, 0.0)]:
        assert results[0].accuracy(radius) == pytest.approx(expected)
    assert results[1].accuracy(0.5) == pytest.approx(1 / 2)
    assert results[0].acr == pytest.approx((0.61 + 0.12) / 4)
    envelope = report.envelope(results, [0.0, 0.5])
    # r=0: 2/4 vs 1/2, a tie the first file wins; r=0.5: 1/4 vs 1/2.
    assert [row["best_sigma"] for row in envelope] == [0.5, 0.25]
    assert "| radius | best_sigma |" in printed
    assert (tmp_path / "rep" / "envelope.tsv").is_file()


def test_report_rejects_a_file_without_the_columns(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n")
    assert report.main([str(bad)]) == 2
    assert "missing" in capsys.readouterr().err
