"""Plots written next to every TSV (PNG via matplotlib's Agg backend, no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(
    path: str | Path,
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str = "l2 radius",
    ylabel: str = "certified accuracy",
    step: bool = True,
    unit_interval: bool = True,
) -> Path:
    """Draws one line per named ``(x, y)`` curve and saves it as PNG.

    Step lines on a y axis of [0, 1] by default (certified accuracy); with ``step=False`` the
    points are joined by straight lines with markers, and with ``unit_interval=False`` the y axis
    starts at 0 and fits the data. Non-finite values are left out of the drawing.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for name, (x, y) in curves.items():
        ys = [v if math.isfinite(v) else math.nan for v in map(float, y)]
        if step:
            ax.step(list(x), ys, where="post", label=name)
        else:
            ax.plot(list(x), ys, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if unit_interval:
        ax.set_ylim(0, 1.02)
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def palette(num_classes: int) -> torch.Tensor:
    """RGB colours ``[num_classes + 2, 3]`` for label maps: one per class, then white (abstain)
    and black (ignored pixels)."""
    colours = plt.get_cmap("tab20")(torch.arange(num_classes).numpy() % 20)[:, :3]
    return torch.cat([torch.tensor(colours), torch.tensor([[1.0, 1, 1], [0, 0, 0]])]).float()
