"""SegCertify on held-out images at the end of fitting (or testing), sharded across ranks."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager

import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from callbacks.certification.base import CertificationCallback
from callbacks.reporting import log_images, log_locations, report_curve
from callbacks.seg_report import save_overlay
from smoothcert.certifiers.classification import eval_mode
from smoothcert.certifiers.segmentation import (
    check_tau,
    guarantee,
    score_segmentation,
    segcertify,
    segmentation_radius,
    tau_alpha,
    tau_scope,
)
from smoothcert.errors import ConfigError, check_alpha, check_count, require
from smoothcert.models.segmenters import check_scales
from smoothcert.noise import Certificate, Noise, example_generator
from smoothcert.records import (
    BASE,
    SEG_BASE_SCHEMA,
    SEG_SCHEMA,
    RecordSchema,
    Row,
    SegImage,
    SegRecord,
)
from smoothcert.records.segmentation import summarize_scores
from smoothcert.stats.multiple_testing import FDR, check_correction


class SegCertifyCertification(CertificationCallback):
    """Certifies ``num_examples`` images of ``split`` with SegCertify(n0, n, tau, alpha).

    Runs in ``on_train_end``, and in ``on_test_end`` (how certify.py certifies a checkpoint). One
    sampling pass per image serves every tau in ``tau``: each tau's certificate holds at level
    alpha on its own (per tau), or, with ``joint``, all of them together (each tau at alpha / T).
    The ``guarantee`` line of the TSV header says which. Images are sharded as
    ``indices[rank::world_size]`` and image ``i``'s noise is seeded by ``(seed, i)``, so results
    depend on neither the device count nor the batch size. Rows stream
    to ``segcertify.tsv`` (``idx tau radius pixel_acc miou abstain time``, ``#`` header) and
    ``segcertify_base.tsv`` (the base model without smoothing, tau nan); rank 0 writes the
    radius-vs-certified-accuracy curve (TSV, PNG, wandb), ``cert/*`` scalars and overlays.

    ``noise`` is the smoothing distribution at ``sigma`` (None: Gaussian; the config passes the
    training noise node) and ``norm`` the norm of the radii (None: the noise's natural norm);
    the radius at tau is the noise's radius for p_A = tau in that norm (``cert/radius``, or
    ``cert/<norm>/radius`` outside l2). An linf radius depends on the image size: the header
    says so, and the summary and curve use the smallest radius over the images.
    """

    option, tasks, noun, progress = "segcertify", ("segmentation",), "images", "segcertify"
    objective, objective_mode = "cert/miou", "max"  # certified mIoU at the first tau

    def __init__(
        self,
        sigma: float,
        output_dir: str,
        n0: int = 10,
        n: int = 100,
        tau: float | Sequence[float] = 0.75,
        alpha: float = 0.001,
        correction: str = "holm",
        budget: int = 0,
        joint: bool = False,
        scale: float | Sequence[float] = 1.0,
        flip: bool = False,
        batch_size: int = 16,
        num_examples: int | None = 100,
        skip: int = 1,
        split: str = "val",
        weights: str = "last",
        seed: int = 0,
        num_overlays: int = 4,
        bf16: bool = False,
        resume: bool = False,
        noise: Noise | None = None,
        norm: str | None = None,
    ) -> None:
        selection = (batch_size, num_examples, skip, split, weights, seed)
        super().__init__(sigma, output_dir, *selection, bf16, resume)
        self.use_noise(noise, norm)
        self.n0, self.n = check_count(n0, "certify.n0"), check_count(n, "certify.n")
        taus = list(tau) if isinstance(tau, Sequence) else [tau]
        require(len(taus) > 0, "certify.tau is empty: give a tau in [0.5, 1) or a list of them")
        self.taus = [check_tau(t, "certify.tau") for t in taus]
        self.alpha = check_alpha(alpha, "certify.alpha")
        self.correction, self.budget = check_correction(correction, budget)
        self.joint = bool(joint)
        self.tau_alpha = tau_alpha(self.alpha, len(self.taus), self.joint)
        scales = check_scales(scale, "certify.scale")
        self.scale, self.flip = (scales[0] if len(scales) == 1 else list(scales)), bool(flip)
        self.num_overlays = check_count(num_overlays, "certify.num_overlays", minimum=0)
        self.records: list[SegRecord] = []
        self.overlays: list[tuple] = []  # rank 0: (idx, image, mask, base, certified)

    def check_model(self, pl_module: LightningModule) -> None:
        if not hasattr(pl_module, "inference_model"):
            raise ConfigError("certify=segcertify needs a segmentation model: use model=seg_small")
        super().check_model(pl_module)

    def prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.correction in FDR:
            rank_zero_warn(
                f"certify.correction={self.correction} bounds only the expected fraction of false "
                "certificates (FDR), not the chance of any: it is not a family-wise certificate"
            )
        if len(self.taus) > 1 and not self.joint:
            rank_zero_info(
                f"segcertify: each of the {len(self.taus)} tau certificates holds at alpha on its "
                "own, not jointly; certify.joint=true tests each at alpha / T for a joint one"
            )

    def schemas(self) -> dict[str, RecordSchema]:
        """The certified rows (``segcertify.tsv``) and the base model's rows."""
        return {"cert": SEG_SCHEMA, "base": SEG_BASE_SCHEMA}

    def radius(self, tau: float, dim: int | None = None) -> float:
        """The certified radius at ``tau`` in this noise and norm (linf: for ``dim`` inputs)."""
        return segmentation_radius(Certificate(self.noise, self.norm, dim), tau)

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str = "") -> dict:
        radii = (
            "per image: the l2 radius / sqrt(channels x pixels)"
            if self.norm == "linf"
            else [self.radius(t) for t in self.taus]
        )
        settings = {
            "guarantee": guarantee(self.correction, self.budget, len(self.taus), self.joint),
            "n0": self.n0,
            "n": self.n,
            "tau": self.taus,
            "radius": radii,
            "alpha": self.alpha,
            "joint": self.joint,
            "alpha_per_tau": self.tau_alpha,
            "correction": self.correction,
            "budget": self.budget,
            "scale": self.scale,
            "flip": self.flip,
        }
        model_keys = ("num_classes", "ignore_index")
        return self.header(pl_module, checkpoint, "segcertify", settings, model_keys)

    def describe(self, todo: int, total: int, world: int) -> str:
        return (
            f"segcertify: {todo} of {total} {self.split} images to certify, "
            f"n0={self.n0} n={self.n} tau={self.taus} alpha={self.alpha} "
            f"({tau_scope(len(self.taus), self.joint)}) {self.correction} "
            f"{self.noise.name} sigma={self.sigma} ({self.norm} radii) scale={self.scale} on "
            f"{world} process(es)"
        )

    def start(self, trainer: Trainer, pl_module: LightningModule) -> AbstractContextManager:
        self.model, self.device = pl_module.inference_model(self.scale, self.flip), pl_module.device
        self.hparams, self.overlays = pl_module.hparams, []
        return super().start(trainer, pl_module)

    def certify_one(self, idx: int, example: tuple, needed: Sequence[str]) -> dict[str, SegImage]:
        """The base model's row and one row per tau of one image (one sampling pass)."""
        x, mask = torch.as_tensor(example[0]).to(self.device), example[1]
        rows, base, certified = self._image(self.model, x, mask, idx, self.hparams)
        if self.global_rank == 0 and len(self.overlays) < self.num_overlays:
            self.overlays.append((idx, x.cpu(), mask, base.cpu(), certified.cpu()))
        certified_rows = tuple(sorted(rows[1:], key=lambda row: row.kind))
        return {"cert": SegImage(idx, certified_rows), "base": SegImage(idx, (rows[0],))}

    def keep(self, records: Mapping[str, list]) -> None:
        images = [image for key in ("base", "cert") for image in records[key]]
        rows = [row for image in images for row in image.rows]
        self.rows = sorted(rows, key=lambda row: (row.idx, row.kind))
        self.records = [row.record() for row in self.rows]

    def _image(self, model, x: torch.Tensor, mask: torch.Tensor, idx: int, h) -> tuple:
        """Rows of one image (the base model's, then one per tau) and the two maps to overlay."""
        device = x.device
        start = time.perf_counter()
        with eval_mode(model), torch.inference_mode(), self.autocast(device):
            base = model(x[None]).argmax(dim=1)[0]
        base_seconds = time.perf_counter() - start
        start = time.perf_counter()
        with self.autocast(device):
            classes, radii = segcertify(
                model,
                x,
                self.sigma,
                self.n0,
                self.n,
                self.taus,
                self.alpha,
                self.correction,
                self.batch_size,
                example_generator(self.seed, idx, device),
                self.budget,
                self.joint,
                noise=self.noise,
                norm=self.norm,
            )
        seconds = time.perf_counter() - start

        def score(labels: torch.Tensor) -> torch.Tensor:
            return score_segmentation(labels, mask, h.num_classes, h.ignore_index)

        rows = [Row(BASE, idx, 0.0, base_seconds, score(base))]
        for tau, radius, certified in zip(self.taus, radii, classes, strict=True):
            rows.append(Row(tau, idx, radius, seconds, score(certified)))
        return rows, base, classes[0]

    def report(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rows, overlays, h = self.rows, self.overlays, pl_module.hparams
        kinds = (*self.taus, BASE)
        pooled = {
            k: summarize_scores(torch.stack([r.scores for r in rows if r.kind == k])) for k in kinds
        }
        images = len(rows) // len(kinds)
        seconds = {k: sum(r.seconds for r in rows if r.kind == k) / images for k in kinds}
        first = self.taus[0]
        # The radius every image is certified at (images of one size share it; linf varies).
        radius = {k: min(r.radius for r in rows if r.kind == k) for k in self.taus}
        self.summary = {f"cert/{name}": value for name, value in pooled[first].items()}
        self.summary[f"{self.prefix}radius"] = radius[first]
        self.summary["cert/time_per_image"] = seconds[first]
        for name in ("pixel_acc", "miou"):
            self.summary[f"cert/base_{name}"] = pooled[BASE][name]
        self.summary["cert/base_time_per_image"] = seconds[BASE]
        for tau in self.taus:
            self.summary.update({f"cert/{k}@tau{tau:g}": v for k, v in pooled[tau].items()})
        self.summary["cert/num_examples"] = float(images)
        order = sorted(self.taus)
        base = pooled[BASE]
        paths = report_curve(
            trainer,
            self.output_dir,
            "certified_pixel_accuracy",
            "radius",
            "certified_pixel_accuracy",
            [radius[t] for t in order],
            [pooled[t]["pixel_acc"] for t in order],
            self._title(pl_module, images),
            self.summary,
            x_label=f"{self.norm} radius",
            step="pre",  # tau's pixels are certified up to tau's radius, not beyond
            points=[(radius[t], pooled[t]["pixel_acc"], f"tau={t:g}") for t in order],
            levels={f"base model pixel accuracy {base['pixel_acc']:.3f}": base["pixel_acc"]},
        )
        self._overlays(trainer, overlays, h)
        for tau in self.taus:  # one line per tau: each holds at its own radius
            cert = pooled[tau]
            rank_zero_info(
                f"tau={tau:g} {self.norm} radius={radius[tau]:.4f}: certified pixel accuracy "
                f"{cert['pixel_acc']:.4f}, mIoU {cert['miou']:.4f}, abstain {cert['abstain']:.4f}"
            )
        rank_zero_info(
            f"base model: pixel accuracy {base['pixel_acc']:.4f}, mIoU {base['miou']:.4f}; "
            f"{seconds[first]:.2f} s/image certified (base {seconds[BASE]:.3f}), {images} images"
        )
        records = f"{self.output_dir / 'segcertify.tsv'} and segcertify_base.tsv"
        log_locations(trainer, records, [paths])

    def _title(self, pl_module: LightningModule, images: int) -> str:
        """The curve's title: the procedure; the data and sample sizes; how its points hold
        together (per tau / joint) at which alpha. Three short lines, so nothing is cut off."""
        level = f"alpha={self.alpha:g}"
        if self.joint and len(self.taus) > 1:
            level += f" (alpha/{len(self.taus)} each)"
        kind = "FDR only, " if self.correction in FDR else ""
        scope = tau_scope(len(self.taus), self.joint)
        head = f"SegCertify {self.correction}, {self.noise.name} sigma={self.sigma:g}"
        protocol = self.protocol_text(pl_module, images, n0=self.n0, n=self.n)
        return f"{head}\n{protocol}\n{kind}{scope}, {level}"

    def _overlays(self, trainer: Trainer, overlays: list, h) -> None:
        """PNG overlays in ``overlays/`` (and to wandb) for the first images of rank 0's shard."""
        folder = self.output_dir / "overlays"
        folder.mkdir(exist_ok=True)
        names = getattr(trainer.datamodule.dataset(self.split), "classes", None)
        paths = []
        for idx, x, mask, base, certified in overlays:
            path = folder / f"segcertify_{idx:05d}.png"
            maps = (mask, base, certified, h.num_classes, h.ignore_index)
            paths.append(save_overlay(path, x, *maps, class_names=names))
        log_images(trainer, "cert/overlays", paths)
