"""Sigma sweeps with a summary, and smoothcert.report on our and the reference's TSV files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF, TINY, run_script
from smoothcert import report
from smoothcert.records import read_records
from tests.wandb_records import read_records as read_wandb

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


def by_hand(path: Path, radius: float) -> float:
    _, records = read_records(path)
    return sum(r.correct == 1 and r.radius >= radius for r in records) / len(records)


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


def test_sweep_summary_has_one_curve_per_sigma_and_the_envelope(sweep):
    jobs = sorted(sweep.glob("*/certify.tsv"))
    assert len(jobs) == 2
    summary = sweep / "sweep_summary"
    runs = (summary / "runs.tsv").read_text().splitlines()
    assert [line.split("\t")[1] for line in runs[1:]] == ["0.25", "0.5"]
    assert (summary / "certified_accuracy.png").stat().st_size > 1000
    envelope = [line.split("\t") for line in (summary / "envelope.tsv").read_text().splitlines()]
    header, rows = envelope[0], envelope[1:]
    sigma_of = {p.parent.name: float(read_records(p)[0]["sigma"]) for p in jobs}
    for row in rows:
        entry = dict(zip(header, row, strict=True))
        radius = float(entry["radius"])
        accuracies = {p.parent.name: by_hand(p, radius) for p in jobs}
        best = max(accuracies.values())
        assert float(entry["certified_accuracy"]) == pytest.approx(best)
        assert accuracies[entry["best_run"]] == pytest.approx(best)
        assert float(entry["best_sigma"]) == sigma_of[entry["best_run"]]
        best_file = next(p for p in jobs if p.parent.name == entry["best_run"])
        assert float(entry["clean_accuracy"]) == pytest.approx(by_hand(best_file, 0.0))
    assert "| radius |" in (summary / "envelope.md").read_text()


def test_sweep_jobs_share_one_wandb_group_with_the_summary(sweep):
    groups = set()
    for wandb_file in sweep.glob("**/offline-run-*/run-*.wandb"):
        runs = [r.run for r in read_wandb(wandb_file) if r.WhichOneof("record_type") == "run"]
        groups |= {run.run_group for run in runs}
    assert len(list(sweep.glob("**/offline-run-*/run-*.wandb"))) == 3  # two jobs + the summary
    assert groups == {f"train-{sweep.name}"}


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
    assert report.main([str(reference), str(ours), "--out", str(tmp_path / "rep")]) == 0
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


@pytest.mark.parametrize("launcher", ["submitit_slurm", "slurm"])
def test_slurm_launcher_configs_compose(launcher):
    overrides = [
        f"hydra/launcher={launcher}",
        "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.nodes=2",
        "trainer.num_nodes=2",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert (cfg.hydra.launcher.gpus_per_node, cfg.hydra.launcher.nodes) == (4, 2)
    assert cfg.trainer.num_nodes == 2
