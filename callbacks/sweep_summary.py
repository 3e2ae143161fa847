"""A Hydra callback: after a multirun, one summary of all jobs' certification results.

Works for a sweep over any setting (``-m sigma=...``, ``-m certify.n=1000,10000,100000``,
``-m certify.alpha=...``, several at once): each job is labelled by the settings that differ
between the jobs, read from the job's ``.hydra/overrides.yaml`` (``n=1000``, or ``sigma=0.25,
alpha=0.01``). Writes ``<sweep dir>/sweep_summary/``: ``runs.tsv``/``.md`` (one row per job: its
swept values, sigma, accuracy at each radius and ACR), ``envelope.tsv``/``.md`` (Cohen et al.'s
Table 1 over the jobs: per radius the best job, its certified accuracy and its clean accuracy) and
``certified_accuracy.png`` (all jobs' curves in one plot), and logs them to a wandb run in the
sweep's group when the jobs used wandb. For every certifier (Cohen, SegCertify, center
smoothing) it also writes ``objectives.tsv``/``.md``/``.png``: each job's objective (the metric
its certifier declares, e.g. certified mIoU, or center smoothing's eps_out, lower is better),
the best job marked, and every certification scalar, from the jobs'
``certification_summary.json``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from callbacks.certification.base import SUMMARY_FILE
from callbacks.reporting import sweep_group, wandb_configured
from smoothcert.report import (
    DEFAULT_RADII,
    Result,
    accuracy_name,
    curve_names,
    load_result,
    markdown,
    mixed_warning,
    shared_protocol_text,
    write_report,
    write_tsv,
)
from smoothcert.report.plots import job_colours

log = logging.getLogger(__name__)


def job_overrides(job_dir: Path) -> dict[str, str]:
    """The command-line overrides of the Hydra job in ``job_dir`` as ``{key: value}`` (``+``,
    ``++`` and ``~`` prefixes dropped); empty if the job saved none (``hydra.output_subdir``
    null)."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    overrides = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    pairs = (str(item).partition("=") for item in overrides)
    return {key.lstrip("+~"): value for key, _, value in pairs}


def swept_settings(overrides: list[dict[str, str]]) -> list[str]:
    """The override keys whose value is not the same in every job (in order of appearance)."""
    keys = dict.fromkeys(key for job in overrides for key in job)
    return [key for key in keys if len({job.get(key) for job in overrides}) > 1]


def short_names(keys: list[str]) -> dict[str, str]:
    """Each key's last dotted part (``certify.n`` -> ``n``) where no other key shares it, else the
    whole key."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: tail if last.count(tail) == 1 else key for key, tail in zip(keys, last, strict=True)
    }


def _order(value: str | None) -> tuple[int, float | str]:
    """Sorts numbers numerically (1000 < 10000 < 100000 < 5e5), before any text."""
    if value is None:
        return (2, "")
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def _job_number(job: str) -> tuple[int, str]:
    digits = re.match(r"\d+", job)
    return (int(digits.group()) if digits else -1, job)


def job_files(sweep_dir: Path, name: str, summary_dir: str = "sweep_summary") -> list[Path]:
    """Every job's file called ``name`` under ``sweep_dir`` (not the summary's own folder)."""
    return sorted(
        p for p in sweep_dir.rglob(name) if summary_dir not in p.relative_to(sweep_dir).parts
    )


def job_labels(sweep_dir: Path, paths: list[Path]) -> tuple[list[str], list[str], list[dict]]:
    """For the jobs holding ``paths``: the swept settings, each job's label (the values of the
    settings the sweep varied, or its directory when nothing varied; made distinct) and each
    job's swept values."""
    jobs = [p.parent.relative_to(sweep_dir).as_posix() for p in paths]
    overrides = [job_overrides(p.parent) for p in paths]
    swept = swept_settings(overrides)
    names = short_names(swept)
    labels = [
        ", ".join(f"{names[key]}={job[key]}" for key in swept if key in job) or name
        for job, name in zip(overrides, jobs, strict=True)
    ]
    labels = [
        f"{label} ({job})" if labels.count(label) > 1 and label != job else label
        for label, job in zip(labels, jobs, strict=True)
    ]
    settings = [{key: job[key] for key in swept if key in job} for job in overrides]
    return swept, labels, settings


def job_results(sweep_dir: Path, summary_dir: str = "sweep_summary") -> list[Result]:
    """Every job's ``certify.tsv`` under ``sweep_dir``, one Result per job, labelled by the
    values of the settings the sweep varied (the job's directory when nothing varied; labels are
    made distinct), sorted by those values (numerically where they are numbers), then sigma."""
    paths = job_files(sweep_dir, "certify.tsv", summary_dir)
    jobs = [p.parent.relative_to(sweep_dir).as_posix() for p in paths]
    swept, labels, settings = job_labels(sweep_dir, paths)
    results = [
        load_result(path, label=label, settings=values)
        for path, label, values in zip(paths, labels, settings, strict=True)
    ]
    for result, job in zip(results, jobs, strict=True):
        result.source = f"{job}/certify.tsv"

    def key(result: Result) -> tuple:
        values = tuple(_order(result.settings.get(k)) for k in swept)
        sigma = result.sigma if result.sigma is not None else float("inf")
        return (*values, sigma, _job_number(result.source))

    return sorted(results, key=key)


def job_objectives(sweep_dir: Path, summary_dir: str = "sweep_summary") -> list[dict[str, Any]]:
    """One row per job that certified with any certifier (its ``certification_summary.json``):
    the job's label and swept values, the certifier, its objective and value, ``best`` marking
    the best job (largest value, or smallest for objectives minimised, e.g. center smoothing's
    eps_out), then every summary scalar. Sorted like ``job_results``."""
    paths = job_files(sweep_dir, SUMMARY_FILE, summary_dir)
    swept, labels, settings = job_labels(sweep_dir, paths)
    rows = []
    for path, label, values in zip(paths, labels, settings, strict=True):
        content = json.loads(path.read_text(encoding="utf-8"))
        row = {"job": label, **{key: values.get(key) for key in swept}}
        row.update(
            certifier=content["certifier"],
            objective=content["objective"],
            mode=content["objective_mode"],
            value=_number(content["value"]),
            best="",
        )
        rows.append((row, content["summary"]))
    rows.sort(key=lambda pair: (*(_order(pair[0].get(k)) for k in swept), pair[0]["job"]))
    scalars = list(dict.fromkeys(key for _, summary in rows for key in summary))
    table = [{**row, **{k: _scalar(k, summary.get(k)) for k in scalars}} for row, summary in rows]
    for objective in dict.fromkeys(row["objective"] for row in table):
        group = [r for r in table if r["objective"] == objective and math.isfinite(r["value"])]
        if group:
            pick = min if group[0]["mode"] == "min" else max
            pick(group, key=lambda r: r["value"])["best"] = "*"
    return table


def _number(value: object) -> float:
    return float("nan") if value is None else float(value)


def _scalar(key: str, value: object) -> float | int:
    """A summary scalar; a count (``cert/num_examples``) as the integer it is."""
    number = _number(value)
    return int(number) if key.endswith("num_examples") and number.is_integer() else number


def colours_by_job(*groups: list[str]) -> dict[str, str]:
    """One colour per job label, in order of first appearance across ``groups`` (the curve plot's
    runs, then the objectives' jobs), so a job has the same colour in every plot."""
    labels = list(dict.fromkeys(label for group in groups for label in group))
    return dict(zip(labels, job_colours(len(labels)), strict=True))


def write_objectives(
    rows: list[dict[str, Any]],
    out: Path,
    colours: dict[str, str] | None = None,
    title: str = "",
) -> list[Path]:
    """``objectives.tsv``/``.md`` and ``objectives.png`` in ``out``: each job's objective as a bar
    in the job's colour (``colours``, label -> colour; the curve plot's), the best job's bar
    outlined, hatched and labelled ``best``, every bar's value written at its end, one panel per
    objective, under ``title``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    write_tsv(out / "objectives.tsv", rows)
    (out / "objectives.md").write_text(markdown(rows), encoding="utf-8")
    objectives = list(dict.fromkeys(row["objective"] for row in rows))
    colours = colours or colours_by_job([row["job"] for row in rows])
    figure, axes = plt.subplots(
        len(objectives), 1, figsize=(7, 1.7 + 0.45 * len(rows)), squeeze=False
    )
    for axis, objective in zip(axes[:, 0], objectives, strict=True):
        group = [row for row in rows if row["objective"] == objective]
        bars = axis.barh(
            [row["job"] for row in group],
            [row["value"] for row in group],
            color=[colours.get(row["job"], "tab:gray") for row in group],
        )
        for bar, row in zip(bars, group, strict=True):
            text = f"{row['value']:.4g}" + ("  best" if row["best"] else "")
            axis.annotate(
                text,
                (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontweight="bold" if row["best"] else "normal",
            )
            if row["best"]:
                bar.set(edgecolor="black", linewidth=2, hatch="//")
        axis.invert_yaxis()
        axis.margins(x=0.25)
        better = "lower" if group[0]["mode"] == "min" else "higher"
        axis.set_xlabel(f"{objective} ({group[0]['certifier']}, {better} is better)")
    head = "objective per job (best: hatched, outlined)"
    figure.suptitle(f"{head}\n{title}" if title else head, fontsize=10)
    figure.tight_layout()
    figure.savefig(out / "objectives.png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return [out / "objectives.tsv", out / "objectives.md", out / "objectives.png"]


class SweepSummary(Callback):
    """Summarises the certification results of all jobs of a Hydra multirun."""

    def __init__(self, radii: list[float] | None = None, subdir: str = "sweep_summary") -> None:
        self.radii = list(radii) if radii else list(DEFAULT_RADII)
        self.subdir = subdir

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        out = sweep_dir / self.subdir
        objectives = job_objectives(sweep_dir, self.subdir)
        results = job_results(sweep_dir, self.subdir)
        colours = colours_by_job([r.label for r in results], [row["job"] for row in objectives])
        if objectives:
            title = f"{sweep_dir.name}: {shared_protocol_text(results)}".rstrip(": ")
            write_objectives(objectives, out, colours, title)
            for row in objectives:
                if row["best"]:
                    log.info(
                        "sweep summary: best %s = %.4g (%s): %s",
                        row["objective"], row["value"], row["mode"], row["job"],
                    )  # fmt: skip
        if not results:
            if not objectives:
                log.info("sweep summary: no job certified anything under %s", sweep_dir)
            else:
                log.info("sweep summary of %d jobs: %s", len(objectives), out)
            return
        tables = write_report(results, out, self.radii, [colours[r.label] for r in results])
        log.info("sweep summary of %d jobs: %s", len(results), out)
        if warning := mixed_warning(results):  # a sweep over certify.n is one on purpose
            log.warning("sweep summary: %s (see envelope.md)", warning)
        if "wandb" in (config.get("logger") or {}):
            self._log_wandb(config, results, tables, sweep_dir, out)

    def _log_wandb(
        self, config: DictConfig, results: list[Result], tables: dict, sweep_dir: Path, out: Path
    ) -> None:
        import numpy as np
        import wandb

        from smoothcert.metrics.certified import certified_accuracy_curve

        settings = config.logger.wandb
        offline = settings.get("offline")
        offline = (not wandb_configured()) if offline is None else bool(offline)
        run = wandb.init(
            project=settings.get("project", "smoothcert"),
            dir=str(out),
            group=sweep_group(config.task_name, sweep_dir),
            name="sweep-summary",
            job_type="sweep-summary",
            mode="offline" if offline else None,
            reinit="create_new",
        )
        try:
            top = max((r.radius for res in results for r in res.records), default=0.0)
            grid = np.arange(0.0, top + 0.02, 0.01)
            curves = [certified_accuracy_curve(res.records, grid).tolist() for res in results]
            keys, name = curve_names(results), accuracy_name(results)
            heuristic = "" if name == "certified_accuracy" else " (heuristic)"
            plot = wandb.plot.line_series(
                grid.tolist(),
                curves,
                keys=keys,
                xname="radius",
                title=f"{name.replace('_', ' ')}{heuristic}, all jobs",
            )
            log_tables = {
                f"sweep/{name}": wandb.Table(
                    columns=list(rows[0]),
                    data=[
                        [str(v) if isinstance(v, str) else v for v in row.values()] for row in rows
                    ],
                )
                for name, rows in tables.items()
            }
            images = {
                f"sweep/{stem}_png": wandb.Image(str(out / f"{stem}.png"), caption=stem)
                for stem in (name, "objectives")
                if (out / f"{stem}.png").is_file()
            }
            run.log({f"sweep/{name}": plot, **log_tables, **images})
        finally:
            run.finish()
