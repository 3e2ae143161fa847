"""``attack=``: empirical robustness beside the certified curve. After Cohen's CERTIFY, each
certified example is attacked at a grid of l2 radii and at multiples of its certified radius, and
PREDICT answers at each adversarial point."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from callbacks.certification.base import CertificationCallback
from callbacks.certification.checks import check_radii
from callbacks.certification.cohen import CohenCertification
from callbacks.reporting import log_locations, report_series
from smoothcert.attacks.empirical import (
    ATTACKS,
    attack_example,
    attack_generators,
    inside_radius_check,
    success_rate,
)
from smoothcert.certifiers.classification import Smooth
from smoothcert.errors import ConfigError, check_alpha, check_count, require
from smoothcert.metrics.certified import certified_accuracy_curve, radius_grid
from smoothcert.records import RecordSchema
from smoothcert.records.empirical import EMPIRICAL_SCHEMA, EmpiricalRecord


class EmpiricalRobustness(CertificationCallback):
    """Attacks (``attack``: ``smoothed_pgd`` or ``base``) the examples Cohen's callback certified
    in the same run, at every radius of ``radii`` and at ``multiples`` of each correctly certified
    example's radius, then runs PREDICT(``n``, ``alpha``) at each adversarial point.

    Rank 0 writes ``empirical.tsv`` (one line per example and radius), the certified curve and
    the empirical robust accuracy in one figure (``certified_vs_empirical.tsv``/``.png``), the
    scalars ``attack/acc@<r>``, ``attack/success@<m>R`` (PREDICT names a wrong class) and
    ``attack/success_or_abstain@<m>R`` to every logger, and ``empirical_summary.json``.

    Soundness check: inside the certified radius (multiples <= 1) PREDICT may disagree with the
    certified class only at rate ``alpha_certify + alpha``; more disagreements than that rate
    allows (p-value < 0.001) is warned about and recorded (``attack/inside_pvalue``).
    """

    option, tasks, noun = "attack", ("classification", "denoised_classification"), "examples"
    progress, objective = "attack", "attack/acc@0.50"

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
    ) -> None:
        self.option = f"attack={attack}"
        require(attack in ATTACKS, f"attack={attack} is unknown: use {', '.join(ATTACKS)} or none")
        selection = (batch_size, num_examples, skip, split, weights, seed)
        super().__init__(sigma, output_dir, *selection, False, resume)
        self.attack = attack
        bad = [float(r) for r in (*radii, *multiples) if not float(r) >= 0]
        require(
            not bad,
            f"attack.radii={list(radii)} attack.multiples={list(multiples)}: an attack epsilon "
            f"must be >= 0 (got {bad}), an l2 radius in [0, 1] pixel units",
        )
        self.radii = check_radii(radii, "l2")
        self.multiples = [float(v) for v in multiples]
        self.steps, self.m = check_count(steps, "attack.steps"), check_count(m, "attack.m")
        self.n, self.alpha = check_count(n, "attack.n"), check_alpha(alpha, "attack.alpha")
        self.settings = {"attack": attack, "steps": self.steps, "m": self.m, "n": self.n}
        self.settings |= {"alpha": self.alpha, "radii": self.radii, "multiples": self.multiples}

    def check_model(self, pl_module: LightningModule) -> None:
        contract = getattr(pl_module, "contract", None)
        task = contract().task if callable(contract) else getattr(pl_module, "task", "")
        if task not in self.tasks:
            raise ConfigError(
                f"{self.option} attacks classifiers, but the model is a {task or 'custom'} "
                "model: use attack=seg_pgd for segmentation, or attack=none"
            )

    def _cohen(self, trainer: Trainer) -> CohenCertification:
        found = [c for c in trainer.callbacks if isinstance(c, CohenCertification)]
        if not found:
            raise ConfigError(
                f"{self.option} attacks at multiples of Cohen's certified radii: use certify=cohen"
            )
        cohen = found[0]
        require(
            cohen.norm == "l2",
            f"{self.option} attacks in l2, but certify.norm={cohen.norm}: use certify.norm=null "
            "with noise=gaussian",
        )
        mine, theirs = (
            (self.split, self.skip, self.num_examples),
            (cohen.split, cohen.skip, cohen.num_examples),
        )
        require(
            mine == theirs,
            f"{self.option}: split/skip/num_examples {mine} differ from certify's {theirs}: "
            "leave attack.split, attack.skip and attack.num_examples at ${certify.*}",
        )
        return cohen

    def prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._cohen(trainer)

    def schemas(self) -> dict[str, RecordSchema]:
        return {"empirical": EMPIRICAL_SCHEMA}

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str = "") -> dict:
        return self.header(pl_module, checkpoint, "empirical", self.settings)

    def certify(self, trainer: Trainer, pl_module: LightningModule, checkpoint: str) -> None:
        cohen = self._cohen(trainer)
        self.certified = {r.idx: r for r in cohen.records}
        self.alpha_certify, self.device = cohen.alpha, pl_module.device
        classes, noise = pl_module.hparams.num_classes, {"noise": cohen.noise, "norm": "l2"}
        self.smooth = Smooth(pl_module.base_function(), classes, cohen.sigma, **noise)
        super().certify(trainer, pl_module, checkpoint)

    def certify_one(self, idx: int, example, needed: Sequence[str]) -> dict[str, EmpiricalRecord]:
        x, label = torch.as_tensor(example[0]).to(self.device), int(example[1])
        record = self.certified[idx]
        radius = record.radius if record.correct else 0.0
        targets = ["grid"] * len(self.radii)
        epsilons = list(self.radii)
        if radius > 0:
            targets += [f"{k:.2f}R" for k in self.multiples]
            epsilons += [k * radius for k in self.multiples]
        settings = (self.steps, self.m, self.n, self.alpha, self.batch_size)
        generators = attack_generators(self.seed, idx, self.device)
        predicts = attack_example(
            self.smooth, self.attack, x, label, epsilons, settings, generators
        )
        row = EmpiricalRecord(idx, label, radius, tuple(targets), tuple(epsilons), tuple(predicts))
        return {"empirical": row}

    def keep(self, records: Mapping[str, list[EmpiricalRecord]]) -> None:
        self.records: list[EmpiricalRecord] = records["empirical"]

    def _at(self, target: str) -> tuple[list[int], list[int]]:
        """PREDICT's answers and the labels of the attacks aimed at ``target`` (only correctly
        certified examples are attacked at multiples of R: their label is the certified class)."""
        rows = [
            (p, r.label)
            for r in self.records
            for t, p in zip(r.targets, r.predicts, strict=True)
            if t == target
        ]
        return [p for p, _ in rows], [y for _, y in rows]

    def report(self, trainer: Trainer, pl_module: LightningModule) -> None:
        summary: dict[str, float] = {}
        grid_acc = []
        for r_index, radius in enumerate(self.radii):
            correct = [rec.predicts[r_index] == rec.label for rec in self.records]
            grid_acc.append(float(np.mean(correct)))
            summary[f"attack/acc@{radius:.2f}"] = grid_acc[-1]
        for k in self.multiples:
            predicts, labels = self._at(f"{k:.2f}R")
            wrong, wrong_or_abstain = success_rate(predicts, labels)
            summary[f"attack/success@{k:.2f}R"] = wrong
            summary[f"attack/success_or_abstain@{k:.2f}R"] = wrong_or_abstain
            summary["attack/certified_examples"] = float(len(predicts))
            if k <= 1.0:
                found, total, pvalue = inside_radius_check(
                    predicts, labels, self.alpha_certify, self.alpha
                )
                summary[f"attack/inside_wrong@{k:.2f}R"] = float(found)
                previous = summary.get("attack/inside_pvalue", 1.0)
                summary["attack/inside_pvalue"] = min(pvalue, previous)
                if pvalue < 1e-3:
                    rank_zero_warn(
                        f"soundness check failed: PREDICT named another class than the certified "
                        f"one at {k:.2f}R on {found} of {total} examples, more than alpha_certify "
                        f"+ alpha = {self.alpha_certify + self.alpha:g} allows (p={pvalue:.2g})"
                    )
        self.summary = summary
        cohen = list(self.certified.values())
        grid = radius_grid(cohen)
        certified = certified_accuracy_curve(cohen, grid)
        curves = {
            "certified (Cohen CERTIFY)": (grid.tolist(), certified.tolist()),
            f"empirical ({self.attack} + PREDICT)": (self.radii, grid_acc),
        }
        rows = [[0.0, x, y] for x, y in zip(grid, certified, strict=True)]
        rows += [[1.0, x, y] for x, y in zip(self.radii, grid_acc, strict=True)]
        title = f"Certified vs empirical ({self.attack}), sigma={self.sigma}"
        columns = ("empirical", "radius", "accuracy")
        paths = report_series(
            trainer, self.output_dir, "certified_vs_empirical", columns, rows, curves, title,
            summary, "radius", "accuracy",
        )  # fmt: skip
        table = ", ".join(f"{k}={v:.3f}" for k, v in summary.items() if math.isfinite(v))
        rank_zero_info(f"empirical: {table}")
        log_locations(trainer, str(self.output_dir / "empirical.tsv"), [paths])

    def write_summary(self) -> Path:
        """``empirical_summary.json`` (certification_summary.json stays Cohen's)."""
        path = self.output_dir / "empirical_summary.json"
        content = {"attack": self.attack, "summary": self.summary}
        path.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
        return path
