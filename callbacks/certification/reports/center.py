"""Center smoothing's report (rank 0), per distance: the curves of the median eps_out and the
median smoothing error against eps_in (TSV, PNG, wandb), the ``cert/*`` scalars and the example
figures; the figures themselves are drawn by ``smoothcert.report.center``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info

from callbacks.certification.settings.center import guarantee
from callbacks.reporting import log_images, log_locations, report_curves, report_series
from smoothcert.records.center import CenterExample, CenterRecord, median_curves
from smoothcert.report.center import save_center_example, say, sigma_series


def report_distance(
    trainer: Trainer,
    output_dir: Path,
    name: str,
    examples: Sequence[CenterExample],
    h: Sequence[float] | None,
    extra_scalars: Mapping[str, float],
    statement: str = "",
) -> tuple[dict[str, float], dict[str, Path]]:
    """Writes and logs (rank 0) the curves of the median eps_out and the median smoothing error
    against eps_in under the distance ``name`` (``center_curve_<name>.tsv``/``.png``, wandb) with
    the scalars ``cert/<name>/eps_out@<eps_in>`` (and ``eps_out@h<h>`` with ``h``: eps_in =
    h * sigma), ``cert/<name>/smoothing_error`` and
    ``cert/<name>/abstain`` (each ending in ``/sigma<sigma>`` when several sigmas were certified;
    plus ``extra_scalars``), and says them in one line per sigma. ``statement`` (what each
    certificate guarantees) is the plot title's second line.

    One sigma: the curve TSV has the columns ``eps_in eps_out smoothing_error``. Several: a long
    table, one row per point, ``h sigma eps_in eps_out smoothing_error`` (rows by h, then sigma)
    with ``h``, else ``sigma eps_in eps_out smoothing_error``. Returns the scalars and the
    curve's paths.
    """
    levels = [list(level) for level in zip(*(example.levels for example in examples), strict=True)]
    sigmas = [level[0].sigma for level in levels]
    several = len(sigmas) > 1
    medians, scalars = [median_curves(level) for level in levels], {}
    for sigma, level, median in zip(sigmas, levels, medians, strict=True):
        at = f"/sigma{sigma:g}" if several else ""
        for eps, value in zip(median["eps_in"], median["eps_out"], strict=True):
            scalars[f"cert/{name}/eps_out@{eps:g}{at}"] = value
        for factor, value in zip(h or median["eps_out"], median["eps_out"], strict=True):
            if h:  # eps_in = h * sigma: the same key at every sigma, so sigma sweeps compare
                scalars[f"cert/{name}/eps_out@h{factor:g}{at}"] = value
        scalars[f"cert/{name}/smoothing_error{at}"] = error = median["smoothing_error"][0]
        scalars[f"cert/{name}/abstain{at}"] = abstain = sum(r.abstain for r in level) / len(level)
        per_example = sum(r.time for r in level) / len(level)
        rank_zero_info(
            f"center {name}, sigma={sigma:g}: eps_in {say(median['eps_in'])} -> median eps_out "
            f"{say(median['eps_out'])}; median smoothing error {error:.4g}, abstain "
            f"{abstain:.3f}, {per_example:.2f} s/example"
        )
    scalars.update(extra_scalars)
    title = f"center smoothing ({name}), sigma={', '.join(f'{s:g}' for s in sigmas)}: median"
    title += f" eps_out\n{statement}" if statement else " eps_out"
    stem, y_label = f"center_curve_{name}", f"{name} distance"
    if not several:
        series = {key: medians[0][key] for key in ("eps_out", "smoothing_error")}
        xs = medians[0]["eps_in"]
        paths = report_curves(
            trainer, output_dir, stem, "eps_in", xs, series, title, scalars, y_label, False
        )
        return scalars, paths
    columns, rows, curves = sigma_series(medians, sigmas, h)
    paths = report_series(
        trainer, output_dir, stem, columns, rows, curves, title, scalars, "eps_in", y_label
    )
    return scalars, paths


def save_examples(
    trainer: Trainer,
    folder: Path,
    name: str,
    kind: str,
    examples: Sequence[tuple],
    records: Sequence[CenterRecord],
    num_classes: int | None = None,
) -> list[Path]:
    """PNGs ``folder/center_<name>_<idx>.png`` of ``examples`` ((idx, x, base output, center or
    None) each, smoothed at the sigma of ``records``), also logged to wandb as
    ``cert/<name>/examples``."""
    folder.mkdir(parents=True, exist_ok=True)
    errors = {r.idx: r.smoothing_error for r in records}
    sigma = records[0].sigma if records else None
    paths = []
    for idx, x, base, center in examples:
        error = "abstained" if center is None else f"{errors[idx]:.4g}"
        title = f"{name} #{idx}, sigma={sigma:g}: d(base, smoothed) = {error}"
        path = folder / f"center_{name}_{idx:05d}.png"
        paths.append(save_center_example(path, kind, x, base, center, num_classes, title))
    log_images(trainer, f"cert/{name}/examples", paths)
    return paths


def report_center(trainer: Trainer, pl_module: LightningModule, center: Any) -> dict[str, float]:
    """Everything rank 0 reports for the center callback ``center``'s kept ``records`` (per
    distance): curves (per h across the sigmas with ``h``), scalars (with
    ``cert/time_per_example``, the seconds per example under all distances and sigmas, and
    ``cert/num_examples``), the example ``figures`` (smoothed at the first sigma) and where the
    files are; the protocol and what each certificate guarantees go under the curves' titles.
    Returns the scalars."""
    records, output_dir, contract = center.records, center.output_dir, center.contract
    statement = guarantee(next(iter(center.smoothers.values()))[0], short=True)
    count = len(next(iter(records.values()), []))
    sizes = {key: center.settings[key] for key in ("n", "m", "alpha1", "alpha2")}
    statement = f"{center.protocol_text(pl_module, count, **sizes)}\n{statement}".strip()
    seconds: dict[int, float] = {}
    for certified in records.values():
        for example in certified:
            seconds[example.idx] = seconds.get(example.idx, 0.0) + example.time
    overall = {
        "cert/time_per_example": sum(seconds.values()) / len(seconds),
        "cert/num_examples": float(len(seconds)),
    }
    summary, curves = {}, []
    for position, (name, certified) in enumerate(records.items()):
        extra = overall if position == 0 else {}
        scalars, paths = report_distance(
            trainer, output_dir, name, certified, center.h, extra, statement
        )
        summary.update(scalars)
        curves.append(paths)
        folder = output_dir / "center_examples"
        first = [example.levels[0] for example in certified]
        examples = center.figures[name]
        kind, classes = contract.output_kind, contract.num_classes
        save_examples(trainer, folder, name, kind, examples, first, classes)
    files = ", ".join(f"center_{name}.tsv" for name in records)
    log_locations(trainer, f"{files} in {output_dir}", curves)
    return summary
