"""Writing certified curves and scalars: TSV and PNG in the run directory, and every logger."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pytorch_lightning import Trainer
from pytorch_lightning.loggers import WandbLogger

from smoothcert.plots import plot_curves


def write_curve_tsv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[float]]) -> Path:
    """A plain TSV with a header row; floats at full precision."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(columns) + "\n")
        for row in rows:
            handle.write("\t".join(repr(float(v)) for v in row) + "\n")
    return path


def report_curve(
    trainer: Trainer,
    output_dir: Path,
    stem: str,
    x_name: str,
    y_name: str,
    xs: Sequence[float],
    ys: Sequence[float],
    title: str,
    scalars: Mapping[str, float],
) -> dict[str, Path]:
    """Writes ``stem.tsv`` and ``stem.png``, logs the scalars to every logger and, for wandb, the
    curve as a line plot over a ``wandb.Table`` plus the scalars in the run summary.

    Call on global rank zero only. Returns the written paths.
    """
    rows = list(zip(xs, ys, strict=True))
    tsv = write_curve_tsv(output_dir / f"{stem}.tsv", [x_name, y_name], rows)
    png = plot_curves(
        output_dir / f"{stem}.png",
        {title: (xs, ys)},
        title,
        x_name.replace("_", " "),
        y_name.replace("_", " "),
    )
    step = trainer.global_step
    for logger in trainer.loggers:
        logger.log_metrics(dict(scalars), step=step)
        if isinstance(logger, WandbLogger):
            import wandb

            table = wandb.Table(
                columns=[x_name, y_name], data=[[float(a), float(b)] for a, b in rows]
            )
            # The line plot stores its table under "cert/{stem}_table". No `step=`: wandb's own
            # step may be ahead of the trainer's (certify.py); wandb drops data logged behind it.
            plot = wandb.plot.line(table, x_name, y_name, title=title)
            logger.experiment.log({f"cert/{stem}": plot, "trainer/global_step": step})
            logger.experiment.summary.update(dict(scalars))
        logger.save()
    return {"tsv": tsv, "png": png}


def wandb_run_dir(trainer: Trainer) -> str | None:
    """Where the wandb run's files are (offline runs sync later with ``wandb sync DIR``)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return str(Path(logger.experiment.dir).parent)
    return None
