"""SegCertify on held-out images at the end of fitting (or testing), sharded across ranks."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager

import torch
from pytorch_lightning import LightningModule, Trainer

from callbacks.certification.base import CertificationCallback
from callbacks.certification.settings import TAKES, Configured, contract_of
from callbacks.certification.settings.segcertify import SegCertifySettings
from smoothcert.certifiers.classification import eval_mode
from smoothcert.certifiers.segmentation import score_segmentation
from smoothcert.noise import example_generator
from smoothcert.records import BASE, SEG_BASE_SCHEMA, SEG_SCHEMA, RecordSchema, Row, SegImage
from smoothcert.report.parts import Report
from smoothcert.report.segcertify import save_overlays, segcertify_section

LINF_RADII = "per image: the l2 radius / sqrt(channels x pixels)"  # the header's linf radius
MODEL_KEYS = ("num_classes", "ignore_index")  # the model's settings in the header


class SegCertifyCertification(Configured, CertificationCallback):
    """Certifies ``num_examples`` images of ``split`` with SegCertify(n0, n, tau, alpha) (the
    settings: ``SegCertifySettings``) in ``noise`` at ``sigma`` (None: Gaussian; the config passes
    the training noise node), with radii in ``norm`` (None: the noise's natural norm).

    One sampling pass per image serves every tau: each tau's certificate holds at level alpha on
    its own (per tau), or, with ``joint``, all of them together (each tau at alpha / T); the
    ``guarantee`` line of the TSV header says which. Image ``i``'s noise is seeded by ``(seed,
    i)``. Rows stream to ``segcertify.tsv`` (``idx tau radius pixel_acc miou abstain time``) and
    ``segcertify_base.tsv`` (the base model without smoothing, tau nan); rank 0 writes the
    radius-vs-certified-accuracy curve (TSV, PNG, wandb), ``cert/*`` scalars (``cert/radius``, or
    ``cert/<norm>/radius`` outside l2; an linf radius depends on the image size, and the summary
    and curve use the smallest over the images) and overlays (``smoothcert.report.segcertify``).
    """

    option, tasks, noun, progress = "segcertify", ("segmentation",), "images", "segcertify"
    objective, objective_mode = "cert/miou", "max"  # certified mIoU at the first tau
    settings_type, takes = SegCertifySettings, (*TAKES, "norm", "perturbation")
    selection = {"batch_size": 16, "num_examples": 100, "split": "val"}

    def check_model(self, pl_module: LightningModule) -> None:
        self.config.check_model(contract_of(pl_module, self.option))
        super().check_model(pl_module)

    def prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.objective = self.config.prepare(self.prefix)  # heuristic/miou for a heuristic

    def schemas(self) -> dict[str, RecordSchema]:
        """The certified rows (``segcertify.tsv``) and the base model's rows."""
        return {"cert": SEG_SCHEMA, "base": SEG_BASE_SCHEMA}

    def radius(self, tau: float, dim: int | None = None) -> float:
        """The certified radius at ``tau`` in this noise and norm (linf: for ``dim`` inputs)."""
        return self.config.radius(tau, self.noise, self.norm, self.perturbation, dim)

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str = "") -> dict:
        radii = LINF_RADII if self.norm == "linf" else [self.radius(t) for t in self.taus]
        settings = self.config.header(radii, self)  # the perturbation's settings too (points: xyz)
        return self.header(pl_module, checkpoint, "segcertify", settings, MODEL_KEYS)

    def describe(self, todo: int, total: int, world: int) -> str:
        return (
            f"segcertify: {todo} of {total} {self.split} images to certify, "
            f"{self.config.describe()} {self.noise.name} sigma={self.sigma} ({self.norm} radii) "
            f"scale={self.scale} on {world} process(es)"
        )

    def start(self, trainer: Trainer, pl_module: LightningModule) -> AbstractContextManager:
        self.contract, self.overlays = contract_of(pl_module, self.option), []
        self.model, self.device = self.contract.logits_at(self.scale, self.flip), pl_module.device
        self.ignore = self.contract.ignore_index  # the label of unlabelled pixels
        smoothing = (self.noise, self.norm, self.perturbation)
        self.segcertify = self.config.certifier(self.sigma, self.batch_size, *smoothing)
        return super().start(trainer, pl_module)

    def certify_one(self, idx: int, example: tuple, needed: Sequence[str]) -> dict[str, SegImage]:
        """The base model's row and one row per tau of one image (one sampling pass)."""
        x, mask, model = torch.as_tensor(example[0]).to(self.device), example[1], self.model
        start = time.perf_counter()
        with eval_mode(model), torch.inference_mode(), self.autocast(x.device):
            base = model(x[None]).argmax(dim=1)[0]
        base_seconds, start = time.perf_counter() - start, time.perf_counter()
        with self.autocast(x.device):
            generator = example_generator(self.seed, idx, x.device)
            classes, radii = self.segcertify(model, x, generator=generator)
        seconds = time.perf_counter() - start

        def row(kind: float, radius: float, labels: torch.Tensor, took: float) -> Row:
            scores = score_segmentation(labels, mask, self.contract.num_classes, self.ignore)
            return Row(kind, idx, radius, took, scores)

        rows = [row(t, r, c, seconds) for t, r, c in zip(self.taus, radii, classes, strict=True)]
        if self.global_rank == 0 and len(self.overlays) < self.num_overlays:
            self.overlays.append((idx, x.cpu(), mask, base.cpu(), classes[0].cpu()))
        certified = SegImage(idx, tuple(sorted(rows, key=lambda r: r.kind)))
        return {"cert": certified, "base": SegImage(idx, (row(BASE, 0.0, base, base_seconds),))}

    def keep(self, records: Mapping[str, list]) -> None:
        rows = [row for key in ("base", "cert") for image in records[key] for row in image.rows]
        self.rows = sorted(rows, key=lambda row: (row.idx, row.kind))
        self.records = [row.record() for row in self.rows]

    def build_report(self, pl_module: LightningModule) -> Report:
        def title(images: int) -> str:
            protocol = self.protocol_text(pl_module, images, n0=self.n0, n=self.n)
            return self.config.title(self.noise.name, self.sigma, protocol)

        dataset = pl_module.trainer.datamodule.dataset(self.split)  # names, parts (point clouds)
        classes = (self.contract.num_classes, self.ignore, getattr(dataset, "classes", None))
        overlays = save_overlays(self.output_dir / "overlays", self.overlays, *classes)
        section = segcertify_section(self.rows, self.taus, self.prefix, self.norm, title, dataset)
        records = f"{self.output_dir / 'segcertify.tsv'} and segcertify_base.tsv"
        return Report([section], {self.prefix.split("/")[0] + "/overlays": overlays}, records)
