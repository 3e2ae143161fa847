"""A Hydra callback: after a multirun, one summary of all jobs' certification results.

Works for a sweep over any setting (``-m sigma=...``, ``-m certify.n=1000,10000,100000``,
``-m certify.alpha=...``, several at once): each job is labelled by the settings that differ
between the jobs, read from the job's ``.hydra/overrides.yaml`` (``n=1000``, or ``sigma=0.25,
alpha=0.01``). Writes ``<sweep dir>/sweep_summary/``: ``runs.tsv``/``.md`` (one row per job: its
swept values, sigma, accuracy at each radius and ACR), ``envelope.tsv``/``.md`` (Cohen et al.'s
Table 1 over the jobs: per radius the best job, its certified accuracy and its clean accuracy) and
``certified_accuracy.png`` (all jobs' curves in one plot), and logs them to a wandb run in the
sweep's group when the jobs used wandb.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from smoothcert.report import DEFAULT_RADII, Result, curve_names, load_result, write_report

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


def job_results(sweep_dir: Path, summary_dir: str = "sweep_summary") -> list[Result]:
    """Every job's ``certify.tsv`` under ``sweep_dir``, one Result per job, labelled by the
    values of the settings the sweep varied (the job's directory when nothing varied; labels are
    made distinct), sorted by those values (numerically where they are numbers), then sigma."""
    paths = sorted(
        p
        for p in sweep_dir.rglob("certify.tsv")
        if summary_dir not in p.relative_to(sweep_dir).parts
    )
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
    results = [
        load_result(path, label=label, settings={key: job[key] for key in swept if key in job})
        for path, label, job in zip(paths, labels, overrides, strict=True)
    ]
    for result, job in zip(results, jobs, strict=True):
        result.source = f"{job}/certify.tsv"

    def key(result: Result) -> tuple:
        values = tuple(_order(result.settings.get(k)) for k in swept)
        sigma = result.sigma if result.sigma is not None else float("inf")
        return (*values, sigma, _job_number(result.source))

    return sorted(results, key=key)


class SweepSummary(Callback):
    """Summarises the certification results of all jobs of a Hydra multirun."""

    def __init__(self, radii: list[float] | None = None, subdir: str = "sweep_summary") -> None:
        self.radii = list(radii) if radii else list(DEFAULT_RADII)
        self.subdir = subdir

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        results = job_results(sweep_dir, self.subdir)
        if not results:
            log.info("sweep summary: no job wrote a certify.tsv under %s", sweep_dir)
            return
        out = sweep_dir / self.subdir
        tables = write_report(results, out, self.radii)
        log.info("sweep summary of %d jobs: %s", len(results), out)
        if "wandb" in (config.get("logger") or {}):
            self._log_wandb(config, results, tables, sweep_dir, out)

    def _log_wandb(
        self, config: DictConfig, results: list[Result], tables: dict, sweep_dir: Path, out: Path
    ) -> None:
        import numpy as np
        import wandb

        from lightning_modules.wandb_setup import sweep_group, wandb_configured
        from smoothcert.curves import certified_accuracy_curve

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
            keys = curve_names(results)
            plot = wandb.plot.line_series(
                grid.tolist(),
                curves,
                keys=keys,
                xname="radius",
                title="certified accuracy, all jobs",
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
            run.log({"sweep/certified_accuracy": plot, **log_tables})
        finally:
            run.finish()
