"""``attack=seg_pgd``: the base segmentation model's pixel accuracy under l2 PGD (paper 003 App.
C.1) on the images SegCertify certified in the same run, beside the certified pixel accuracy."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info

from callbacks.certification.base import CertificationCallback
from callbacks.certification.segcertify import SegCertifyCertification
from callbacks.reporting import log_locations, report_series
from smoothcert.attacks.empirical import attack_generators
from smoothcert.attacks.segmentation import PAPER_STEPS, segmentation_pgd_l2
from smoothcert.errors import ConfigError, check_count, require
from smoothcert.records import RecordSchema
from smoothcert.records.seg_attack import SEG_ATTACK_SCHEMA, SegAttackRecord
from smoothcert.records.segmentation import summarize_scores
from smoothcert.sampling import eval_mode


class SegmentationAttack(CertificationCallback):
    """Attacks each image certify=segcertify certified with ``segmentation_pgd_l2`` on the base
    model SegCertify smooths (its scale and flip), at every l2 radius of ``radii``.

    Rank 0 writes ``seg_attack.tsv`` (one line per image and radius), ``certified_vs_attack``
    (TSV and PNG: SegCertify's certified pixel accuracy at each tau's radius, and the pixel
    accuracy under attack at each radius), ``attack/pixel_acc@<r>`` and
    ``attack/certified_pixel_acc@<r>`` (the best certified pixel accuracy of a tau whose radius
    is >= r; nan if none) to every logger, and ``empirical_summary.json``. Certified pixel
    accuracy counts abstentions as errors, so it may be below the attacked one at a radius.
    """

    option, tasks, noun = "attack=seg_pgd", ("segmentation",), "images"
    progress, objective = "attack", "attack/pixel_acc@0.25"

    def __init__(
        self,
        sigma: float,
        output_dir: str,
        radii: Sequence[float] = (0.0, 0.17, 0.25, 0.5),
        steps: int = PAPER_STEPS,
        batch_size: int = 16,
        num_examples: int | None = 100,
        skip: int = 1,
        split: str = "val",
        weights: str = "last",
        seed: int = 0,
        resume: bool = False,
    ) -> None:
        selection = (batch_size, num_examples, skip, split, weights, seed)
        super().__init__(sigma, output_dir, *selection, False, resume)
        bad = [float(r) for r in radii if not float(r) >= 0]
        require(not bad, f"attack.radii={list(radii)}: an attack epsilon must be >= 0 (got {bad})")
        require(len(radii) > 0, "attack.radii is empty: give l2 radii >= 0 in [0, 1] pixel units")
        self.radii = sorted({float(r) for r in radii})
        self.steps = check_count(steps, "attack.steps")
        self.settings = {"attack": "seg_pgd", "steps": self.steps, "radii": self.radii}

    def check_model(self, pl_module: LightningModule) -> None:
        contract = getattr(pl_module, "contract", None)
        task = contract().task if callable(contract) else getattr(pl_module, "task", "")
        if task not in self.tasks:
            raise ConfigError(
                f"attack=seg_pgd attacks segmentation models, but the model is a "
                f"{task or 'custom'} model: use attack=base or attack=smoothed_pgd, or attack=none"
            )

    def _segcertify(self, trainer: Trainer) -> SegCertifyCertification:
        found = [c for c in trainer.callbacks if isinstance(c, SegCertifyCertification)]
        if not found:
            raise ConfigError(
                "attack=seg_pgd attacks the images SegCertify certifies: use certify=segcertify"
            )
        seg = found[0]
        require(
            seg.norm == "l2",
            f"attack=seg_pgd attacks in l2, but certify.norm={seg.norm}: use certify.norm=null "
            "with noise=gaussian",
        )
        mine, theirs = (
            (self.split, self.skip, self.num_examples),
            (seg.split, seg.skip, seg.num_examples),
        )
        require(
            mine == theirs,
            f"attack=seg_pgd: split/skip/num_examples {mine} differ from certify's {theirs}: "
            "leave attack.split, attack.skip and attack.num_examples at ${certify.*}",
        )
        return seg

    def prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.seg = self._segcertify(trainer)

    def schemas(self) -> dict[str, RecordSchema]:
        return {"seg_attack": SEG_ATTACK_SCHEMA}

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str = "") -> dict:
        scale = {"scale": self.seg.scale, "flip": self.seg.flip}
        model_keys = ("num_classes", "ignore_index")
        return self.header(pl_module, checkpoint, "seg_pgd", self.settings | scale, model_keys)

    def certify(self, trainer: Trainer, pl_module: LightningModule, checkpoint: str) -> None:
        self.seg = self._segcertify(trainer)
        self.model = pl_module.inference_model(self.seg.scale, self.seg.flip)
        self.device, self.ignore = pl_module.device, int(pl_module.hparams.ignore_index)
        super().certify(trainer, pl_module, checkpoint)

    def certify_one(self, idx: int, example, needed: Sequence[str]) -> dict[str, SegAttackRecord]:
        x = torch.as_tensor(example[0]).to(self.device)
        mask = torch.as_tensor(example[1]).to(self.device).long()
        copies = len(self.radii)
        xs = x.unsqueeze(0).expand(copies, *x.shape)
        masks = mask.unsqueeze(0).expand(copies, *mask.shape)
        eps = torch.tensor(self.radii, device=self.device)
        generator = attack_generators(self.seed, idx, self.device)[0]
        adversarial = segmentation_pgd_l2(
            self.model, xs, masks, eps, self.steps, self.ignore, generator
        )
        with eval_mode(self.model), torch.inference_mode():
            labels = self.model(adversarial).argmax(dim=1)
        valid = masks != self.ignore
        correct = ((labels == masks) & valid).flatten(1).sum(dim=1).tolist()
        record = SegAttackRecord(idx, tuple(self.radii), tuple(correct), int(valid[0].sum()))
        return {"seg_attack": record}

    def keep(self, records: Mapping[str, list[SegAttackRecord]]) -> None:
        self.records: list[SegAttackRecord] = records["seg_attack"]

    def certified_curve(self) -> tuple[list[float], list[float]]:
        """SegCertify's certified pixel accuracy at each tau's radius, by radius (as it
        reports it: pooled over the images, abstentions counted as errors)."""
        seg = self.seg
        points = []
        for tau in seg.taus:
            scores = torch.stack([r.scores for r in seg.rows if r.kind == tau])
            radius = min(r.radius for r in seg.rows if r.kind == tau)
            points.append((radius, summarize_scores(scores)["pixel_acc"]))
        points.sort()
        return [p[0] for p in points], [p[1] for p in points]

    def report(self, trainer: Trainer, pl_module: LightningModule) -> None:
        valid = sum(r.valid for r in self.records)
        attacked = [sum(r.correct[i] for r in self.records) / valid for i in range(len(self.radii))]
        radii, certified = self.certified_curve()
        summary: dict[str, float] = {}
        for radius, acc in zip(self.radii, attacked, strict=True):
            summary[f"attack/pixel_acc@{radius:.2f}"] = acc
            holding = [c for r, c in zip(radii, certified, strict=True) if r >= radius]
            summary[f"attack/certified_pixel_acc@{radius:.2f}"] = max(holding, default=math.nan)
        summary["attack/num_examples"] = float(len(self.records))
        self.summary = summary
        curves = {
            "certified (SegCertify)": (radii, certified),
            f"base model under PGD ({self.steps} steps)": (self.radii, attacked),
        }
        rows = [[0.0, x, y] for x, y in zip(radii, certified, strict=True)]
        rows += [[1.0, x, y] for x, y in zip(self.radii, attacked, strict=True)]
        title = f"Certified vs attacked pixel accuracy, sigma={self.sigma}"
        paths = report_series(
            trainer, self.output_dir, "certified_vs_attack", ("attacked", "radius", "pixel_acc"),
            rows, curves, title, summary, "radius", "pixel accuracy",
        )  # fmt: skip
        table = ", ".join(f"{k}={v:.4f}" for k, v in summary.items())
        rank_zero_info(f"segmentation attack: {table}")
        log_locations(trainer, str(self.output_dir / "seg_attack.tsv"), [paths])

    def write_summary(self) -> Path:
        """``empirical_summary.json`` (certification_summary.json stays SegCertify's)."""
        path = self.output_dir / "empirical_summary.json"
        content = {"attack": "seg_pgd", "summary": self.summary}
        path.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
        return path
