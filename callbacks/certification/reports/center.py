"""Center smoothing's report: per distance a section of ``smoothcert.report.center`` (curves of
the median eps_out and smoothing error, ``cert/*`` scalars, lines) and the example figures, under
the protocol and what each certificate guarantees."""

from __future__ import annotations

from typing import Any

from pytorch_lightning import LightningModule

from callbacks.certification.settings.center import guarantee
from smoothcert.report.center import distance_section, overall_scalars, save_examples
from smoothcert.report.parts import Report


def center_report(pl_module: LightningModule, center: Any) -> Report:
    """The report of what the center callback ``center`` kept: its ``records`` per distance (the
    first distance's section also has ``overall_scalars``), the example ``figures`` (smoothed at
    the first sigma, wandb ``cert/<distance>/examples``) in ``center_examples/``."""
    records, contract = center.records, center.contract
    count = len(next(iter(records.values()), []))
    sizes = {key: center.settings[key] for key in ("n", "m", "alpha1", "alpha2")}
    statement = guarantee(next(iter(center.smoothers.values()))[0], short=True)
    statement = f"{center.protocol_text(pl_module, count, **sizes)}\n{statement}".strip()
    report, folder = Report(), center.output_dir / "center_examples"
    for position, (name, certified) in enumerate(records.items()):
        extra = overall_scalars(records) if position == 0 else {}
        report.sections.append(distance_section(name, certified, center.h, extra, statement))
        first = [example.levels[0] for example in certified]
        figures = (name, contract.output_kind, center.figures[name], first, contract.num_classes)
        report.figures[f"cert/{name}/examples"] = save_examples(folder, *figures)
    report.records = f"{', '.join(f'center_{name}.tsv' for name in records)} in {center.output_dir}"
    return report
