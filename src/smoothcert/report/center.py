"""What center smoothing reports, without Lightning or wandb: the figure of one example (input,
base output, smoothed output) and the long curve table of several noise levels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.patches import Rectangle

from smoothcert.report.plots import palette, plt

# As in the paper's Fig. 3b: base box green, smoothed box blue (dashed, so both stay visible).
BASE_STYLE = {"edgecolor": "tab:green", "linewidth": 3}
SMOOTHED_STYLE = {"edgecolor": "tab:blue", "linewidth": 2, "linestyle": "--"}


def show_image(ax, image: torch.Tensor) -> None:
    """An image ``[C, H, W]`` (or ``[H, W]``), clipped to [0, 1] for display."""
    image = image.detach().float().cpu().clamp(0, 1)
    if image.dim() == 3 and image.shape[0] == 1:
        image = image[0]
    if image.dim() == 2:
        ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())


def _show_labels(ax, labels: torch.Tensor, num_classes: int) -> None:
    colours = palette(num_classes)
    ax.imshow(colours[labels.cpu().long().clamp(0, num_classes - 1)].numpy())


def _draw_box(ax, box: torch.Tensor, height: int, width: int, style: dict, label: str) -> None:
    """A normalized box (x1, y1, x2, y2) scaled to the image (whose pixel edges imshow puts at
    -0.5, ..., size - 0.5); an empty box is only named in the legend."""
    x1, y1, x2, y2 = box.detach().float().cpu().tolist()
    if x2 <= x1 or y2 <= y1:
        ax.plot([], [], color=style["edgecolor"], label=f"{label}: no box")
        return
    corner = (x1 * width - 0.5, y1 * height - 0.5)
    size = ((x2 - x1) * width, (y2 - y1) * height)
    ax.add_patch(Rectangle(corner, *size, fill=False, label=label, **style))


def _abstained(ax) -> None:
    ax.text(0.5, 0.5, "abstained", ha="center", va="center", transform=ax.transAxes)


def save_center_example(
    path: Path,
    kind: str,
    x: torch.Tensor,
    base: torch.Tensor,
    smoothed: torch.Tensor | None,
    num_classes: int | None = None,
    title: str = "",
) -> Path:
    """Saves a PNG of one example: for ``kind`` "image" or "label_map" three panels (input, base
    output, smoothed output), for "box" the input with the base box (green) and the smoothed box
    (blue) drawn on it. ``smoothed`` is None where center smoothing abstained."""
    if kind == "box":
        fig, ax = plt.subplots(figsize=(4, 4.2), dpi=100)
        show_image(ax, x)
        height, width = x.shape[-2:]
        _draw_box(ax, base, height, width, BASE_STYLE, "base")
        if smoothed is None:
            ax.set_xlabel("smoothed: abstained")
        else:
            _draw_box(ax, smoothed, height, width, SMOOTHED_STYLE, "smoothed")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title)
    else:
        fig, axes = plt.subplots(1, 3, figsize=(9, 3.4), dpi=100)
        show_image(axes[0], x)
        for ax, output in zip(axes[1:], (base, smoothed), strict=True):
            if output is None:
                _abstained(ax)
            elif kind == "label_map":
                _show_labels(ax, output, int(num_classes))
            else:
                show_image(ax, output)
        for ax, name in zip(axes, ("input", "base output", "smoothed output"), strict=True):
            ax.set_title(name)
            ax.axis("off")
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def say(values: Sequence[float]) -> str:
    return " / ".join(f"{float(v):.4g}" for v in values)


def sigma_series(
    medians: Sequence[dict[str, list[float]]], sigmas: Sequence[float], h: Sequence[float] | None
) -> tuple[list[str], list[list[float]], dict[str, tuple[list[float], list[float]]]]:
    """The long curve table (columns, rows) and the plotted series for several sigmas: with
    ``h``, one pair (eps_out, smoothing error) per h across the sigmas at eps_in = h * sigma (the
    paper's Figs. 3-5); with explicit radii, one pair per sigma across its eps_in."""
    rows, curves = [], {}
    if h is not None:
        for j, value in enumerate(h):
            xs = [level["eps_in"][j] for level in medians]
            eps_out = [level["eps_out"][j] for level in medians]
            errors = [level["smoothing_error"][j] for level in medians]
            curves[f"eps_out (h={value:g})"] = (xs, eps_out)
            curves[f"smoothing error (h={value:g})"] = (xs, errors)
            rows += [[value, *point] for point in zip(sigmas, xs, eps_out, errors, strict=True)]
        return ["h", "sigma", "eps_in", "eps_out", "smoothing_error"], rows, curves
    for sigma, level in zip(sigmas, medians, strict=True):
        curves[f"eps_out (sigma={sigma:g})"] = (level["eps_in"], level["eps_out"])
        curves[f"smoothing error (sigma={sigma:g})"] = (level["eps_in"], level["smoothing_error"])
        points = zip(level["eps_in"], level["eps_out"], level["smoothing_error"], strict=True)
        rows += [[sigma, *point] for point in points]
    return ["sigma", "eps_in", "eps_out", "smoothing_error"], rows, curves
