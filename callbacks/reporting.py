"""Writing certified curves and scalars: TSV and PNG in the run directory, and every logger."""

from __future__ import annotations

import math
import netrc
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from pytorch_lightning import Trainer
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info

from smoothcert.report.parts import Curve, Points, Report
from smoothcert.report.parts import say_scalars as say_scalars  # kept for its callers
from smoothcert.report.plots import plot_curves


def key_root(sound: bool) -> str:
    """The first part of a certification's metric keys: ``cert`` for a certificate (a number
    carrying the guarantee its proof gives), ``heuristic`` for a number without one (e.g. BaseSPT,
    Cohen's radius over rotation angles, which do not compose). The one place that decides it:
    every key a certifier logs, and the wandb plots, start with it."""
    return "cert" if sound else "heuristic"


def check_keys(keys: Iterable[str], sound: bool) -> None:
    """Raises ValueError if a heuristic (not ``sound``) would write a key under ``cert/``: the
    guard every logged scalar and summary passes through."""
    claimed = sorted(key for key in keys if not sound and key.startswith("cert/"))
    if claimed:
        raise ValueError(f"a heuristic may not log under cert/ (not a certificate): {claimed}")


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
    x_label: str | None = None,
    sound: bool = True,
    **drawing: object,
) -> dict[str, Path]:
    """Writes ``stem.tsv`` and ``stem.png``, logs the scalars to every logger and, for wandb, the
    curve as a line plot over a ``wandb.Table``, the PNG as a ``wandb.Image`` and the scalars in
    the run summary. The figure's x axis is labelled ``x_label`` (default: ``x_name``, the TSV
    column); ``drawing`` goes to ``plot_curves`` (``points``, ``levels``, ``step``,
    ``unit_interval``). ``sound`` False (a heuristic): the plots go under ``heuristic/`` and no
    scalar may be under ``cert/``.

    Call on global rank zero only. Returns the written paths.
    """
    return report_curves(
        trainer,
        output_dir,
        stem,
        x_name,
        xs,
        {y_name: ys},
        title,
        scalars,
        x_label=x_label,
        sound=sound,
        **drawing,
    )


def _finite_or_none(value: float) -> float | None:
    """JSON has no inf or nan: wandb tables get None (a gap) for them."""
    return float(value) if math.isfinite(float(value)) else None


def report_curves(
    trainer: Trainer,
    output_dir: Path,
    stem: str,
    x_name: str,
    xs: Sequence[float],
    series: Mapping[str, Sequence[float]],
    title: str,
    scalars: Mapping[str, float],
    y_label: str | None = None,
    certified_accuracy: bool = True,
    x_label: str | None = None,
    sound: bool = True,
    **drawing: object,
) -> dict[str, Path]:
    """``report_curve`` for one or more ``series`` (name -> ys) over the same ``xs``.

    ``stem.tsv`` has the columns ``x_name`` and one per series; ``stem.png`` draws them all (step
    lines on [0, 1] if ``certified_accuracy``, else lines with markers on a y axis fitting the
    data); wandb gets a line plot of one series over a ``wandb.Table``, or of several with
    ``wandb.plot.line_series`` (non-finite values become gaps; the chart's title is the first
    line of ``title``), and the PNG as ``cert/<stem>_png``. Call on global rank zero only.
    """
    drawing = {"step": certified_accuracy, "unit_interval": certified_accuracy, **drawing}
    names = list(series)
    rows = [[x, *ys] for x, *ys in zip(xs, *series.values(), strict=True)]
    tsv = write_curve_tsv(output_dir / f"{stem}.tsv", [x_name, *names], rows)
    y_label = y_label or names[0]
    curves = {name: (xs, ys) for name, ys in series.items()} if len(names) > 1 else None
    png = plot_curves(
        output_dir / f"{stem}.png",
        curves or {names[0].replace("_", " "): (xs, series[names[0]])},
        title,
        (x_label or x_name).replace("_", " "),
        y_label.replace("_", " "),
        **drawing,
    )
    if len(names) == 1:

        def plot(wandb):
            data = [[_finite_or_none(v) for v in row] for row in rows]
            table = wandb.Table(columns=[x_name, names[0]], data=data)
            return wandb.plot.line(table, x_name, names[0], title=chart_title(title))
    else:
        plot = _line_series(curves, title, x_name)
    _log(trainer, stem, plot, scalars, png, sound)
    return {"tsv": tsv, "png": png}


def report_series(
    trainer: Trainer,
    output_dir: Path,
    stem: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[float]],
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    scalars: Mapping[str, float],
    x_name: str,
    y_label: str,
    sound: bool = True,
) -> dict[str, Path]:
    """Curves whose series have x values of their own: ``stem.tsv`` holds ``rows`` under
    ``columns`` (a long table, one row per point), ``stem.png`` draws ``curves`` (label -> (xs,
    ys)) as lines with markers on a y axis fitting the data, wandb gets them as one
    ``wandb.plot.line_series`` (non-finite values become gaps) and every logger the ``scalars``.

    Call on global rank zero only. Returns the written paths.
    """
    tsv = write_curve_tsv(output_dir / f"{stem}.tsv", columns, rows)
    axes = (x_name.replace("_", " "), y_label.replace("_", " "))
    png = plot_curves(output_dir / f"{stem}.png", dict(curves), title, *axes, False, False)
    _log(trainer, stem, _line_series(curves, title, x_name), scalars, png, sound)
    return {"tsv": tsv, "png": png}


def _line_series(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], title, x_name):
    """A function of the wandb module making a line plot of ``curves``, each on its own xs."""

    def plot(wandb):
        xs = [[float(x) for x in points[0]] for points in curves.values()]
        ys = [[_finite_or_none(v) for v in points[1]] for points in curves.values()]
        return wandb.plot.line_series(
            xs, ys, keys=list(curves), title=chart_title(title), xname=x_name
        )

    return plot


def chart_title(title: str) -> str:
    """A wandb chart's title: the figure title's first line (the rest is in the logged config)."""
    return title.splitlines()[0] if title else title


def _log(
    trainer: Trainer,
    stem: str,
    plot: Callable,
    scalars: Mapping[str, float],
    png: Path | None = None,
    sound: bool = True,
) -> None:
    """Logs the scalars to every logger and, for wandb, ``plot(wandb)`` under ``cert/{stem}``
    and the figure ``png`` as a ``wandb.Image`` under ``cert/{stem}_png`` (``heuristic/`` in
    place of ``cert/`` when not ``sound``), with the scalars in the run summary."""
    check_keys(scalars, sound)
    root = key_root(sound)
    step = trainer.global_step
    for logger in trainer.loggers:
        logger.log_metrics(dict(scalars), step=step)
        if isinstance(logger, WandbLogger):
            import wandb

            # The line plot stores its table under "cert/{stem}_table". No `step=`: wandb's own
            # step may be ahead of the trainer's (certify.py); wandb drops data logged behind it.
            logged = {f"{root}/{stem}": plot(wandb), "trainer/global_step": step}
            if png is not None:
                logged[f"{root}/{stem}_png"] = wandb.Image(str(png), caption=png.stem)
            logger.experiment.log(logged)
            logger.experiment.summary.update(dict(scalars))
        logger.save()


def wandb_run_dir(trainer: Trainer) -> str | None:
    """Where the wandb run's files are (offline runs sync later with ``wandb sync DIR``)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return str(Path(logger.experiment.dir).parent)
    return None


def log_images(trainer: Trainer, key: str, paths: Sequence[Path]) -> None:
    """Logs the PNG files ``paths`` under ``key`` to every wandb logger (call on rank 0)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and paths:
            import wandb

            images = [wandb.Image(str(p), caption=p.stem) for p in paths]
            logger.experiment.log({key: images, "trainer/global_step": trainer.global_step})


def _value(text: str) -> int | float | str:
    """A TSV cell as the number it is, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_tsv_table(path: Path) -> tuple[dict[str, str], list[str], list[list]]:
    """A record file's ``# key: value`` header, its columns and its rows (numbers as numbers)."""
    header, columns, rows = {}, [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            header[key.strip()] = value.strip()
        elif line and not columns:
            columns = line.split("\t")
        elif line:
            rows.append([_value(cell) for cell in line.split("\t")])
    return header, columns, rows


def log_records(trainer: Trainer, files: Sequence[Path], sound: bool = True) -> None:
    """For every wandb logger (call on rank 0): each record file as a per-example table
    ``cert/records/<stem>`` (``heuristic/records/<stem>`` when not ``sound``; the file's rows and
    columns, e.g. ``certify.tsv``'s ``idx label predict radius correct time``) and all of them in
    one ``certification`` artifact (the files as written, their ``#`` headers as its metadata),
    so the records travel with the run."""
    files = [path for path in files if path.is_file()]
    root = key_root(sound)
    for logger in trainer.loggers:
        if not isinstance(logger, WandbLogger) or not files:
            continue
        import wandb

        run = logger.experiment
        tables, metadata = {}, {}
        for path in files:
            header, columns, rows = read_tsv_table(path)
            tables[f"{root}/records/{path.stem}"] = wandb.Table(columns=columns, data=rows)
            metadata[path.name] = header
        run.log({**tables, "trainer/global_step": trainer.global_step})
        artifact = wandb.Artifact(f"certification-{run.id}", "certification", metadata=metadata)
        for path in files:
            artifact.add_file(str(path), name=path.name)
        run.log_artifact(artifact)


def log_locations(trainer: Trainer, records: str, curves: Sequence[Mapping[str, Path]]) -> None:
    """Says (rank 0) where the records, the curves and the wandb run are."""
    rank_zero_info(f"records: {records}")
    for paths in curves:
        rank_zero_info(f"curve:   {paths['tsv']} and {paths['png']}")
    run_dir = wandb_run_dir(trainer)
    if run_dir:
        rank_zero_info(f"wandb:   {run_dir} (offline runs upload with `wandb sync {run_dir}`)")


def publish(trainer: Trainer, output_dir: Path, report: Report, sound: bool = True) -> None:
    """Writes and logs a certifier's ``report`` (call on global rank zero only): each section in
    order (its curve to ``<stem>.tsv``/``.png`` and wandb under ``key_root(sound)/<stem>`` with
    its scalars, or its scalars alone to every logger), then says its lines; then logs the
    figures to wandb and says where the records, the curves and the wandb run are."""
    written = []
    for section in report.sections:
        curve = section.curve
        if isinstance(curve, Curve):
            written.append(
                report_curves(
                    trainer,
                    output_dir,
                    curve.stem,
                    curve.x_name,
                    curve.xs,
                    curve.series,
                    curve.title,
                    section.scalars,
                    y_label=curve.y_label,
                    certified_accuracy=curve.certified_accuracy,
                    x_label=curve.x_label,
                    sound=sound,
                    **curve.drawing,
                )  # fmt: skip
            )
        elif isinstance(curve, Points):
            written.append(
                report_series(
                    trainer,
                    output_dir,
                    curve.stem,
                    curve.columns,
                    curve.rows,
                    curve.curves,
                    curve.title,
                    section.scalars,
                    curve.x_name,
                    curve.y_label,
                    sound=sound,
                )  # fmt: skip
            )
        else:
            log_scalars(trainer, section.scalars, sound)
        for line in section.lines:
            rank_zero_info(line)
    for key, paths in report.figures.items():
        log_images(trainer, key, paths)
    log_locations(trainer, report.records, written)


def log_scalars(trainer: Trainer, scalars: Mapping[str, float], sound: bool = True) -> None:
    """Logs ``scalars`` to every logger (no curve; call on global rank zero only)."""
    check_keys(scalars, sound)
    for logger in trainer.loggers:
        logger.log_metrics(dict(scalars), step=trainer.global_step)
        logger.save()


def wandb_configured() -> bool:
    """True when the user chose a mode (WANDB_MODE) or has credentials (WANDB_API_KEY, netrc)."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def sweep_group(task_name: str, sweep_dir: str | Path) -> str:
    """The wandb group shared by every job of one Hydra multirun (and its sweep summary)."""
    return f"{task_name}-{Path(sweep_dir).name}"
