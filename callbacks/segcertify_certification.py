"""SegCertify on held-out images at the end of fitting (or testing), sharded across ranks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from tqdm.auto import tqdm
from typing_extensions import override

from callbacks.certification_common import (
    CertificationCallback,
    check_records,
    log_images,
    log_locations,
    previous_records,
)
from callbacks.distributed import gather_rows
from callbacks.reporting import report_curve
from smoothcert.errors import ConfigError, check_alpha, check_count, require
from smoothcert.noise import example_generator
from smoothcert.plots import palette, plt
from smoothcert.record_store import RecordStore
from smoothcert.seg_models import check_scales
from smoothcert.seg_records import (
    BASE,
    SEG_COLUMNS,
    SEG_RESUME_KEYS,
    Row,
    SegImage,
    SegRecord,
    seg_image_reader,
)
from smoothcert.segcertify import (
    FDR,
    check_correction,
    check_tau,
    guarantee,
    score_segmentation,
    segcertify,
    segmentation_radius,
    summarize_scores,
    tau_alpha,
    tau_scope,
)
from smoothcert.smooth import eval_mode

TITLES = ("input", "ground truth", "base model", "certified (white: abstain)")


def save_overlay(path: Path, image, mask, base, certified, num_classes: int, ignore: int) -> Path:
    """Image, ground truth, base prediction and certified prediction (abstained pixels white)."""
    colours = palette(num_classes)

    def paint(labels: torch.Tensor) -> torch.Tensor:
        index = labels.clone()
        index[labels == -1], index[labels == ignore] = num_classes, num_classes + 1
        return colours[index.clamp(0, num_classes + 1)]

    panels = [image.permute(1, 2, 0), paint(mask), paint(base), paint(certified)]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), dpi=100)
    for ax, panel, title in zip(axes, panels, TITLES, strict=True):
        ax.imshow(panel.numpy())
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


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
    """

    option = "segcertify"
    tasks = ("segmentation",)
    noun = "images"

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
    ) -> None:
        super().__init__(
            sigma, output_dir, batch_size, num_examples, skip, split, weights, seed, bf16
        )
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
        self.resume = bool(resume)
        self.records: list[SegRecord] = []

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Everything that can fail does so here, before training starts.
        if not hasattr(pl_module, "inference_model"):
            raise ConfigError("certify=segcertify needs a segmentation model: use model=seg_small")
        self.check_selection(trainer, pl_module)
        check_records(self._stores(pl_module, "").values(), self.resume)
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

    def metadata(self, pl_module: LightningModule, checkpoint: str) -> dict[str, object]:
        settings = {
            "guarantee": guarantee(self.correction, self.budget, len(self.taus), self.joint),
            "n0": self.n0,
            "n": self.n,
            "tau": self.taus,
            "radius": [segmentation_radius(self.sigma, t) for t in self.taus],
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

    def _stores(self, pl_module: LightningModule, checkpoint: str) -> dict[str, RecordStore]:
        """Where the certified rows (``segcertify.tsv``) and the base model's rows go."""
        metadata = self.metadata(pl_module, checkpoint)
        return {
            kind: RecordStore(
                self.output_dir,
                metadata,
                f"segcertify{'_base' if kind == 'base' else ''}.tsv",
                SEG_COLUMNS,
                seg_image_reader(base=kind == "base"),
                SEG_RESUME_KEYS,
            )
            for kind in ("cert", "base")
        }

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
            )
        seconds = time.perf_counter() - start

        def score(labels: torch.Tensor) -> torch.Tensor:
            return score_segmentation(labels, mask, h.num_classes, h.ignore_index)

        rows = [Row(BASE, idx, 0.0, base_seconds, score(base))]
        for tau, radius, certified in zip(self.taus, radii, classes, strict=True):
            rows.append(Row(tau, idx, radius, seconds, score(certified)))
        return rows, base, classes[0]

    def certify(self, trainer: Trainer, pl_module: LightningModule, checkpoint: str) -> None:
        """Certifies this rank's unfinished images (streaming their rows), gathers every row, and
        (rank 0) writes the merged files and logs them."""
        rank, world, h = trainer.global_rank, trainer.world_size, pl_module.hparams
        indices, dataset = self.indices(trainer), trainer.datamodule.dataset(self.split)
        model = pl_module.inference_model(self.scale, self.flip)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        stores = self._stores(pl_module, checkpoint)
        previous = previous_records(trainer, list(stores.values()), self.resume)
        wanted = set(indices)
        done = {image.idx for image in previous[0]} & {image.idx for image in previous[1]} & wanted
        todo = [i for i in indices if i not in done]
        rank_zero_info(
            f"segcertify: {len(todo)} of {len(indices)} {self.split} images to certify, "
            f"n0={self.n0} n={self.n} tau={self.taus} alpha={self.alpha} "
            f"({tau_scope(len(self.taus), self.joint)}) {self.correction} "
            f"sigma={self.sigma} scale={self.scale} on {world} process(es)"
        )
        mine, overlays = [], []
        with (
            stores["cert"].writer(rank, world) as cert_writer,
            stores["base"].writer(rank, world) as base_writer,
        ):
            for idx in tqdm(todo[rank::world], desc="segcertify", unit="image", disable=rank != 0):
                x, mask = dataset[idx]
                x = torch.as_tensor(x).to(pl_module.device)
                rows, base, certified = self._image(model, x, mask, idx, h)
                base_writer.write(SegImage(idx, (rows[0],)))
                cert_writer.write(SegImage(idx, tuple(rows[1:])))
                mine += rows
                if rank == 0 and len(overlays) < self.num_overlays:
                    overlays.append((idx, x.cpu(), mask, base.cpu(), certified.cpu()))
        kept = [
            row
            for images in previous
            for image in images
            if image.idx in done
            for row in image.rows
        ]
        rows = sorted(
            kept + self._gather_rows(trainer, mine, len(todo)), key=lambda row: (row.idx, row.kind)
        )
        self.records = [row.record() for row in rows]
        if rank == 0:
            for kind, store in stores.items():
                images: dict[int, list[Row]] = {}
                for row in rows:
                    if (row.kind == BASE) == (kind == "base"):
                        images.setdefault(row.idx, []).append(row)
                store.merge([SegImage(i, tuple(r)) for i, r in images.items()])
            self._report(trainer, rows, overlays, h)
        trainer.strategy.barrier("segcertify_done")

    def _gather_rows(self, trainer: Trainer, mine: list[Row], images: int) -> list[Row]:
        """Every rank's rows sorted by (image, kind), on every rank: one gathered row per image
        (index first, then each of its ``1 + len(tau)`` packed rows), as ``gather_rows`` wants."""
        if trainer.world_size == 1:
            return sorted(mine, key=lambda row: (row.idx, row.kind))
        per_image = 1 + len(self.taus)
        packed = [
            [float(mine[i].idx)] + torch.cat([r.pack() for r in mine[i : i + per_image]]).tolist()
            for i in range(0, len(mine), per_image)
        ]
        width = 1 + per_image * (4 + 4 + 2 * trainer.lightning_module.hparams.num_classes)
        gathered = gather_rows(trainer, packed, width, images)
        rows = []
        for values in gathered:
            chunks = torch.tensor(values[1:], dtype=torch.float64).chunk(per_image)
            rows += [Row.unpack(chunk) for chunk in chunks]
        return sorted(rows, key=lambda row: (row.idx, row.kind))

    def _report(self, trainer: Trainer, rows: list[Row], overlays: list, h) -> None:
        kinds = (*self.taus, BASE)
        pooled = {
            k: summarize_scores(torch.stack([r.scores for r in rows if r.kind == k])) for k in kinds
        }
        images = len(rows) // len(kinds)
        seconds = {k: sum(r.seconds for r in rows if r.kind == k) / images for k in kinds}
        first = self.taus[0]
        self.summary = {f"cert/{name}": value for name, value in pooled[first].items()}
        self.summary["cert/radius"] = segmentation_radius(self.sigma, first)
        self.summary["cert/time_per_image"] = seconds[first]
        for name in ("pixel_acc", "miou"):
            self.summary[f"cert/base_{name}"] = pooled[BASE][name]
        self.summary["cert/base_time_per_image"] = seconds[BASE]
        for tau in self.taus:
            self.summary.update({f"cert/{k}@tau{tau:g}": v for k, v in pooled[tau].items()})
        self.summary["cert/num_examples"] = float(images)
        order = sorted(self.taus)
        paths = report_curve(
            trainer,
            self.output_dir,
            "certified_pixel_accuracy",
            "radius",
            "certified_pixel_accuracy",
            [segmentation_radius(self.sigma, t) for t in order],
            [pooled[t]["pixel_acc"] for t in order],
            self._title(),
            self.summary,
        )
        self._overlays(trainer, overlays, h)
        cert, base = pooled[first], pooled[BASE]
        rank_zero_info(
            f"tau={first} radius={self.summary['cert/radius']:.4f}: certified pixel accuracy "
            f"{cert['pixel_acc']:.4f} (base model {base['pixel_acc']:.4f}), mIoU "
            f"{cert['miou']:.4f} (base {base['miou']:.4f}), abstain {cert['abstain']:.4f}, "
            f"{seconds[first]:.2f} s/image (base {seconds[BASE]:.3f})"
        )
        records = f"{self.output_dir / 'segcertify.tsv'} and segcertify_base.tsv"
        log_locations(trainer, records, [paths])

    def _title(self) -> str:
        """The curve's title: the procedure and how its points hold together (per tau / joint)."""
        level = f"alpha={self.alpha:g}"
        if self.joint and len(self.taus) > 1:
            level += f" (alpha/{len(self.taus)} each)"
        kind = "FDR only, " if self.correction in FDR else ""
        scope = tau_scope(len(self.taus), self.joint)
        head = f"SegCertify {self.correction}, sigma={self.sigma:g}, n={self.n}"
        return f"{head}: {kind}{scope}, {level}"

    def _overlays(self, trainer: Trainer, overlays: list, h) -> None:
        """PNG overlays in ``overlays/`` (and to wandb) for the first images of rank 0's shard."""
        folder = self.output_dir / "overlays"
        folder.mkdir(exist_ok=True)
        paths = []
        for idx, x, mask, base, certified in overlays:
            path = folder / f"segcertify_{idx:05d}.png"
            paths.append(
                save_overlay(path, x, mask, base, certified, h.num_classes, h.ignore_index)
            )
        log_images(trainer, "cert/overlays", paths)
