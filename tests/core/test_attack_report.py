"""The attacks report through the one report pattern: ``build_report`` returns a ``Report`` (the
certified curve beside the attacked one, ``attack/*`` scalars, the summary line) and the base
class publishes it; no attack writes its own report."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from callbacks.attack import EmpiricalRobustness
from callbacks.attack_base import AttackCallback
from callbacks.seg_attack import SegmentationAttack
from smoothcert.records import CohenRecord
from smoothcert.records.empirical import EmpiricalRecord
from smoothcert.report.parts import Points


@pytest.mark.parametrize("attack", [AttackCallback, EmpiricalRobustness, SegmentationAttack])
def test_no_attack_publishes_its_own_report(attack):
    assert "report" not in vars(attack) and "publish" not in vars(attack)


def test_the_empirical_report_is_certified_beside_attacked(tmp_path):
    attack = EmpiricalRobustness("smoothed_pgd", 0.25, str(tmp_path), radii=[0.0, 0.5], n=50)
    attack.certified = {0: CohenRecord(0, 1, 1, 0.4, 1, 0.1), 1: CohenRecord(1, 2, 0, 0.0, 0, 0.1)}
    attack.alphas = (0.001, 0.001)
    attack.records = [
        EmpiricalRecord(0, 1, 0.4, ("grid", "grid", "1.00R"), (0.0, 0.5, 0.4), (1, 0, 1)),
        EmpiricalRecord(1, 2, 0.0, ("grid", "grid"), (0.0, 0.5), (2, -1)),
    ]
    report = attack.build_report(None)
    (section,) = report.sections
    assert isinstance(section.curve, Points) and section.curve.stem == "certified_vs_empirical"
    assert [row for row in section.curve.rows if row[0] == 1.0] == [
        [1.0, 0.0, 1.0],
        [1.0, 0.5, 0.0],
    ]
    assert {row[0] for row in section.curve.rows} == {0.0, 1.0}  # 0: the certified curve
    assert report.summary["attack/acc@0.00"] == 1.0 and report.summary["attack/acc@0.50"] == 0.0
    assert section.lines[0].startswith("empirical: attack/acc@0.00=1.000, attack/acc@0.50=0.000")
    attack.report(SimpleNamespace(loggers=[], global_step=0), None)  # the base class publishes
    assert str(attack.summary) == str(report.summary)  # nan where nothing was attacked at k R
    lines = (tmp_path / "certified_vs_empirical.tsv").read_text().splitlines()
    assert lines[0] == "empirical\tradius\taccuracy" and lines[-2:] == [
        "1.0\t0.0\t1.0",
        "1.0\t0.5\t0.0",
    ]
    assert (tmp_path / "certified_vs_empirical.png").is_file()
