"""SegCertify's report (rank 0): the radius-vs-certified-pixel-accuracy curve (TSV, PNG, wandb),
the ``cert/*`` scalars, the overlays of the first images and one line per tau."""

from __future__ import annotations

from typing import Any

from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info

from callbacks.reporting import log_images, log_locations, report_curve
from smoothcert.report.segcertify import SegCertifySummary, save_overlay

CURVE = "certified_pixel_accuracy"


def report_segcertify(trainer: Trainer, pl_module: LightningModule, seg: Any) -> dict[str, float]:
    """Writes and logs what the SegCertify callback ``seg`` kept: the curve and the scalars of its
    ``rows`` (the base model's and one per tau of every image), the PNG ``overlays`` ((idx, image,
    mask, base prediction, certified prediction) each) in ``overlays/``; says one line per tau
    and where the files are. Returns the summary scalars."""
    pooled = SegCertifySummary.of(seg.rows, seg.taus)
    summary = pooled.scalars(seg.prefix)
    xs, ys, drawing = pooled.curve()
    protocol = seg.protocol_text(pl_module, pooled.images, n0=seg.n0, n=seg.n)
    title = seg.config.title(seg.noise.name, seg.sigma, protocol)
    x_label = f"{seg.norm} radius"
    output_dir = seg.output_dir
    curve = report_curve(
        trainer, output_dir, CURVE, "radius", CURVE, xs, ys, title, summary, x_label, **drawing
    )
    folder = output_dir / "overlays"
    folder.mkdir(exist_ok=True)
    names = getattr(trainer.datamodule.dataset(seg.split), "classes", None)
    figures = []
    for idx, x, mask, base, certified in seg.overlays:
        path = folder / f"segcertify_{idx:05d}.png"
        maps = (mask, base, certified, seg.contract.num_classes, seg.ignore)
        figures.append(save_overlay(path, x, *maps, class_names=names))
    log_images(trainer, "cert/overlays", figures)
    for line in pooled.lines(seg.norm):
        rank_zero_info(line)
    log_locations(trainer, f"{output_dir / 'segcertify.tsv'} and segcertify_base.tsv", [curve])
    return summary
