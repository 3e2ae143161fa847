"""Plots written next to every TSV (PNG via matplotlib's Agg backend, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(
    path: str | Path,
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str = "l2 radius",
    ylabel: str = "certified accuracy",
) -> Path:
    """Draws one step line per named ``(radii, accuracies)`` curve and saves it as PNG."""
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for name, (x, y) in curves.items():
        ax.step(list(x), list(y), where="post", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
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
