"""Median smoothing's report: per record file a section of ``smoothcert.report.median`` (curves
against eps, ``cert/*`` scalars, a line) and the box figures, or, for a detector, the AP@50
section and the figures of the certified detections. The detector is not run again: the base
AP uses the outputs at the clean inputs that certification kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import LightningModule

from smoothcert.certifiers.classification import eval_mode
from smoothcert.certifiers.median import as_output_vectors
from smoothcert.report.median import (
    DETECTION_CURVE,
    detection_notes,
    detection_section,
    median_section,
    save_box_figures,
    save_detection_figures,
)
from smoothcert.report.parts import Report


def clean_outputs(pl_module: LightningModule, median: Any, indices: list[int]) -> list:
    """The base function's output at each clean example of ``indices``: the one certification
    kept (``median.clean``), else (an example certified by another rank or an earlier run that
    this one resumes) the contract's structured output, evaluated once here."""
    dataset, outputs = pl_module.trainer.datamodule.dataset(median.split), []
    for idx in indices:
        if idx not in median.clean:
            x = torch.as_tensor(dataset[idx][0])[None].to(pl_module.device)
            with eval_mode(pl_module), torch.inference_mode():
                median.clean[idx] = as_output_vectors(median.contract.structured_output(x))[0]
        outputs.append(median.clean[idx].cpu())
    return outputs


def median_report(pl_module: LightningModule, median: Any) -> Report:
    """The report of what the median callback ``median`` kept (its ``records`` by file, its
    ``figures``: (idx, x, target, median record) of the first examples)."""
    smoother, contract, folder = median.smoother, median.contract, median.output_dir
    guarantee = f"{smoother.guarantee}, alpha {smoother.alpha:g}"
    statement, report = smoother.statement(median.outputs), Report()
    layout = contract.detection_layout
    if layout is not None:  # slots are often empty (inf): AP instead of interval widths
        records = median.records["median"]
        dataset = pl_module.trainer.datamodule.dataset(median.split)
        targets = [dataset[r.idx][1] for r in records]
        clean = clean_outputs(pl_module, median, [r.idx for r in records])
        report.sections.append(detection_section(records, layout, targets, clean, guarantee))
        figures = save_detection_figures(
            folder / "median_examples", median.figures, layout, guarantee
        )
        report.figures["cert/median/detections"] = figures
    else:
        for key, certified in median.records.items():
            if certified:
                section = median_section(
                    key, certified, contract.output_kind, median.sigma, statement
                )
                report.sections.append(section)
        if contract.output_kind == "box" and median.figures:
            figures = save_box_figures(folder / "median_examples", median.figures, guarantee)
            report.figures["cert/median/examples"] = figures
    report.records = f"{', '.join(f'{k}.tsv' for k in median.records)} in {folder}"
    return report


def note_detection_columns(folder: Path, statement: str) -> None:
    """Heads ``detection_ap.tsv`` (written in ``folder``) with ``#`` lines saying which guarantee
    each column carries (``statement``: the bounds')."""
    path = folder / f"{DETECTION_CURVE}.tsv"
    text = path.read_text(encoding="utf-8")
    path.write_text("".join(f"# {n}\n" for n in detection_notes(statement)) + text, "utf-8")
