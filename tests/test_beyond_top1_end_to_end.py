"""One run with certify.topk and attack=smoothed_pgd, then certify.py's Lipschitz certificate into
the same run directory: every file, and Cohen's certify.tsv columns unchanged."""

from __future__ import annotations

import json

import pytest

from conftest import TINY, run_script


@pytest.mark.slow
def test_topk_attack_and_lipschitz_in_one_run_directory(tmp_path):
    small = ["certify.n=200", "attack.n=100", "attack.m=2", "attack.steps=2"]
    result = run_script(
        "train.py", *TINY, *small, "certify.topk=[1,3]", "attack=smoothed_pgd",
        f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    header = next(line for line in (tmp_path / "certify.tsv").open() if not line.startswith("#"))
    assert header.split() == ["idx", "label", "predict", "radius", "correct", "time"]
    topk = [line.split("\t") for line in (tmp_path / "topk.tsv").open() if line[0].isdigit()]
    assert len(topk) == 6 * 2 and {row[2] for row in topk} == {"1", "3"}
    summary = json.loads((tmp_path / "certification_summary.json").read_text())
    assert summary["objective"] == "cert/acr" and "cert/top3/acc@0.50" in summary["summary"]
    empirical = json.loads((tmp_path / "empirical_summary.json").read_text())["summary"]
    assert {"attack/acc@0.50", "attack/success@1.50R"} <= set(empirical)
    for name in ("certified_topk_accuracy", "certified_vs_empirical"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    result = run_script(
        "certify.py", *TINY, "certify=lipschitz", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    curve = (tmp_path / "certified_accuracy_lipschitz.tsv").read_text().splitlines()
    assert curve[0].split("\t") == ["radius", "lipschitz", "randomized_smoothing_cohen"]
    assert "# lipschitz_constant: " in (tmp_path / "lipschitz.tsv").read_text()
