"""Median (percentile) smoothing (Chiang et al. 2020) of a real-vector model, through the base
callback: records, resume, sharding, curves, figures, wandb."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager

import torch
from pytorch_lightning import LightningModule, Trainer
from torch import Tensor

from callbacks.certification.base import CertificationCallback
from callbacks.certification.reports.median import median_report, note_detection_columns
from callbacks.certification.settings import Configured, contract_of
from callbacks.certification.settings import median as checks
from smoothcert.certifiers.classification import eval_mode
from smoothcert.certifiers.median import as_output_vectors
from smoothcert.certifiers.median_expectation import expectation_certificate
from smoothcert.records.median import MedianRecord, median_schema
from smoothcert.report.parts import Report


class MedianCertification(Configured, CertificationCallback):
    """Certifies ``num_examples`` examples of ``split`` by percentile smoothing (the settings:
    ``MedianSettings``) of the model's ``structured_output`` (from its contract: a real vector
    per input, a box, a scalar, a detection vector): per eps, certified bounds on every
    coordinate of h_p(x + delta), ||delta||_2 <= eps, holding with probability >= 1 - alpha per
    coordinate, per box or for all coordinates at once (``guarantee``; the header says which).
    With ``output_range: [l, u]`` the same samples also give the expectation bound (paper 000,
    Corollary 1) in ``expectation.tsv``.

    Checked in ``setup``, before training: p in (0, 1), eps >= 0, the guarantee's name, that the
    model's output on the first example is a real vector, and that n gives finite bounds at the
    largest eps (else a one-line error naming the smallest n). Example ``i``'s noise is seeded by
    ``(seed, i)`` (``PercentileSmooth.certify_example``). Rank 0 reports (``reports/median.py``):
    the curves against eps (median interval width; for boxes the median certified IoU with the
    ground truth and the median worst IoU between two certified boxes), ``num_images`` figures
    with the farthest each box edge can move, and for a detector AP@50 against eps.
    """

    option, progress, objective_mode = "median", "median", "min"
    settings_type = checks.MedianSettings
    selection = {"batch_size": 1000, "num_examples": 50, "split": "test"}

    def __init__(self, sigma: float, output_dir: str, **settings) -> None:
        super().__init__(sigma, output_dir, **settings)
        self.smoother = self.config.smoother(self.base, self.noise, self.batch_size)  # checks
        self.objective = f"cert/median/width@{self.smoother.eps[0]:g}"  # detection: see prepare
        self.outputs = 0  # m, from the first example (prepare)

    def base(self, x: Tensor) -> Tensor:
        return as_output_vectors(self.structured(x))

    def check_model(self, pl_module: LightningModule) -> None:
        self.contract = contract_of(pl_module, self.option)
        checks.check_fits(self.contract, type(pl_module).__name__)
        kind = self.contract.output_kind  # its box size decides the default guarantee
        self.smoother = self.config.smoother(self.base, self.noise, self.batch_size, kind)
        self.settings["guarantee"] = self.smoother.guarantee

    def prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        out = self.first_output(trainer, pl_module, self.base)
        self.outputs = out.shape[1]
        if self.contract.detection_layout is not None:
            self.objective = f"cert/detection/ap50_lower_bound@{self.smoother.eps[0]:g}"
            self.objective_mode = "max"
        self.smoother.check_certifiable(self.outputs)
        self.config.check_output(out)

    def schemas(self) -> dict:
        more = {} if self.limits is None else {"expectation": median_schema("expectation")}
        return {"median": median_schema(), **more}

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str) -> dict:
        kind, options = self.contract.output_kind, (key, self.method, self.limits)
        settings = checks.median_header(self.smoother, self.settings, self.outputs, kind, *options)
        certifier = "median" if key == "median" else "median_expectation"
        return self.header(pl_module, checkpoint, certifier, settings)

    def start(self, trainer: Trainer, pl_module: LightningModule) -> AbstractContextManager:
        self.device, self.figures, self.clean = pl_module.device, [], {}
        self.target_of = pl_module.contract().target_of
        return eval_mode(pl_module)

    def certify_one(self, idx: int, example: tuple, needed: Sequence[str]) -> dict:
        began = time.perf_counter()
        x = torch.as_tensor(example[0]).to(self.device)
        drawn = self.smoother.certify_example(x, self.seed, idx)
        result, m = drawn.certificate, drawn.values.shape[1]
        bounds = [t.cpu().numpy() for t in (result.estimate, result.lower, result.upper)]
        target, eps = checks.target_vector(example, m, self.target_of), tuple(result.eps)
        records = {"median": MedianRecord(idx, eps, *bounds, target, time.perf_counter() - began)}
        if self.limits is not None:
            options = (*self.limits, self.method, drawn.rounding)
            mean, lower, upper = expectation_certificate(self.smoother, drawn.values, *options)
            records["expectation"] = MedianRecord(idx, eps, mean, lower.T, upper.T, target, 0.0)
        if self.contract.detection_layout is not None:  # the base AP's outputs at x
            with torch.inference_mode():
                self.clean[idx] = as_output_vectors(self.contract.structured_output(x[None]))[0]
        if self.global_rank == 0 and len(self.figures) < self.num_images:
            self.figures.append((idx, x.cpu(), example[1], records["median"]))
        return {key: records[key] for key in needed}

    def keep(self, records: Mapping[str, list]) -> None:
        self.records = dict(records)

    def build_report(self, pl_module: LightningModule) -> Report:
        return median_report(pl_module, self)

    def report(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().report(trainer, pl_module)  # then: which guarantee each AP column carries
        if self.contract.detection_layout is not None:
            note_detection_columns(self.output_dir, self.smoother.statement(self.outputs))
