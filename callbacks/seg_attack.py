"""``attack=seg_pgd``: the base segmentation model's pixel accuracy under l2 PGD (paper 003 App.
C.1) on the images SegCertify certified in the same run, beside the certified pixel accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pytorch_lightning import LightningModule, Trainer

from callbacks.attack_base import AttackCallback
from callbacks.attack_report import attack_section, seg_attack_summary, segcertify_curve
from callbacks.certification.segcertify import SegCertifyCertification
from callbacks.certification.settings.attack import SegAttackSettings
from smoothcert.attacks.empirical import attack_generators
from smoothcert.attacks.segmentation import segmentation_pgd_l2
from smoothcert.records.seg_attack import SEG_ATTACK_SCHEMA, SegAttackRecord
from smoothcert.report.parts import Report
from smoothcert.sampling import eval_mode


class SegmentationAttack(AttackCallback):
    """Attacks each image its certifier (``certifier``: SegCertify's callback of the same run)
    certified with ``segmentation_pgd_l2`` on the base model SegCertify smooths (its scale and
    flip), at every l2 radius of ``radii``.

    Rank 0 writes ``seg_attack.tsv`` (one line per image and radius), ``certified_vs_attack``
    (TSV and PNG: SegCertify's certified pixel accuracy at each tau's radius, and the pixel
    accuracy under attack at each radius), ``attack/pixel_acc@<r>`` and
    ``attack/certified_pixel_acc@<r>`` (the best certified pixel accuracy of a tau whose radius
    is >= r; nan if none) to every logger, and ``empirical_summary.json``. Certified pixel
    accuracy counts abstentions as errors, so it may be below the attacked one at a radius.
    """

    option, tasks, noun, fits = (
        "attack=seg_pgd",
        ("segmentation",),
        "images",
        SegCertifyCertification,
    )
    key, schema, header_name = "seg_attack", SEG_ATTACK_SCHEMA, "seg_pgd"
    objective, model_keys = "attack/pixel_acc@0.25", ("num_classes", "ignore_index")
    targets, instead = "segmentation models", "use attack=base or attack=smoothed_pgd"
    needs = "attacks the images SegCertify certifies"

    settings_type = SegAttackSettings
    selection = {"batch_size": 16, "num_examples": 100, "split": "val"}

    def __init__(self, sigma: float, output_dir: str, **settings: Any) -> None:
        super().__init__(sigma, output_dir, **settings)
        self.settings = self.config.header()

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str = "") -> dict:
        scale = {"scale": self.certifier.scale, "flip": self.certifier.flip}
        return self.header(
            pl_module, checkpoint, self.header_name, self.settings | scale, self.model_keys
        )

    def begin(self, trainer: Trainer, pl_module: LightningModule) -> None:
        contract = pl_module.contract()
        self.model = contract.logits_at(self.certifier.scale, self.certifier.flip)
        self.device, self.ignore = pl_module.device, contract.ignore_index

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

    def build_report(self, pl_module: LightningModule) -> Report:
        radii, certified = segcertify_curve(self.certifier.taus, self.certifier.rows)
        summary, attacked = seg_attack_summary(self.records, self.radii, (radii, certified))
        curves = {"certified (SegCertify)": (radii, certified)}
        curves[f"base model under PGD ({self.steps} steps)"] = (self.radii, attacked)
        title = f"Certified vs attacked pixel accuracy, sigma={self.sigma}"
        table = ", ".join(f"{k}={v:.4f}" for k, v in summary.items())
        columns, line = ("attacked", "radius", "pixel_acc"), f"segmentation attack: {table}"
        section = attack_section(
            "certified_vs_attack", columns, "pixel accuracy", curves, title, summary, line
        )
        return Report([section])
