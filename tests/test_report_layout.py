"""smoothcert.report on Cohen's ``noise_<train>/test/sigma_<cert>`` layout, and the sweep summary's
labels for sweeps over any setting (fake Hydra sweep directories: fast, no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from callbacks.sweep_summary import SweepSummary, job_results
from smoothcert import report

COLUMNS = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"


def write_tsv(path: Path, radii: list[float], header: str = "") -> Path:
    """A Cohen-schema file: example i is correct with ``radii[i]`` (wrong when negative)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{i}\t1\t{1 if r >= 0 else 2}\t{max(r, 0.0)}\t{int(r >= 0)}\t0:00:01.500000\n"
        for i, r in enumerate(radii)
    ]
    path.write_text(header + COLUMNS + "".join(lines))
    return path


def test_report_reads_the_certification_sigma_of_cohens_layout(tmp_path, capsys):
    # The reference stores noise_<training sigma>/test/sigma_<certification sigma>.
    cross = write_tsv(tmp_path / "noise_0.25" / "test" / "sigma_0.50", [0.9, 0.3, -1])
    same = write_tsv(tmp_path / "noise_0.25" / "test" / "sigma_0.25", [0.2, 0.1, 0.1])
    only_noise = write_tsv(tmp_path / "noise_1.00" / "certify.tsv", [0.5])
    # The part nearest the file counts, whatever the folders above it are called.
    nested = write_tsv(tmp_path / "sigma_1.00" / "noise_1.00" / "noise_0.12" / "sigma_0.12", [0.5])
    results = [report.load_result(p) for p in (cross, same, only_noise, nested)]
    assert [r.sigma for r in results] == [0.5, 0.25, 1.0, 0.12]
    assert [r.train_sigma for r in results] == [(0.25,), (0.25,), (1.0,), (0.12,)]
    assert report.main([str(cross), "--radii", "0", "0.5"]) == 0
    runs, env = capsys.readouterr().out.split("\n\n")[:2]
    assert "| run | sigma | train_sigma |" in runs
    assert f"| {cross} | 0.5000 | 0.25 | 3 |" in runs
    assert "| radius | best_sigma | best_train_sigma |" in env
    assert "| 0.5000 | 0.5000 | 0.25 |" in env
    # r=0: 3/3 at sigma 0.25 beats 2/3 at 0.5; r=0.5: only the file certified at 0.50 has any.
    best = report.envelope(results[:2], [0.0, 0.5])
    assert [(row["best_sigma"], row["best_train_sigma"]) for row in best] == [
        (0.25, "0.25"),
        (0.5, "0.25"),
    ]
    assert report.curve_names(results[:2]) == ["sigma=0.5 (trained at 0.25)", "sigma=0.25"]


def test_report_takes_both_sigmas_from_our_header_before_the_path(tmp_path):
    header = "# sigma: 0.5\n# train_sigma: 0.25\n"
    ours = write_tsv(tmp_path / "noise_1.0" / "sigma_1.0" / "certify.tsv", [0.1], header)
    several = write_tsv(tmp_path / "b.tsv", [0.1], "# sigma: 0.5\n# train_sigma: [0.25, 0.5]\n")
    unknown = write_tsv(
        tmp_path / "noise_0.12" / "c.tsv", [0.1], "# sigma: 0.5\n# train_sigma: None\n"
    )
    results = [report.load_result(p) for p in (ours, several, unknown)]
    assert [(r.sigma, r.train_sigma) for r in results] == [
        (0.5, (0.25,)),
        (0.5, (0.25, 0.5)),
        (0.5, (0.12,)),
    ]
    assert [row["train_sigma"] for row in report.per_run_table(results, [0.0])] == [
        "0.25",
        "0.25,0.5",
        "0.12",
    ]


def fake_sweep(tmp_path: Path, jobs: list[tuple[list[str], list[float]]]) -> Path:
    """A Hydra multirun directory: job i in ``i_sigma0.25/`` with its overrides and records."""
    sweep = tmp_path / "multirun"
    for num, (overrides, radii) in enumerate(jobs):
        job = sweep / f"{num}_sigma0.25"
        write_tsv(job / "certify.tsv", radii, "# sigma: 0.25\n# train_sigma: 0.25\n")
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return sweep


def read_rows(path: Path) -> list[dict[str, str]]:
    header, *rows = (line.split("\t") for line in path.read_text().splitlines())
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_sweep_summary_labels_an_n_sweep_by_n_one_row_per_job(tmp_path):
    fixed = ["debug=default", "logger=none"]
    # Same sigma everywhere; job order is not numeric order (10000 before 500).
    radii = {"10000": [0.6, 0.4, -1], "500": [0.2, 0.1, 0.0], "100000": [0.9, 0.05, 0.05]}
    sweep = fake_sweep(tmp_path, [([*fixed, f"certify.n={n}"], r) for n, r in radii.items()])
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}, "logger": None})
    SweepSummary(radii=[0.0, 0.3, 0.5]).on_multirun_end(config)
    summary = sweep / "sweep_summary"
    runs = read_rows(summary / "runs.tsv")
    assert [row["run"] for row in runs] == ["n=500", "n=10000", "n=100000"]
    assert [row["certify.n"] for row in runs] == ["500", "10000", "100000"]
    assert [row["file"] for row in runs] == [
        "1_sigma0.25/certify.tsv",
        "0_sigma0.25/certify.tsv",
        "2_sigma0.25/certify.tsv",
    ]
    assert {row["sigma"] for row in runs} == {"0.25"}
    env = read_rows(summary / "envelope.tsv")
    # r=0: 3/3 (n=500 first, ties go to the first row); r=0.3: 2/3 for n=10000; r=0.5: 1/3 for
    # n=10000 and n=100000, the first of which wins.
    assert [row["best_run"] for row in env] == ["n=500", "n=10000", "n=10000"]
    assert [float(row["certified_accuracy"]) for row in env] == pytest.approx([1, 2 / 3, 1 / 3])
    assert [float(row["clean_accuracy"]) for row in env] == pytest.approx([1, 2 / 3, 2 / 3])
    assert "| n=10000 | 10000 | 0.2500 | 0.25 | 3 |" in (summary / "runs.md").read_text()
    assert (summary / "certified_accuracy.png").stat().st_size > 1000


def test_sweep_summary_labels_several_swept_settings_and_keeps_rows_distinct(tmp_path):
    sweep = fake_sweep(
        tmp_path,
        [
            (["sigma=0.5", "+certify.alpha=0.01", "certify.n=1", "regime.n=1", "seed=1"], [0.1]),
            (["sigma=0.25", "+certify.alpha=0.01", "certify.n=2", "regime.n=2", "seed=1"], [0.2]),
            (["sigma=0.25", "+certify.alpha=0.001", "certify.n=2", "regime.n=2", "seed=1"], [0.3]),
        ],
    )
    results = job_results(sweep)
    # seed is the same in every job, so it is not part of the labels; n is ambiguous.
    assert [r.label for r in results] == [
        "sigma=0.25, alpha=0.001, certify.n=2, regime.n=2",
        "sigma=0.25, alpha=0.01, certify.n=2, regime.n=2",
        "sigma=0.5, alpha=0.01, certify.n=1, regime.n=1",
    ]
    assert results[0].settings == {
        "sigma": "0.25",
        "certify.alpha": "0.001",
        "certify.n": "2",
        "regime.n": "2",
    }
    assert report.curve_names(results) == [r.label for r in results]
    # Nothing swept (or no overrides saved): the job directories tell the rows apart.
    same = fake_sweep(tmp_path / "same", [(["certify.n=100"], [0.1]), (["certify.n=100"], [0.2])])
    assert [r.label for r in job_results(same)] == ["0_sigma0.25", "1_sigma0.25"]
    assert len(set(report.curve_names(job_results(same)))) == 2


def summary_job(sweep: Path, num: int, overrides: list[str], certifier, value: float) -> None:
    """Job ``num`` of a sweep whose certifier (a real callback) wrote its summary file."""
    job = sweep / f"{num}"
    certifier.output_dir = job
    certifier.summary = {certifier.objective: value, "cert/num_examples": 4.0}
    job.mkdir(parents=True)
    certifier.write_summary()
    (job / ".hydra").mkdir()
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


@pytest.mark.parametrize("kind", ["segcertify", "center"])
def test_sweep_summary_ranks_jobs_of_any_certifier_by_its_objective(tmp_path, kind):
    from callbacks.certification.center import CenterCertification
    from callbacks.certification.segcertify import SegCertifyCertification

    sweep = tmp_path / "multirun"
    values = {"0.12": 0.3, "0.5": 0.1, "0.25": 0.2}  # sigma -> objective
    for num, (sigma, value) in enumerate(values.items()):
        if kind == "segcertify":
            certifier = SegCertifyCertification(float(sigma), str(tmp_path))
        else:
            certifier = CenterCertification(float(sigma), str(tmp_path), h=[1.0], distance="l2")
        summary_job(sweep, num, [f"sigma={sigma}", "seed=0"], certifier, value)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}, "logger": None})
    SweepSummary().on_multirun_end(config)
    out = sweep / "sweep_summary"
    rows = read_rows(out / "objectives.tsv")
    assert [row["job"] for row in rows] == ["sigma=0.12", "sigma=0.25", "sigma=0.5"]
    assert [float(row["value"]) for row in rows] == [0.3, 0.2, 0.1]
    # SegCertify maximises certified mIoU; center smoothing minimises eps_out.
    best = "sigma=0.12" if kind == "segcertify" else "sigma=0.5"
    assert [row["job"] for row in rows if row["best"] == "*"] == [best]
    assert {row["certifier"] for row in rows} == {kind}
    assert all(row["cert/num_examples"] == "4" for row in rows)  # a count, printed as one
    assert (out / "objectives.png").stat().st_size > 1000
    assert not (out / "runs.tsv").exists()  # no Cohen records in this sweep


def test_report_names_the_noise_and_norm_of_each_run(tmp_path):
    """Runs of several noises certified in l1 (docs/results.md's table): the legend and the runs
    table say which noise each is and the x axis says l1; Cohen's files keep their layout."""
    paths = [
        write_tsv(tmp_path / name / "certify.tsv", [0.9, 0.3, -1], f"# sigma: 0.5\n{head}")
        for name, head in [
            ("gaussian", "# noise: gaussian\n# norm: l1\n"),
            ("laplace", "# noise: laplace\n# norm: l1\n"),
            ("uniform", "# noise: uniform\n# norm: l1\n"),
        ]
    ]
    results = [report.load_result(path) for path in paths]
    assert [r.smoothing for r in results] == ["gaussian l1", "laplace l1", "uniform l1"]
    assert report.curve_names(results) == [
        "gaussian, l1: sigma=0.5",
        "laplace, l1: sigma=0.5",
        "uniform, l1: sigma=0.5",
    ]
    assert report.radius_label(results) == "l1 radius"
    rows = report.per_run_table(results, [0.0])
    assert [(row["noise"], row["norm"]) for row in rows] == [
        ("gaussian", "l1"),
        ("laplace", "l1"),
        ("uniform", "l1"),
    ]
    cohen = report.load_result(write_tsv(tmp_path / "cohen.tsv", [0.9], "# sigma: 0.25\n"))
    assert cohen.smoothing == "gaussian l2" and report.radius_label([cohen]) == "l2 radius"
    assert "noise" not in report.per_run_table([cohen], [0.0])[0]
    assert report.curve_names([cohen]) == ["sigma=0.25"]


def test_a_heuristic_runs_report_says_estimated_not_certified(tmp_path):
    """BaseSPT records (header units "... not a certificate") give an estimated_accuracy column
    and plot; certified runs keep certified_accuracy."""
    header = "# norm: rotation\n# units: degrees (heuristic: not a certificate)\n"
    heuristic = report.load_result(write_tsv(tmp_path / "a" / "certify.tsv", [9.0, -1], header))
    sound = report.load_result(write_tsv(tmp_path / "b" / "certify.tsv", [9.0, -1]))
    assert not heuristic.certified and sound.certified
    for results, name in [([sound], "certified_accuracy"), ([sound, heuristic], "estimated")]:
        out = tmp_path / name
        report.write_report(results, out, [0.0, 5.0])
        (row, _) = read_rows(out / "envelope.tsv")
        assert float(row[report.accuracy_name(results)]) == pytest.approx(0.5)
        assert report.accuracy_name(results).startswith(name)
        assert (out / f"{report.accuracy_name(results)}.png").is_file()
        assert (name == "estimated") is not (out / "certified_accuracy.png").exists()
