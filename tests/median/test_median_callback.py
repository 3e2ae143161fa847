"""The median-smoothing callback on a toy box model: records, header, resume, batch-size
invariance, and the one-line errors before certifying."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from center.toy import ToyData, ToyStructured, trainer

from callbacks.certification.median import MedianCertification
from smoothcert.errors import ConfigError
from smoothcert.records.median import median_schema

FAST = {"sigma": 0.25, "eps": [0.1, 0.25], "n": 200, "alpha": 0.01, "num_examples": 2}


def certify(out: Path, kind: str = "box", **settings) -> MedianCertification:
    callback = MedianCertification(output_dir=str(out), **{**FAST, "batch_size": 64, **settings})
    trainer(callbacks=[callback]).test(ToyStructured(kind), datamodule=ToyData())
    return callback


def test_records_header_and_figures(tmp_path: Path) -> None:
    callback = certify(tmp_path, output_range=[0.0, 1.0], guarantee="simultaneous")
    meta, records = median_schema().read(tmp_path / "median.tsv")
    assert [r.idx for r in records] == [0, 1]
    assert (
        meta["guarantee"] == "simultaneous"
        and "all 4 coordinates at once" in meta["guarantee_statement"]
    )
    record = records[0]
    assert record.lower.shape == (2, 4)
    assert np.all(record.lower <= record.estimate) and np.all(record.estimate <= record.upper)
    assert np.all(record.upper[1] - record.lower[1] >= record.upper[0] - record.lower[0])
    _, expected = median_schema("expectation").read(tmp_path / "expectation.tsv")
    assert np.all(expected[0].lower <= expected[0].estimate)
    assert (tmp_path / "median_curve.png").exists() and (tmp_path / "median_curve.tsv").exists()
    assert len(list((tmp_path / "median_examples").glob("median_box_*.png"))) == 2
    assert math.isfinite(callback.summary["cert/median/width@0.1"])


def test_resume_and_batch_size_invariance(tmp_path: Path) -> None:
    certify(tmp_path / "a", num_examples=1)
    certify(tmp_path / "a", num_examples=2, resume=True)
    certify(tmp_path / "b", num_examples=2, batch_size=37)
    meta, resumed = median_schema().read(tmp_path / "a" / "median.tsv")
    # a box's default guarantee is per box (issue 20 item 4), and the header says which split
    assert meta["guarantee"] == "per_box"
    assert math.isclose(float(meta["alpha_per_bound"]), FAST["alpha"] / 8)
    assert "all 4 coordinates of each box at once" in meta["guarantee_statement"]
    _, fresh = median_schema().read(tmp_path / "b" / "median.tsv")
    assert [r.idx for r in resumed] == [0, 1]
    for a, b in zip(resumed, fresh, strict=True):
        assert np.array_equal(a.lower, b.lower) and np.array_equal(a.upper, b.upper)


class IntegerOutput(ToyStructured):
    def structured_output(self, x: torch.Tensor) -> torch.Tensor:
        return super().structured_output(x).long()


@pytest.mark.parametrize(
    ("settings", "model", "message"),
    [
        ({"n": 20}, ToyStructured("box"), r"use certify.n >= \d+"),
        ({}, ToyStructured("label_map"), "certify=median needs a model whose structured_output"),
        ({}, IntegerOutput("box"), "real vector"),
        ({"output_range": [0.0, 0.1]}, ToyStructured("box"), "certify.output_range"),
        ({"guarantee": "per_box"}, ToyStructured("vector"), "per_box needs outputs made of boxes"),
    ],
)
def test_errors_before_certifying(tmp_path: Path, settings: dict, model, message: str) -> None:
    callback = MedianCertification(output_dir=str(tmp_path), **{**FAST, **settings})
    with pytest.raises(ConfigError, match=message) as error:
        trainer(callbacks=[callback]).test(model, datamodule=ToyData())
    assert "\n" not in str(error.value)
    assert not (tmp_path / "median.tsv").exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"p": 1.2}, "certify.p"), ({"eps": [-0.1]}, "certify.eps"), ({"method": "x"}, "method")],
)
def test_settings_fail_on_construction(tmp_path: Path, settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MedianCertification(output_dir=str(tmp_path), **{**FAST, **settings})


class ToyDetectionData(ToyData):
    """Two 32x32 shapes images per split, with their detection targets."""

    def __init__(self) -> None:
        from smoothcert.data.detection import ShapeDetectionDataset

        super().__init__()
        self.splits = {s: ShapeDetectionDataset(2, s) for s in ("train", "val", "test")}

    def test_dataloader(self):
        return torch.utils.data.DataLoader(self.splits["test"], batch_size=1)


def test_detection_report_keys_and_guarantee(tmp_path: Path) -> None:
    """Issue 20 item 4: a detector's bounds are per slot by default (alpha / 12: box, score and
    label); only the proven AP lower bound and the certified share are under cert/; the AP of
    the certified boxes, no bound, is under eval/; the TSV says which guarantee each column has."""
    from lightning_modules.detection import DetectionModule
    from smoothcert.models.detector import GridDetector
    from smoothcert.noise import GaussianNoise

    module = DetectionModule(
        GridDetector(3, 4, 4, 3), GaussianNoise(0.25), None, 3, [0.5] * 3, [0.25] * 3
    )
    callback = MedianCertification(
        output_dir=str(tmp_path), **{**FAST, "eps": [0.1], "n": 100, "num_images": 0}
    )
    trainer(callbacks=[callback]).test(module, datamodule=ToyDetectionData())
    meta, _ = median_schema().read(tmp_path / "median.tsv")
    assert meta["guarantee"] == "per_box" and "alpha / 12 per one-sided bound" in str(meta)
    keys = set(callback.summary)
    assert {k for k in keys if k.startswith("cert/")} == {
        "cert/detection/ap50_lower_bound@0.1",
        "cert/detection/certified_fraction@0.1",
    }
    assert "eval/detection/ap50_of_certified_boxes@0.1" in keys
    text = (tmp_path / "detection_ap.tsv").read_text()
    assert "# ap50_of_certified_boxes" in text and "NOT a bound" in text
    assert callback.summary["cert/detection/ap50_lower_bound@0.1"] <= (
        callback.summary["eval/detection/ap50_of_certified_boxes@0.1"] + 1e-9
    ) or math.isnan(callback.summary["cert/detection/ap50_lower_bound@0.1"])


def test_median_reads_the_models_contract_not_its_attributes(tmp_path: Path) -> None:
    """A model with no ``structured_output`` or ``output_kind`` of its own, only a contract that
    states them, gives the records of the model itself (issue 22)."""
    from center.test_center_callback import ContractOnly

    callback = MedianCertification(output_dir=str(tmp_path / "contract"), **FAST)
    trainer(callbacks=[callback]).test(ContractOnly("box"), datamodule=ToyData())
    certify(tmp_path / "module")
    _, by_contract = median_schema().read(tmp_path / "contract" / "median.tsv")
    _, by_module = median_schema().read(tmp_path / "module" / "median.tsv")
    for a, b in zip(by_contract, by_module, strict=True):
        assert np.array_equal(a.lower, b.lower) and np.array_equal(a.estimate, b.estimate)


def test_detection_report_uses_the_kept_clean_outputs_not_a_second_detector_pass(tmp_path):
    """Issue 22: the base AP@50 comes from the detector's outputs at the clean inputs, evaluated
    while certifying; reporting runs the detector only for an example certified by an earlier
    run (resume), once."""
    from lightning_modules.detection import DetectionModule
    from smoothcert.models.detector import GridDetector
    from smoothcert.noise import GaussianNoise

    class Counting(DetectionModule):
        images = 0

        def detect(self, x):
            Counting.images += len(x)
            return super().detect(x)

    reported = []

    class Counted(MedianCertification):
        def build_report(self, pl_module):
            before = Counting.images
            report = super().build_report(pl_module)
            reported.append(Counting.images - before)
            return report

    module = Counting(GridDetector(3, 4, 4, 3), GaussianNoise(0.25), None, 3, [0.5] * 3, [0.25] * 3)
    settings = {**FAST, "eps": [0.1], "n": 100, "num_images": 0}
    for count, resume in ((1, False), (2, True)):
        options = {**settings, "num_examples": count, "resume": resume}
        callback = Counted(output_dir=str(tmp_path), **options)
        trainer(callbacks=[callback]).test(module, datamodule=ToyDetectionData(), verbose=False)
    assert reported == [0, 1]  # resumed: example 0 was certified by the first run
    assert "eval/detection/base_ap50@0.1" in callback.summary
