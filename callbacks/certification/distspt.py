"""DistSPT (paper 002) at the end of fitting: certified rotation radii in degrees."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager

import torch
from pytorch_lightning import LightningModule, Trainer

from callbacks.certification.base import Item
from callbacks.certification.checks import check_alphas, check_counts, check_radii
from callbacks.certification.classification import ClassificationCertification
from smoothcert.certifiers.distspt import DistSPT
from smoothcert.errors import ConfigError
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

    def __init__(
        self,
        sigma: float,
        output_dir: str,
        perturbation: Rotation,
        gamma: Sequence[float] = (-30.0, 30.0),
        error_bound: float = 0.45,
        sigma_eps: float = 0.25,
        n0: int = 10,
        n0_eps: int = 20,
        n_gamma: int = 100,
        n_eps: int = 500,
        n_error: int = 100,
        alpha_gamma: float = 0.004,
        alpha_eps: float = 0.005,
        alpha_error: float = 0.001,
        splits: int = 32,
        refinements: int = 4,
        batch_size: int = 1000,
        num_examples: int | None = 100,
        skip: int = 1,
        split: str = "test",
        weights: str = "last",
        radii: Sequence[float] = (0.0, 10.0, 20.0, 30.0),
        seed: int = 0,
        resume: bool = False,
        crash_after: int | None = None,
    ) -> None:
        selection = (batch_size, num_examples, skip, split, weights, seed)
        super().__init__(sigma, output_dir, *selection, False, resume, crash_after)
        self.use_perturbation(perturbation, sound=True, kind=Rotation)  # BaseSPT does not certify
        self.rotation, self.noise = perturbation, None  # it draws angles itself; no noise header
        if len(gamma) != 2:
            raise ConfigError(f"certify.gamma={list(gamma)} must be [low, high] degrees")
        counts = check_counts(n0=n0, n0_eps=n0_eps, n_gamma=n_gamma, n_eps=n_eps, n_error=n_error)
        alphas = check_alphas(alpha_gamma=alpha_gamma, alpha_eps=alpha_eps, alpha_error=alpha_error)
        self.counts, self.alphas = tuple(counts.values()), tuple(alphas.values())
        self.certifier_args = (tuple(gamma), error_bound, sigma_eps, splits, refinements)
        DistSPT(torch.nn.Identity(), 2, perturbation, *self.certifier_args)  # validates them
        self.radii = check_radii(radii, "rotation (degrees)")
        self.settings = {**self.perturbation_settings(), "gamma": list(gamma)}  # degrees
        self.settings.update(error_bound=error_bound, sigma_eps=sigma_eps, **counts, **alphas)
        self.settings.update(alpha=sum(self.alphas), pipeline=repr(perturbation.pipeline))

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
