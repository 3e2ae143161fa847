"""DistSPT (paper 002) at the end of fitting: certified rotation radii in degrees."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager

import torch
from pytorch_lightning import LightningModule, Trainer

from callbacks.certification.base import CertificationCallback
from callbacks.certification.checks import check_radii
from smoothcert.certifiers.distspt import DistSPT
from smoothcert.errors import ConfigError, check_alpha, check_count
from smoothcert.noise import example_generator
from smoothcert.records import COHEN_SCHEMA, CohenRecord, RecordSchema
from smoothcert.report.classification import certified_section
from smoothcert.report.parts import Report
from smoothcert.transforms.rotation import Rotation

DISTSPT_SCHEMA: RecordSchema[CohenRecord] = dataclasses.replace(
    COHEN_SCHEMA, file_name="distspt.tsv", kind="DistSPT"
)


class DistSPTCertification(CertificationCallback):
    """DistSPT of each selected example with the run's ``perturbation=rotation`` (its noise level
    ``sigma`` is the angle's, in degrees; its vignette and filter are the ones trained with):
    ``distspt.tsv`` in Cohen's columns (radius in degrees, the header says so and states the
    attack interval, ``E``, the inner ``sigma_eps`` and the alpha split),
    ``certified_accuracy.tsv``/``.png`` and ``cert/rotation/acc@R`` scalars. Each example's
    angles and noise come from a generator seeded by ``(seed, index)``."""

    option, tasks = "distspt", ("classification",)
    objective, objective_mode = "cert/rotation/acr", "max"

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
        if not isinstance(perturbation, Rotation):
            name = getattr(perturbation, "name", type(perturbation).__name__)
            raise ConfigError(
                f"certify=distspt certifies rotations: set perturbation=rotation (got {name})"
            )
        self.use_perturbation(perturbation, sound=True)  # DistSPT certifies (BaseSPT does not)
        self.rotation, self.noise = perturbation, None  # it draws angles itself; no noise header
        if len(gamma) != 2:
            raise ConfigError(f"certify.gamma={list(gamma)} must be [low, high] degrees")
        self.counts = tuple(
            check_count(v, f"certify.{k}")
            for k, v in zip(("n0", "n0_eps", "n_gamma", "n_eps", "n_error"),
                            (n0, n0_eps, n_gamma, n_eps, n_error), strict=True)
        )  # fmt: skip
        self.alphas = tuple(
            check_alpha(a, f"certify.{k}")
            for k, a in zip(("alpha_gamma", "alpha_eps", "alpha_error"),
                            (alpha_gamma, alpha_eps, alpha_error), strict=True)
        )  # fmt: skip
        self.certifier_args = (tuple(gamma), error_bound, sigma_eps, splits, refinements)
        DistSPT(torch.nn.Identity(), 2, perturbation, *self.certifier_args)  # validates them
        self.radii = check_radii(radii, "rotation (degrees)")
        self.records: list[CohenRecord] = []
        self.settings = {
            "perturbation": "rotation",
            "units": "degrees",
            "gamma": list(gamma),
            "error_bound": error_bound,
            "sigma_eps": sigma_eps,
            **dict(zip(("n0", "n0_eps", "n_gamma", "n_eps", "n_error"), self.counts, strict=True)),
            **dict(zip(("alpha_gamma", "alpha_eps", "alpha_error"), self.alphas, strict=True)),
            "alpha": sum(self.alphas),
            "pipeline": repr(perturbation.pipeline),
        }

    def schemas(self) -> dict[str, RecordSchema]:
        return {"distspt": DISTSPT_SCHEMA}

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str = "") -> dict:
        return self.header(pl_module, checkpoint, "distspt", self.settings)

    def start(self, trainer: Trainer, pl_module: LightningModule) -> AbstractContextManager:
        contract, self.device = pl_module.contract(), pl_module.device
        model, classes = contract.base_function, contract.num_classes
        self.distspt = DistSPT(model, classes, self.rotation, *self.certifier_args)
        return super().start(trainer, pl_module)

    def certify_one(self, idx: int, example, needed) -> dict[str, CohenRecord]:
        x, label = torch.as_tensor(example[0]).to(self.device), int(example[1])
        generator = example_generator(self.seed, idx, self.device)
        result = self.distspt.certify(
            x, *self.counts, self.alphas, self.batch_size, generator=generator
        )
        correct = int(result.prediction == label)
        record = CohenRecord(idx, label, result.prediction, result.radius, correct, result.seconds)
        return {"distspt": record}

    def keep(self, records: Mapping[str, list[CohenRecord]]) -> None:
        self.records = records["distspt"]

    def build_report(self, pl_module: LightningModule) -> Report:
        low, high = self.settings["gamma"]
        title = (
            f"DistSPT rotation, sigma={self.sigma} deg, E={self.settings['error_bound']}, "
            f"attack in [{low}, {high}] deg\n{self.protocol_text(pl_module, len(self.records))}"
        )
        label = "rotation radius (degrees), DistSPT certificate"
        said = "certified (rotation, degrees)"
        args = (self.records, self.radii, self.prefix, title, label, said)
        return Report([certified_section(*args, unit=" deg")])
