"""One report pattern for every certifier (issue 22): a certifier builds a ``Report`` (sections of
curve, scalars and lines, figures, where the records are) and the base class publishes it; and no
certification callback overrides the base class's loop or reads the module's attributes."""

from __future__ import annotations

import ast
import logging
from types import SimpleNamespace

import pytest

from callbacks.reporting import publish
from conftest import ROOT
from smoothcert.records import CohenRecord
from smoothcert.report.classification import certified_section
from smoothcert.report.parts import Curve, Report, Section


class RecordingLogger:
    """Stands in for a Lightning logger: keeps each ``log_metrics`` call."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def log_metrics(self, metrics, step=None) -> None:
        self.calls.append(dict(metrics))

    def save(self) -> None:
        pass


def trainer_with(logger: RecordingLogger) -> SimpleNamespace:
    return SimpleNamespace(loggers=[logger], logger=logger, is_global_zero=True, global_step=0)


def test_publish_writes_each_section_in_order(tmp_path, caplog) -> None:
    """Each section's curve becomes stem.tsv/.png logged with its own scalars, a section without
    a curve logs its scalars alone, the lines are said in order, then where the files are."""
    curve = Curve("est", "radius", [0.0, 0.5], {"est": [1.0, 0.25]}, "title", x_label="deg")
    report = Report(
        [
            Section({"heuristic/rotation/acr": 0.3}, curve, ["estimated: first"]),
            Section({"heuristic/rotation/extra": 0.5}, None, ["estimated: second"]),
        ],
        records="RECORDS",
    )
    logger = RecordingLogger()
    with caplog.at_level(logging.INFO):
        publish(trainer_with(logger), tmp_path, report, sound=False)
    assert (tmp_path / "est.tsv").read_text() == "radius\test\n0.0\t1.0\n0.5\t0.25\n"
    assert (tmp_path / "est.png").stat().st_size > 0
    assert logger.calls == [{"heuristic/rotation/acr": 0.3}, {"heuristic/rotation/extra": 0.5}]
    said = [r.getMessage() for r in caplog.records]
    assert said[:3] == ["estimated: first", "estimated: second", "records: RECORDS"]
    assert said[3] == f"curve:   {tmp_path / 'est.tsv'} and {tmp_path / 'est.png'}"
    assert report.summary == {"heuristic/rotation/acr": 0.3, "heuristic/rotation/extra": 0.5}


@pytest.mark.parametrize("with_curve", [True, False])
def test_a_heuristic_report_may_not_claim_a_certificate(tmp_path, with_curve) -> None:
    curve = Curve("est", "radius", [0.0], {"est": [1.0]}, "title") if with_curve else None
    report = Report([Section({"cert/acr": 0.3}, curve)], records="R")
    with pytest.raises(ValueError, match="a heuristic may not log under cert/"):
        publish(trainer_with(RecordingLogger()), tmp_path, report, sound=False)


def test_the_certified_section_is_cohens_curve_and_line() -> None:
    """Two examples, one certified at 0.6 and one wrong: the scalars under the prefix, an amended
    value in place, extra scalars appended to the line with their full keys."""
    records = [CohenRecord(0, 1, 1, 0.6, 1, 0.0), CohenRecord(1, 2, 3, 0.2, 0, 0.0)]
    section = certified_section(
        records, [0.0, 0.5], "cert/l1/", "T", "l1 radius", amend={"clean_acc": 0.25},
        extra={"cert/l1/acc@gamma=2": 1.0},
    )  # fmt: skip
    assert section.scalars["cert/l1/acc@0.50"] == 0.5 and section.scalars["cert/l1/acr"] == 0.3
    assert section.scalars["cert/l1/clean_acc"] == 0.25
    assert section.lines == [
        "certified: acc@0.00=0.500, acc@0.50=0.500, acr=0.300, abstain=0.000, clean_acc=0.250, "
        "num_examples=2, cert/l1/acc@gamma=2=1.000"
    ]
    assert section.curve.title == "T: ACR=0.300" and section.curve.stem == "certified_accuracy"


def _certification_classes():
    for path in sorted((ROOT / "callbacks" / "certification").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name != "CertificationCallback":
                yield path, node


def test_no_certification_callback_overrides_the_loop() -> None:
    overriding = [
        f"{path.name}:{cls.name}"
        for path, cls in _certification_classes()
        for item in cls.body
        if isinstance(item, ast.FunctionDef) and item.name == "certify"
    ]
    assert not overriding, f"override certify_one/certify_group/begin instead: {overriding}"


def test_certification_callbacks_read_the_classes_from_the_contract() -> None:
    reading = [
        path.name
        for path in (ROOT / "callbacks" / "certification").glob("*.py")
        if "hparams.num_classes" in path.read_text(encoding="utf-8")
    ]
    assert not reading, f"read pl_module.contract().num_classes instead: {reading}"
