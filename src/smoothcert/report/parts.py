"""What a certifier reports, as plain data: curves, scalars, the lines it says and its figures.

A certifier builds a :class:`Report` from its records (pure: no Lightning, no wandb, no files);
the certification callback's base class writes it (``callbacks.reporting.publish``): each
section's curve to ``<stem>.tsv`` and ``<stem>.png`` and to wandb under ``cert/<stem>`` (or
``heuristic/<stem>`` for a heuristic), its scalars to every logger, its lines to the console,
then the figures and where the records are. The union of the sections' scalars is the
certifier's ``summary`` (the objective among them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def say_scalars(scalars: Mapping[str, float], prefix: str = "", digits: int = 3) -> str:
    """``acc@0.50=0.685, acr=0.552, num_examples=200``: keys without ``prefix``, values to
    ``digits`` decimals, counts (keys ending in ``num_examples``) as the integers they are."""
    words = []
    for key, value in scalars.items():
        count = key.endswith("num_examples") and float(value).is_integer()
        words.append(f"{key.removeprefix(prefix)}={int(value) if count else f'{value:.{digits}f}'}")
    return ", ".join(words)


@dataclass
class Curve:
    """One or more ``series`` (name -> ys) over the same ``xs``: ``<stem>.tsv`` has the columns
    ``x_name`` and one per series, ``<stem>.png`` draws them (step lines on [0, 1] when
    ``certified_accuracy``; ``drawing`` goes to ``plot_curves``: ``points``, ``levels``,
    ``step``), under ``title`` with axes ``x_label`` (default ``x_name``) and ``y_label``
    (default: the first series' name)."""

    stem: str
    x_name: str
    xs: Sequence[float]
    series: Mapping[str, Sequence[float]]
    title: str
    x_label: str | None = None
    y_label: str | None = None
    certified_accuracy: bool = True
    drawing: Mapping[str, object] = field(default_factory=dict)


@dataclass
class Points:
    """Curves whose series have x values of their own: ``<stem>.tsv`` holds ``rows`` under
    ``columns`` (a long table), ``<stem>.png`` draws ``curves`` (label -> (xs, ys)) as lines with
    markers on a y axis fitting the data."""

    stem: str
    columns: Sequence[str]
    rows: Sequence[Sequence[float]]
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]]
    title: str
    x_name: str
    y_label: str


@dataclass
class Section:
    """One part of a report: the ``scalars`` logged (with its ``curve``, if it has one; without,
    to every logger alone) and the ``lines`` said after it (rank 0)."""

    scalars: dict[str, float]
    curve: Curve | Points | None = None
    lines: list[str] = field(default_factory=list)


@dataclass
class Report:
    """A certifier's report: its ``sections`` in order, ``figures`` (wandb key -> PNG files,
    logged after the sections) and ``records``, where the records are (said last with each
    curve's files; empty: the certifier's first record file)."""

    sections: list[Section] = field(default_factory=list)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    records: str = ""

    @property
    def summary(self) -> dict[str, float]:
        """Every section's scalars, later sections' keys winning."""
        merged: dict[str, float] = {}
        for section in self.sections:
            merged.update(section.scalars)
        return merged
