"""``attack=``: empirical robustness beside the certified curve. After Cohen's CERTIFY, each
certified example is attacked at a grid of l2 radii and at multiples of its certified radius, and
PREDICT answers at each adversarial point."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pytorch_lightning import LightningModule, Trainer

from callbacks.attack_base import AttackCallback
from callbacks.attack_report import empirical_summary
from callbacks.certification.cohen import CohenCertification
from smoothcert.attacks.empirical import ATTACKS, attack_example, attack_generators
from smoothcert.certifiers.classification import Smooth
from smoothcert.errors import check_alpha, check_count, require
from smoothcert.metrics.certified import certified_accuracy_curve, radius_grid
from smoothcert.records.empirical import EMPIRICAL_SCHEMA, EmpiricalRecord


class EmpiricalRobustness(AttackCallback):
    """Attacks (``attack``: ``smoothed_pgd`` or ``base``) the examples its certifier
    (``certifier``: Cohen's callback of the same run) certified, at every radius of ``radii`` and
    at ``multiples`` of each correctly certified example's radius, then runs PREDICT(``n``,
    ``alpha``) at each adversarial point.

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

    def __init__(
        self,
        attack: str,
        sigma: float,
        output_dir: str,
        radii: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
        multiples: Sequence[float] = (1.0, 1.5, 2.0),
        steps: int = 20,
        m: int = 16,
        n: int = 1000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        num_examples: int | None = 200,
        skip: int = 1,
        split: str = "test",
        weights: str = "last",
        seed: int = 0,
        resume: bool = False,
        certifier: str = "cohen",
    ) -> None:
        self.option = f"attack={attack}"
        require(attack in ATTACKS, f"attack={attack} is unknown: use {', '.join(ATTACKS)} or none")
        selection = (batch_size, num_examples, skip, split, weights, seed, resume)
        super().__init__(certifier, sigma, output_dir, *selection)
        self.attack, (self.radii, self.multiples) = attack, self.epsilons(radii, multiples)
        self.steps, self.m = check_count(steps, "attack.steps"), check_count(m, "attack.m")
        self.n, self.alpha = check_count(n, "attack.n"), check_alpha(alpha, "attack.alpha")
        self.settings = {"attack": attack, "steps": self.steps, "m": self.m, "n": self.n}
        self.settings |= {"alpha": self.alpha, "radii": self.radii, "multiples": self.multiples}

    def begin(self, trainer: Trainer, pl_module: LightningModule) -> None:
        cohen, contract = self.certifier, pl_module.contract()
        self.certified = {r.idx: r for r in cohen.records}
        self.alphas, self.device = (cohen.alpha, self.alpha), pl_module.device
        noise = {"noise": cohen.noise, "norm": "l2"}
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
        predicts = attack_example(self.smooth, self.attack, x, label, epsilons, sizes, generators)
        row = EmpiricalRecord(idx, label, radius, tuple(targets), tuple(epsilons), tuple(predicts))
        return {"empirical": row}

    def report(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.summary, acc = empirical_summary(self.records, self.radii, self.multiples, self.alphas)
        cohen = list(self.certified.values())
        grid = radius_grid(cohen)
        certified = certified_accuracy_curve(cohen, grid).tolist()
        curves = {"certified (Cohen CERTIFY)": (grid.tolist(), certified)}
        curves[f"empirical ({self.attack} + PREDICT)"] = (self.radii, acc)
        title = f"Certified vs empirical ({self.attack}), sigma={self.sigma}"
        table = ", ".join(f"{k}={v:.3f}" for k, v in self.summary.items() if math.isfinite(v))
        columns, stem = ("empirical", "radius", "accuracy"), "certified_vs_empirical"
        self.publish(trainer, stem, columns, "accuracy", curves, title, f"empirical: {table}")
