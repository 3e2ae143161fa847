"""Cohen et al.'s PREDICT on held-out examples: the smoothed classifier's clean accuracy at a
chosen n and alpha (their ``predict.py``), streamed, sharded and resumed like CERTIFY."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from pytorch_lightning import LightningModule, Trainer

from callbacks.certification.base import CertificationCallback, Item
from callbacks.certification.settings import Configured
from callbacks.certification.settings.classification import PredictSettings
from smoothcert.certifiers.classification import ABSTAIN, Smooth
from smoothcert.noise import example_generator
from smoothcert.records.predict import PREDICT_SCHEMA, PredictRecord
from smoothcert.report.classification import predict_section
from smoothcert.report.parts import Report


class PredictCertification(Configured, CertificationCallback):
    """PREDICT(n, alpha) of each example with ``noise`` (None: Gaussian) at ``sigma``, its noise
    seeded by ``(seed, index)``: the top class of n noisy samples, or abstain unless a two-sided
    binomial test of the top two counts rejects a tie at level alpha (so each answer differs from
    the smoothed classifier's with probability at most alpha). Rank 0 writes ``predict.tsv``
    (Cohen's columns ``idx label predict correct time``) and ``predict/acc``,
    ``predict/abstain`` and ``predict/num_examples``; the objective is ``predict/acc``. This is
    an accuracy, not a certificate: no radius."""

    option, tasks = "predict", ("classification", "denoised_classification")
    objective, objective_mode, progress = "predict/acc", "max", "predict"
    settings_type = PredictSettings
    selection = {"batch_size": 1000, "num_examples": 500, "split": "test"}

    def __init__(self, sigma: float, output_dir: str, **settings: Any) -> None:
        super().__init__(sigma, output_dir, **settings)
        self.settings = {"n": self.n, "alpha": self.alpha}
        self.records: list[PredictRecord] = []

    def schemas(self) -> dict:
        return {"predict": PREDICT_SCHEMA}

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str = "") -> dict:
        return self.header(pl_module, checkpoint, "predict", self.settings)

    def start(self, trainer: Trainer, pl_module: LightningModule) -> AbstractContextManager:
        contract, self.device = pl_module.contract(), pl_module.device
        dtype = torch.bfloat16 if self.bf16 else None
        model, classes = contract.base_function, contract.num_classes
        self.smooth = Smooth(model, classes, self.sigma, autocast_dtype=dtype, noise=self.noise)
        return super().start(trainer, pl_module)

    def describe(self, todo: int, total: int, world: int) -> str:
        return (
            f"predicting {todo} of {total} {self.split} {self.noun} ({total - todo} already "
            f"done): n={self.n} alpha={self.alpha} {self.noise.name} sigma={self.sigma} on "
            f"{world} process(es)"
        )

    def certify_group(self, items: Sequence[Item]) -> Iterator[dict[str, PredictRecord]]:
        for idx, (x, label, *_), _ in items:
            started = time.perf_counter()
            x = torch.as_tensor(x).to(self.device)
            generator = example_generator(self.seed, idx, self.device)
            guess = self.smooth.predict(x, self.n, self.alpha, self.batch_size, generator)
            seconds = time.perf_counter() - started
            correct = int(guess != ABSTAIN and guess == int(label))
            yield {"predict": PredictRecord(idx, int(label), guess, correct, seconds)}

    def keep(self, records: Mapping[str, list[PredictRecord]]) -> None:
        self.records = records["predict"]

    def build_report(self, pl_module: LightningModule) -> Report:
        predictions = [r.predict for r in self.records]
        return Report([predict_section(predictions, [r.correct for r in self.records])])
