"""Plots written next to every TSV (PNG via matplotlib's Agg backend, no display needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

AXES_SIZE = (4.6, 3.2)  # inches: every curve plot's axes, whatever its legend or title


def job_colours(count: int) -> list[str]:
    """One colour per job (matplotlib's default cycle, repeating after ten): the sweep summary's
    curve plot and its objectives plot give a job the same colour."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return [cycle[i % len(cycle)] for i in range(count)]


def draw_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str = "l2 radius",
    ylabel: str = "certified accuracy",
    step: bool | str = True,
    unit_interval: bool = True,
    colours: Sequence[str] | None = None,
    points: Sequence[tuple[float, float, str]] = (),
    levels: Mapping[str, float] | None = None,
) -> Figure:
    """The figure ``plot_curves`` saves (the caller closes it).

    The axes are ``AXES_SIZE`` whatever else is drawn: a legend (more than one curve, or any
    ``levels``) goes to the right of the axes and the saved image grows to hold it. ``colours``
    are the curves' colours in order; ``points`` are ``(x, y, text)`` annotations (e.g. each tau
    of a SegCertify curve); ``levels`` are named horizontal dashed lines (e.g. the base model's
    accuracy).
    """
    fig = plt.figure(figsize=(AXES_SIZE[0] + 1.0, AXES_SIZE[1] + 0.6 + 0.2 * title.count("\n")))
    width, height = fig.get_size_inches()
    ax = fig.add_axes((0.8 / width, 0.5 / height, AXES_SIZE[0] / width, AXES_SIZE[1] / height))
    for number, (name, (x, y)) in enumerate(curves.items()):
        ys = [v if math.isfinite(v) else math.nan for v in map(float, y)]
        style = {"label": name}
        if colours is not None:
            style["color"] = colours[number]
        if step:
            where = step if isinstance(step, str) else "post"
            ax.step(list(x), ys, where=where, marker="o" if points else None, **style)
        else:
            ax.plot(list(x), ys, marker="o", **style)
    for x, y, text in points:
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for number, (name, y) in enumerate((levels or {}).items()):
        ax.axhline(y, linestyle="--", color="0.4" if number == 0 else None, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if unit_interval:
        ax.set_ylim(0, 1.02)
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9 if "\n" in title else None)
    if len(curves) > 1 or levels:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)
    return fig


def plot_curves(
    path: str | Path,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    *options: Any,
    **keywords: Any,
) -> Path:
    """Draws one line per named ``(x, y)`` curve and saves it as PNG; ``options`` and
    ``keywords`` are those of ``draw_curves`` (``xlabel``, ``ylabel``, ``step``,
    ``unit_interval``, ``colours``, ``points``, ``levels``, in that order).

    Step lines on a y axis of [0, 1] by default (certified accuracy: each value holds from its
    x on, ``step="post"``; ``step="pre"``: up to its x, as for points certified each up to its own
    radius); with ``step=False`` the
    points are joined by straight lines with markers, and with ``unit_interval=False`` the y axis
    starts at 0 and fits the data. Non-finite values are left out of the drawing. The legend sits
    outside the axes (see ``draw_curves``), and the image is cropped to what is drawn.
    """
    fig = draw_curves(curves, title, *options, **keywords)
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


def palette(num_classes: int) -> torch.Tensor:
    """RGB colours ``[num_classes + 2, 3]`` for label maps: one per class, then white (abstain)
    and black (ignored pixels)."""
    colours = plt.get_cmap("tab20")(torch.arange(num_classes).numpy() % 20)[:, :3]
    return torch.cat([torch.tensor(colours), torch.tensor([[1.0, 1, 1], [0, 0, 0]])]).float()
