"""The structured-output certification callbacks (SegCertify, center, median) write the records,
curve tables and summary they wrote before issue 22 thinned them, bit for bit.

``tests/test_pinned_records.py`` pins the certifiers' core entry points; this pins what the
callbacks make of them: each case runs one callback in-process (``trainer.test``, as certify.py
does) on a tiny model and compares its record TSVs and curve TSVs (the ``time`` columns left out)
and its ``certification_summary.json`` (the ``time`` keys left out) with
``tests/fixtures/pinned_callbacks/<case>.json``. The fixtures were written by the callbacks of
``main`` before the thinning (commit 16df2eb).

Regenerate (only when a change of records is intended and explained):

    SMOOTHCERT_REGENERATE_PINS=1 pytest -n 0 tests/test_pinned_callback_records.py
"""

from __future__ import annotations

import json
import os
import warnings
from hashlib import sha256
from pathlib import Path

import pytorch_lightning as pl
import torch
from center.toy import ToyData, ToyStructured, trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks.certification.center import CenterCertification
from callbacks.certification.median import MedianCertification
from callbacks.certification.segcertify import SegCertifyCertification
from lightning_modules.base import Contract
from smoothcert.noise import GaussianNoise

PINS = Path(__file__).parent / "fixtures" / "pinned_callbacks"
REGENERATE = os.environ.get("SMOOTHCERT_REGENERATE_PINS") == "1"
LARGE = 20_000  # characters: a larger TSV is pinned by its hash


def written(folder: Path) -> dict:
    """The TSVs in ``folder`` (rows as cells, without the ``time`` column; ``#`` lines kept; a
    large one as the sha256 of its rows) and the summary (without its ``time`` keys)."""
    files = {}
    for path in sorted(folder.glob("*.tsv")):
        rows, keep = [], None
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                rows.append([line])
                continue
            cells = line.split("\t")
            keep = keep or [i for i, name in enumerate(cells) if name != "time"]
            rows.append([cells[i] for i in keep])
        text = json.dumps(rows)
        files[path.name] = (
            rows if len(text) < LARGE else {"sha256": sha256(text.encode()).hexdigest()}
        )
    summary = json.loads((folder / "certification_summary.json").read_text(encoding="utf-8"))
    summary["summary"] = {k: v for k, v in summary["summary"].items() if "time" not in k}
    files["certification_summary.json"] = summary
    return files


def check(name: str, folder: Path) -> None:
    path = PINS / f"{name}.json"
    got = json.loads(json.dumps(written(folder)))
    if REGENERATE:
        PINS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(got, separators=(",", ":")) + "\n", encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: SMOOTHCERT_REGENERATE_PINS=1 writes it"
    want = json.loads(path.read_text(encoding="utf-8"))
    assert sorted(got) == sorted(want), f"{name}: other files"
    for file in want:
        assert got[file] == want[file], f"{name}: {file} changed (fixture {path.name})"


def run(callback: pl.Callback, module: pl.LightningModule, data: pl.LightningDataModule) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(callbacks=[callback]).test(module, datamodule=data)


class SegData(pl.LightningDataModule):
    """Six 1x8x8 images in [0, 1] with 3-class masks (one ignored pixel each)."""

    def __init__(self) -> None:
        super().__init__()
        x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        y = (x[:, 0] > 0.5).long() + (x[:, 0] > 0.8).long()
        y[:, 0, 0] = 255
        self.splits = {s: TensorDataset(x, y) for s in ("train", "val", "test")}

    def dataset(self, split: str) -> TensorDataset:
        return self.splits[split]

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=2)


class ToySegmenter(pl.LightningModule):
    """A fixed two-layer convolutional segmenter of 3 classes (ignore index 255)."""

    task, output_kind = "segmentation", "label_map"

    def __init__(self) -> None:
        super().__init__()
        settings = {"num_classes": 3, "ignore_index": 255, "dataset": "toyseg"}
        self.save_hyperparameters({**settings, "mean": [0.5], "std": [0.25]})
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))
        with torch.no_grad():
            self.net[-1].weight.mul_(8.0)

    def inference_model(self, scale=None, flip=None) -> nn.Module:
        return self.net

    def structured_output(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).argmax(1)

    def test_step(self, batch, batch_idx) -> None:
        return None

    def contract(self) -> Contract:
        noise, output = GaussianNoise(0.25), self.structured_output
        return Contract(
            self.task,
            self.output_kind,
            self.net,
            (),
            noise,
            3,
            output,
            self.inference_model,
            ignore_index=255,
        )


def test_segcertify_records_per_tau_jointly(tmp_path):
    settings = {"n0": 10, "n": 60, "tau": [0.6, 0.75], "joint": True, "correction": "bonferroni"}
    selection = {"num_examples": 3, "num_overlays": 2, "split": "test", "seed": 3}
    callback = SegCertifyCertification(0.25, str(tmp_path), **settings, **selection)
    run(callback, ToySegmenter(), SegData())
    check("segcertify", tmp_path)


def test_center_records_at_two_sigmas_and_two_distances(tmp_path):
    fast = {"n": 1000, "m": 2000, "delta": 0.2, "batch_size": 64, "num_examples": 3}
    settings = {"sigma": [0.25, 0.5], "h": [0.5, 1.0], "distance": ["l2", "tv"], "num_images": 1}
    run(
        CenterCertification(output_dir=str(tmp_path), **fast, **settings),
        ToyStructured(),
        ToyData(),
    )
    check("center", tmp_path)


def test_median_box_records_and_expectation(tmp_path):
    settings = {"sigma": 0.25, "eps": [0.1, 0.25], "n": 200, "alpha": 0.01, "num_examples": 3}
    callback = MedianCertification(
        output_dir=str(tmp_path), batch_size=64, output_range=[0.0, 1.0], **settings
    )
    run(callback, ToyStructured("box"), ToyData())
    check("median_box", tmp_path)


def oracle_detector(data: ToyData):
    """A detector (``DetectionModule``) that finds the shapes of the nearest clean test image,
    shifted by the noise's mean, plus one extra box: nontrivial AP and certified boxes."""
    from lightning_modules.detection import DetectionModule
    from smoothcert.models.detector import GridDetector

    clean = torch.stack([data.splits["test"][i][0] for i in range(4)])
    targets = torch.stack([data.splits["test"][i][1] for i in range(4)])

    class Oracle(DetectionModule):
        def detect(self, x):
            nearest = ((x[:, None] - clean[None]) ** 2).flatten(2).sum(-1).argmin(1)
            found = targets[nearest]
            shift = 0.2 * torch.tanh((x - clean[nearest]).mean((1, 2, 3)))[:, None, None]
            boxes = (found[..., 1:] + shift).clamp(0, 1)
            scores = torch.where(found[..., 0] > 0, 0.9 + shift[..., 0] / 4, 0.0)
            extra = torch.tensor([[0.1, 0.1, 0.3, 0.3]]).expand(len(x), 1, 4) + shift
            return (
                torch.cat([boxes, extra], 1),
                torch.cat([scores, 0.6 + 0 * scores[:, :1]], 1),
                torch.cat([found[..., 0].long(), torch.ones_like(nearest)[:, None]], 1),
            )

    torch.manual_seed(5)
    net, normalization = GridDetector(3, 4, 4, 3), ([0.5] * 3, [0.25] * 3)
    return Oracle(net, GaussianNoise(0.25), None, 3, *normalization)


class DetectionData(ToyData):
    def __init__(self) -> None:
        from smoothcert.data.detection import ShapeDetectionDataset

        super().__init__()
        self.splits = {s: ShapeDetectionDataset(4, s) for s in ("train", "val", "test")}

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=1)


def test_median_detection_records_and_ap_table(tmp_path):
    data = DetectionData()
    settings = {"eps": [0.05, 0.1], "n": 100, "alpha": 0.01, "num_examples": 4, "num_images": 2}
    callback = MedianCertification(0.25, str(tmp_path), **settings)
    run(callback, oracle_detector(data), data)
    check("median_detection", tmp_path)
