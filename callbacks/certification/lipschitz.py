"""``certify=lipschitz``: the deterministic Lipschitz-margin certificate (no sampling), its curve
drawn with randomized smoothing's when a Cohen ``certify.tsv`` is at hand."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info

from callbacks.certification.base import Item
from callbacks.certification.classification import ClassificationCertification
from callbacks.certification.settings import PLAIN
from callbacks.certification.settings.classification import LipschitzSettings
from smoothcert.certifiers.lipschitz import LipschitzBound, lipschitz_bound, lipschitz_radius
from smoothcert.records import CohenRecord, RecordSchema
from smoothcert.records.cohen import RESUME_KEYS, parse_cohen
from smoothcert.records.tsv import COHEN_COLUMNS
from smoothcert.report.classification import comparison_records, lipschitz_section
from smoothcert.report.parts import Report
from smoothcert.sampling import eval_mode

LIPSCHITZ_SCHEMA: RecordSchema[CohenRecord] = RecordSchema(
    "lipschitz.tsv",
    COHEN_COLUMNS,
    tuple(k for k in RESUME_KEYS if k not in ("n0", "n", "alpha", "noise", "norm", "sigma")),
    parse_cohen,
    "Lipschitz (Cohen columns)",
)


class LipschitzCertification(ClassificationCertification):
    """Certifies each example with radius ``margin / (2 L)``: margin the gap between the top two
    logits of the base model at x, L an upper bound on the l2 Lipschitz constant of its logit map
    (:func:`~smoothcert.certifiers.lipschitz.lipschitz_bound`, on the certified weights; ``setup``
    checks its layers, so an unsupported one fails before training). Deterministic: ``seed`` and
    ``sigma`` only label the records.

    Rank 0 writes ``lipschitz.tsv`` (Cohen's columns; the header states L and each layer's
    constant), ``certified_accuracy_lipschitz.tsv``/``.png`` with Cohen's curve beside it when
    ``compare_with`` names a Cohen ``certify.tsv`` (default ``auto``: ``certify.tsv`` in the run
    directory, if there is one) and the scalars ``cert/lipschitz/acc@<r>``, ``cert/lipschitz/acr``.
    """

    option, tasks = "lipschitz", ("classification",)
    objective, objective_mode = "cert/lipschitz/acr", "max"
    key, schema = "lipschitz", LIPSCHITZ_SCHEMA
    settings_type, takes = LipschitzSettings, PLAIN
    selection = {"batch_size": 256, "num_examples": 500, "split": "test"}

    def __init__(self, sigma: float, output_dir: str, **settings: Any) -> None:
        super().__init__(sigma, output_dir, **settings)
        self.group_size = int(self.batch_size)
        self.bound: LipschitzBound | None = None

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str = "") -> dict:
        bound = self.bound
        settings = {"norm": "l2", "lipschitz_constant": bound.constant if bound else None}
        if bound is not None:
            settings["layers"] = " ".join(f"{name}={value:.6g}" for name, value in bound.layers)
        return self.header(pl_module, checkpoint, "lipschitz", settings)

    def _bound(
        self, trainer: Trainer, pl_module: LightningModule, estimate: bool = True
    ) -> LipschitzBound:
        first = trainer.datamodule.dataset(self.split)[self.indices(trainer)[0]][0]
        shape = tuple(torch.as_tensor(first).shape)
        return lipschitz_bound(pl_module.contract().base_function, shape, estimate=estimate)

    def prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._bound(trainer, pl_module, estimate=False)  # unsupported layers fail before training

    def begin(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # L of the certified weights, before the record headers (which state it) are written.
        self.bound, self.device = self._bound(trainer, pl_module), pl_module.device
        self.model = pl_module.contract().base_function
        rank_zero_info(f"certify=lipschitz: L <= {self.bound.constant:.6g} (product of layers)")

    def certify_group(self, items: Sequence[Item]) -> Iterator[dict[str, CohenRecord]]:
        start = time.perf_counter()
        xs = torch.stack([torch.as_tensor(example[0]) for _, example, _ in items]).to(self.device)
        with eval_mode(self.model), torch.inference_mode():
            predict, radius = lipschitz_radius(self.model(xs), self.bound.constant)
        share = (time.perf_counter() - start) / len(items)
        for (idx, example, _), c, r in zip(items, predict.tolist(), radius.tolist(), strict=True):
            label = int(example[1])
            yield {"lipschitz": CohenRecord(idx, label, c, r, int(c == label), share)}

    def build_report(self, pl_module: LightningModule) -> Report:
        cohen, constant = (
            comparison_records(self.compare_with, self.output_dir),
            self.bound.constant,
        )
        return Report([lipschitz_section(self.records, self.radii, constant, cohen)])
