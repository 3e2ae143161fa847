"""Results a person can read (issue 21, item 6): short labels, the legend beside fixed-size axes,
the protocol in the tables and titles, mixed protocols refused or flagged, the objectives plot in
the curve plot's colours with the best job marked, overlay class legends, counts as integers.

Figures are checked as matplotlib objects: ``plt.close`` is replaced by a catcher, so the
figure a function saved can be inspected afterwards. Fast: no training."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from omegaconf import OmegaConf

from callbacks.reporting import say_scalars
from callbacks.sweep_summary import SweepSummary, write_objectives
from smoothcert import report
from smoothcert.report.plots import AXES_SIZE, draw_curves
from smoothcert.report.segcertify import save_overlay

COLUMNS = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"


def write_run(path: Path, radii: list[float], sigma=0.25, n=1000, dataset="digits") -> Path:
    """Our TSV: a header like the callback's, example i correct with ``radii[i]`` (< 0: wrong)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# sigma: {sigma}\n# train_sigma: {sigma}\n# n0: 100\n# n: {n}\n# alpha: 0.001\n"
    header += f"# dataset: {dataset}\n"
    rows = [
        f"{i}\t1\t{1 if r >= 0 else 2}\t{max(r, 0.0)}\t{int(r >= 0)}\t0.5\n"
        for i, r in enumerate(radii)
    ]
    path.write_text(header + COLUMNS + "".join(rows))
    return path


@pytest.fixture
def figures(monkeypatch) -> list:
    """Every figure closed (saved) during the test, still open for inspection."""
    caught: list = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: caught.append(fig))
    yield caught
    close("all")


def tsv(path: Path) -> list[dict[str, str]]:
    header, *rows = path.read_text().splitlines()
    return [dict(zip(header.split("\t"), row.split("\t"), strict=True)) for row in rows]


def four_runs(tmp_path: Path, examples=(3, 3, 5, 5)) -> list[Path]:
    """Four jobs of a sweep folder: sigma 0.25/0.5, with ``examples`` examples each."""
    sigmas = (0.25, 0.5, 0.25, 0.5)
    return [
        write_run(
            tmp_path / "outputs" / f"{i}_sigma{s}" / "certify.tsv",
            [0.3, 0.1, -1, 0.6][:k] + [0.2] * (k - 4),
            s,
        )
        for i, (s, k) in enumerate(zip(sigmas, examples, strict=True))
    ]


def test_mixed_protocols_are_refused_unless_allowed_then_flagged(tmp_path, capsys, figures):
    paths = [str(p) for p in four_runs(tmp_path)]
    out = tmp_path / "rep"
    assert report.main([*paths, "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "differ in examples 3, 5" in error[0] and "--allow-mixed" in error[0]
    assert not out.exists()

    assert report.main([*paths, "--out", str(out), "--allow-mixed"]) == 0
    assert "warning: mixed protocols" in capsys.readouterr().err
    runs = tsv(out / "runs.tsv")
    # Short labels: the settings that differ, not the paths (the paths are in the file column).
    labels = ["sigma=0.25, examples=3", "sigma=0.5, examples=3"]
    labels += ["sigma=0.25, examples=5", "sigma=0.5, examples=5"]
    assert [row["run"] for row in runs] == labels
    assert [row["file"] for row in runs] == paths
    for row in runs:
        assert (row["dataset"], row["n0"], row["n"], row["alpha"]) == (
            "digits",
            "100",
            "1000",
            "0.001",
        )
    assert [row["examples"] for row in runs] == ["3", "3", "5", "5"]
    envelope = tsv(out / "envelope.tsv")
    assert all(row["best_examples"] == row["best_run"][-1] for row in envelope)
    assert (out / "envelope.md").read_text().startswith("**Warning: mixed protocols")
    # The plot: the same labels, each with its ACR, in a legend beside the axes.
    (fig,) = [f for f in figures if f is not None]
    legend = fig.axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert [t.split(", ACR=")[0] for t in texts] == labels
    acr = report.load_result(paths[0]).acr
    assert texts[0].endswith(f"ACR={acr:.3f}")
    title = fig.axes[0].get_title()
    assert "digits, n0=100, n=1000, alpha=0.001" in title and "examples" not in title


def test_same_protocol_needs_no_flag_and_labels_can_be_given(tmp_path, capsys):
    paths = [str(p) for p in four_runs(tmp_path, examples=(4, 4, 4, 4))]
    assert report.main([*paths, "--labels", "a,b,c,d"]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert "| a | 0.2500 |" in captured.out and "| d | 0.5000 |" in captured.out
    assert "best_examples" not in captured.out  # nothing mixed: no protocol columns
    assert report.main([*paths, "--labels", "a,b"]) == 2
    assert "--labels gives 2 labels for 4 paths" in capsys.readouterr().err


def test_labels_fall_back_on_the_parts_of_the_paths_that_differ(tmp_path):
    ref = tmp_path / "ref"
    paths = [ref / f"noise_{s}" / "test" / "sigma_0.50" for s in ("0.25", "0.50")]
    assert report.path_labels(paths) == ["noise_0.25", "noise_0.50"]
    # Same settings everywhere: the path parts tell the runs apart.
    same = [write_run(tmp_path / f"run{i}" / "certify.tsv", [0.1, 0.2]) for i in (1, 2)]
    results = [report.load_result(p) for p in same]
    assert report.short_labels(results) == ["run1", "run2"]
    assert report.short_labels(results[:1]) == [str(same[0])]  # a lone file keeps its path


def test_legend_sits_beside_axes_that_keep_their_size():
    curve = ([0.0, 0.5, 1.0], [0.9, 0.5, 0.1])
    alone = draw_curves({"one": curve}, "certified accuracy")
    names = [f"a long label number {i}: sigma=0.25, n=100000, examples=500" for i in range(4)]
    crowded = draw_curves(dict.fromkeys(names, curve), "certified accuracy\nsecond line")
    for fig in (alone, crowded):
        box = fig.axes[0].get_position()  # in figure fractions
        width, height = fig.get_size_inches()
        assert (box.width * width, box.height * height) == pytest.approx(AXES_SIZE)
    renderer = crowded.canvas.get_renderer()
    axes_box = crowded.axes[0].get_window_extent(renderer)
    legend_box = crowded.axes[0].get_legend().get_window_extent(renderer)
    assert legend_box.x0 >= axes_box.x1  # beside the axes, covering no curve
    assert [t.get_text() for t in crowded.axes[0].get_legend().get_texts()] == names
    assert alone.axes[0].get_legend() is None
    plt.close("all")


def test_lone_run_title_states_protocol_and_acr(tmp_path):
    result = report.load_result(write_run(tmp_path / "certify.tsv", [0.5, -1, 0.25], n=500))
    title = report.curves_title([result])
    protocol = "digits, n0=100, n=500, alpha=0.001, 3 examples"
    assert title == f"certified accuracy\n{protocol}, ACR={result.acr:.3f}"


def sweep_job(sweep: Path, num: int, sigma: str, radii: list[float]) -> None:
    """A job that wrote certify.tsv and certification_summary.json (ACR as its objective)."""
    job = sweep / f"{num}_sigma{sigma}"
    result = report.load_result(write_run(job / "certify.tsv", radii, float(sigma)))
    summary = {"cert/acr": result.acr, "cert/num_examples": float(len(radii))}
    content = {"certifier": "cohen", "objective": "cert/acr", "objective_mode": "max"}
    content.update(value=result.acr, summary=summary)
    (job / "certification_summary.json").write_text(json.dumps(content))
    (job / ".hydra").mkdir()
    (job / ".hydra" / "overrides.yaml").write_text(f"- sigma={sigma}\n")


def test_objectives_plot_shares_the_curves_colours_and_marks_the_best(tmp_path, figures):
    sweep = tmp_path / "multirun"
    for num, (sigma, radii) in enumerate(
        {"0.12": [0.1, 0.1], "0.25": [0.9, 0.4], "0.5": [0.2, -1]}.items()
    ):
        sweep_job(sweep, num, sigma, radii)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}, "logger": None})
    SweepSummary().on_multirun_end(config)
    objectives, curves = [f for f in figures if f is not None]
    title = objectives._suptitle.get_text()
    assert "objective per job" in title and "best" in title and "digits" in title
    axis = objectives.axes[0]
    jobs = [t.get_text() for t in axis.get_yticklabels()]
    assert jobs == ["sigma=0.12", "sigma=0.25", "sigma=0.5"]
    bars = axis.patches
    best = [bar.get_hatch() for bar in bars]
    assert best == [None, "//", None]  # sigma=0.25 has the largest ACR
    assert [t.get_text() for t in axis.texts if "best" in t.get_text()] == [
        f"{(0.9 + 0.4) / 2:.4g}  best"
    ]
    lines = {
        line.get_label().split(", ACR=")[0]: line.get_color() for line in curves.axes[0].get_lines()
    }
    for job, bar in zip(jobs, bars, strict=True):
        assert plt.matplotlib.colors.to_hex(bar.get_facecolor()) == plt.matplotlib.colors.to_hex(
            lines[job]
        )
    assert len(set(lines.values())) == 3


def test_write_objectives_alone_titles_and_colours(tmp_path, figures):
    rows = [
        {
            "job": "a",
            "certifier": "center",
            "objective": "cert/l2/eps_out@0.25",
            "mode": "min",
            "value": 0.3,
            "best": "",
        },
        {
            "job": "b",
            "certifier": "center",
            "objective": "cert/l2/eps_out@0.25",
            "mode": "min",
            "value": 0.1,
            "best": "*",
        },
    ]
    write_objectives(rows, tmp_path, {"a": "#123456", "b": "#abcdef"}, "sweep: shapes")
    (fig,) = figures
    assert fig._suptitle.get_text().endswith("\nsweep: shapes")
    colours = [plt.matplotlib.colors.to_hex(b.get_facecolor()) for b in fig.axes[0].patches]
    assert colours == ["#123456", "#abcdef"]
    assert "lower is better" in fig.axes[0].get_xlabel()


def test_overlay_has_a_legend_of_the_classes_shown(tmp_path, figures):
    mask = torch.tensor([[0, 1], [2, 255]])
    base = torch.tensor([[0, 1], [1, 1]])
    certified = torch.tensor([[0, -1], [1, 1]])
    image = torch.rand(3, 2, 2)
    names = ("background", "disc", "square", "triangle")
    save_overlay(tmp_path / "o.png", image, mask, base, certified, 4, 255, class_names=names)
    (fig,) = figures
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["background", "disc", "square", "abstain", "ignored"]  # no triangle shown
    # Without names: numbered classes.
    save_overlay(tmp_path / "p.png", image, mask, base, certified, 4, 255)
    assert [t.get_text() for t in figures[-1].legends[0].get_texts()][:2] == ["class 0", "class 1"]


def test_counts_print_as_integers():
    line = say_scalars(
        {"cert/acc@0.50": 0.685, "cert/acr": 0.5521, "cert/num_examples": 200.0}, "cert/"
    )
    assert line == "acc@0.50=0.685, acr=0.552, num_examples=200"
