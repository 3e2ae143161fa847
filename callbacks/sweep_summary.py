"""A Hydra callback: after a multirun, one summary of all jobs' certification results.

Writes ``<sweep dir>/sweep_summary/``: ``runs.tsv``/``.md`` (accuracy at each radius and ACR per
job), ``envelope.tsv``/``.md`` (Cohen et al.'s Table 1: per radius the best sigma, its certified
accuracy and its clean accuracy) and ``certified_accuracy.png`` (all jobs' curves in one plot),
and logs them to a wandb run in the sweep's group when the jobs used wandb.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from smoothcert.report import DEFAULT_RADII, Result, load_result, write_report

log = logging.getLogger(__name__)


def job_results(sweep_dir: Path) -> list[Result]:
    """Every job's ``certify.tsv`` under ``sweep_dir``, labelled by job directory, by sigma."""
    results = [
        load_result(path, label=path.parent.name)
        for path in sorted(sweep_dir.glob("*/certify.tsv"))
    ]
    return sorted(results, key=lambda r: (r.sigma if r.sigma is not None else 0.0, r.label))


class SweepSummary(Callback):
    """Summarises the certification results of all jobs of a Hydra multirun."""

    def __init__(self, radii: list[float] | None = None, subdir: str = "sweep_summary") -> None:
        self.radii = list(radii) if radii else list(DEFAULT_RADII)
        self.subdir = subdir

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        results = job_results(sweep_dir)
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
            top = max(max(r.radius for r in res.records) for res in results)
            grid = np.arange(0.0, top + 0.02, 0.01)
            curves = [certified_accuracy_curve(res.records, grid).tolist() for res in results]
            keys = [f"sigma={res.sigma} ({res.label})" for res in results]
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
