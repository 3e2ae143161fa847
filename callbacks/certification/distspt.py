"""DistSPT (paper 002) at the end of fitting: certified rotation radii in degrees."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager

import torch
from pytorch_lightning import LightningModule, Trainer

from callbacks.certification.base import Item
from callbacks.certification.classification import ClassificationCertification
from callbacks.certification.settings import PLAIN
from callbacks.certification.settings.classification import DistSPTSettings
from smoothcert.certifiers.distspt import DistSPT
from smoothcert.records import COHEN_SCHEMA, CohenRecord, RecordSchema
from smoothcert.transforms.rotation import Rotation

DISTSPT_SCHEMA: RecordSchema[CohenRecord] = dataclasses.replace(
    COHEN_SCHEMA, file_name="distspt.tsv", kind="DistSPT"
)


class DistSPTCertification(ClassificationCertification):
    """DistSPT of each selected example with the run's ``perturbation=rotation`` (its noise level
    ``sigma`` is the angle's, in degrees; its vignette and filter are the ones trained with):
    ``distspt.tsv`` in Cohen's columns (radius in degrees, the header says so and states the
    attack interval, ``E``, the inner ``sigma_eps`` and the alpha split),
    ``certified_accuracy.tsv``/``.png`` and ``cert/rotation/acc@R`` scalars. Each example's
    angles and noise come from a generator seeded by ``(seed, index)``."""

    option, tasks = "distspt", ("classification",)
    key, schema, unit = "distspt", DISTSPT_SCHEMA, " deg"
    x_label = "rotation radius (degrees), DistSPT certificate"
    said = "certified (rotation, degrees)"
    settings_type, takes = DistSPTSettings, (*PLAIN, "crash_after")
    selection = {"batch_size": 1000, "num_examples": 100, "split": "test"}

    def __init__(self, sigma: float, output_dir: str, perturbation: Rotation, **settings) -> None:
        super().__init__(sigma, output_dir, perturbation=perturbation, **settings)
        self.certifier_args, c = self.config.certifier_args(), self.config
        DistSPT(torch.nn.Identity(), 2, perturbation, *self.certifier_args)  # validates them
        self.counts, self.alphas = tuple(c.counts().values()), tuple(c.alphas().values())
        self.settings = {**self.perturbation_settings(), "gamma": list(c.gamma)}  # degrees
        self.settings.update(error_bound=c.error_bound, sigma_eps=c.sigma_eps, **c.counts())
        self.settings.update(**c.alphas(), alpha=sum(self.alphas))
        self.settings.update(pipeline=repr(perturbation.pipeline))

    def smooth_with(self, perturbation: Rotation, **_: object) -> None:
        self.use_perturbation(perturbation, sound=True, kind=Rotation)  # BaseSPT does not certify
        self.rotation, self.noise = perturbation, None  # it draws angles itself; no noise header

    def start(self, trainer: Trainer, pl_module: LightningModule) -> AbstractContextManager:
        contract, self.device = pl_module.contract(), pl_module.device
        model, classes = contract.base_function, contract.num_classes
        self.distspt = DistSPT(model, classes, self.rotation, *self.certifier_args)
        return super().start(trainer, pl_module)

    def certify_group(self, items: Sequence[Item]) -> Iterator[dict[str, CohenRecord]]:
        sizes = (*self.counts, self.alphas, self.batch_size)
        for idx, x, label, generator in zip(*self.inputs(items), strict=True):
            r = self.distspt.certify(x, *sizes, generator=generator)
            correct = int(r.prediction == label)
            yield {"distspt": CohenRecord(idx, label, r.prediction, r.radius, correct, r.seconds)}

    def title(self, pl_module: LightningModule) -> str:
        (low, high), e = self.settings["gamma"], self.settings["error_bound"]
        head = f"DistSPT rotation, sigma={self.sigma} deg, E={e}, attack in [{low}, {high}] deg"
        return f"{head}\n{self.protocol_text(pl_module, len(self.records))}"
