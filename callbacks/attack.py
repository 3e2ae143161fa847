"""``attack=``: empirical robustness beside the certified curve. After Cohen's CERTIFY, each
certified example is attacked at a grid of radii and at multiples of its certified radius, in the
certificate's norm (l2, l1 or linf), and PREDICT answers at each adversarial point."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from pytorch_lightning import LightningModule, Trainer

from callbacks.attack_base import AttackCallback
from callbacks.attack_report import attack_section, empirical_summary
from callbacks.certification.cohen import CohenCertification
from callbacks.certification.settings import PLAIN
from callbacks.certification.settings.attack import EmpiricalSettings
from smoothcert.attacks.empirical import ATTACKS, attack_example, attack_generators
from smoothcert.attacks.smoothed_pgd import ATTACK_NORMS
from smoothcert.certifiers.classification import Smooth
from smoothcert.errors import require
from smoothcert.metrics.certified import certified_accuracy_curve, radius_grid
from smoothcert.noise.base import canonical_norm
from smoothcert.records.empirical import EMPIRICAL_SCHEMA, EmpiricalRecord
from smoothcert.report.parts import Report


class EmpiricalRobustness(AttackCallback):
    """Attacks (``attack``: ``smoothed_pgd`` or ``base``) the examples its certifier
    (``certifier``: Cohen's callback of the same run) certified, at every radius of ``radii`` and
    at ``multiples`` of each correctly certified example's radius, then runs PREDICT(``n``,
    ``alpha``) at each adversarial point. The radii are in ``norm`` (l1, l2, linf; None: the
    norm of Cohen's radii, e.g. l1 for Laplace noise; another than that is a one-line error).

    Rank 0 writes ``empirical.tsv`` (one line per example and radius), the certified curve and
    the empirical robust accuracy in one figure (``certified_vs_empirical.tsv``/``.png``), the
    scalars ``attack/acc@<r>``, ``attack/success@<m>R`` (PREDICT names a wrong class) and
    ``attack/success_or_abstain@<m>R`` to every logger, and ``empirical_summary.json``.

    Soundness check: inside the certified radius (multiples <= 1) PREDICT may disagree with the
    certified class only at rate ``alpha_certify + alpha``; more disagreements than that rate
    allows (p-value < 0.001) is warned about and recorded (``attack/inside_pvalue``).
    """

    tasks, fits = ("classification", "denoised_classification"), CohenCertification
    key, schema, header_name = "empirical", EMPIRICAL_SCHEMA, "empirical"
    objective, targets = "attack/acc@0.50", "classifiers"
    instead = "use attack=seg_pgd for segmentation"
    needs = "attacks at multiples of Cohen's certified radii"

    settings_type, norms = EmpiricalSettings, ATTACK_NORMS
    takes = (*PLAIN, "norm")
    selection = {"batch_size": 1000, "num_examples": 200, "split": "test"}

    def __init__(self, attack: str, sigma: float, output_dir: str, **settings: Any) -> None:
        self.option, self.attack = f"attack={attack}", attack
        require(attack in ATTACKS, f"attack={attack} is unknown: use {', '.join(ATTACKS)} or none")
        super().__init__(sigma, output_dir, **settings)
        self.settings = self.config.header(attack)

    def smooth_with(self, noise=None, norm: str | None = None, perturbation=None) -> None:
        """Keeps ``norm`` (the attack smooths with its certifier's noise, read in ``begin``)."""
        self.norm = None if norm is None else canonical_norm(norm)

    def prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().prepare(trainer, pl_module)
        if self.norm != "l2":  # the header of l2 attacks stays as it was
            self.settings["norm"] = self.norm

    def begin(self, trainer: Trainer, pl_module: LightningModule) -> None:
        cohen, contract = self.certifier, pl_module.contract()
        self.certified = {r.idx: r for r in cohen.records}
        self.alphas, self.device = (cohen.alpha, self.alpha), pl_module.device
        noise = {"noise": cohen.noise, "norm": self.norm}
        self.smooth = Smooth(contract.base_function, contract.num_classes, cohen.sigma, **noise)

    def certify_one(self, idx: int, example, needed: Sequence[str]) -> dict[str, EmpiricalRecord]:
        x, label = torch.as_tensor(example[0]).to(self.device), int(example[1])
        record = self.certified[idx]
        radius = record.radius if record.correct else 0.0
        targets, epsilons = ["grid"] * len(self.radii), list(self.radii)
        if radius > 0:
            targets += [f"{k:.2f}R" for k in self.multiples]
            epsilons += [k * radius for k in self.multiples]
        sizes = (self.steps, self.m, self.n, self.alpha, self.batch_size)
        generators = attack_generators(self.seed, idx, self.device)
        predicts = attack_example(
            self.smooth, self.attack, x, label, epsilons, sizes, generators, self.norm or "l2"
        )
        row = EmpiricalRecord(idx, label, radius, tuple(targets), tuple(epsilons), tuple(predicts))
        return {"empirical": row}

    def build_report(self, pl_module: LightningModule) -> Report:
        summary, acc = empirical_summary(self.records, self.radii, self.multiples, self.alphas)
        cohen = list(self.certified.values())
        grid = radius_grid(cohen)
        certified = certified_accuracy_curve(cohen, grid).tolist()
        curves = {"certified (Cohen CERTIFY)": (grid.tolist(), certified)}
        curves[f"empirical ({self.attack} + PREDICT)"] = (self.radii, acc)
        norm = "" if self.norm in (None, "l2") else f", {self.norm}"
        title = f"Certified vs empirical ({self.attack}{norm}), sigma={self.sigma}"
        table = ", ".join(f"{k}={v:.3f}" for k, v in summary.items() if math.isfinite(v))
        columns, stem = ("empirical", "radius", "accuracy"), "certified_vs_empirical"
        line = f"empirical: {table}"
        axis = f"{self.norm} radius" if norm else "radius"
        section = attack_section(stem, columns, "accuracy", curves, title, summary, line, axis)
        return Report([section])
