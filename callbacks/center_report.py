"""What center smoothing reports per distance: median curves, scalars and example figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.patches import Rectangle
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info

from callbacks.certification_common import log_images, log_locations
from callbacks.reporting import report_curves
from smoothcert.center_records import CenterRecord, median_curves
from smoothcert.plots import palette, plt

# As in the paper's Fig. 3b: base box green, smoothed box blue (dashed, so both stay visible).
BASE_STYLE = {"edgecolor": "tab:green", "linewidth": 3}
SMOOTHED_STYLE = {"edgecolor": "tab:blue", "linewidth": 2, "linestyle": "--"}


def _show_image(ax, image: torch.Tensor) -> None:
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
        _show_image(ax, x)
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
        _show_image(axes[0], x)
        for ax, output in zip(axes[1:], (base, smoothed), strict=True):
            if output is None:
                _abstained(ax)
            elif kind == "label_map":
                _show_labels(ax, output, int(num_classes))
            else:
                _show_image(ax, output)
        for ax, name in zip(axes, ("input", "base output", "smoothed output"), strict=True):
            ax.set_title(name)
            ax.axis("off")
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def report_distance(
    trainer: Trainer,
    output_dir: Path,
    name: str,
    records: Sequence[CenterRecord],
    title: str,
    extra_scalars: Mapping[str, float],
) -> tuple[dict[str, float], dict[str, Path]]:
    """Writes and logs (rank 0) the curves of the median eps_out and the median smoothing error
    against eps_in under the distance ``name`` (``center_curve_<name>.tsv``/``.png``, wandb) with
    the scalars ``cert/<name>/eps_out@<eps_in>``, ``cert/<name>/smoothing_error`` and
    ``cert/<name>/abstain`` (plus ``extra_scalars``), and says them in one line.

    Returns the scalars and the curve's paths.
    """
    medians = median_curves(records)
    eps_in = medians["eps_in"]
    scalars = {
        f"cert/{name}/eps_out@{eps:g}": value
        for eps, value in zip(eps_in, medians["eps_out"], strict=True)
    }
    scalars[f"cert/{name}/smoothing_error"] = error = medians["smoothing_error"][0]
    scalars[f"cert/{name}/abstain"] = abstain = sum(r.abstain for r in records) / len(records)
    scalars.update(extra_scalars)
    series = {key: medians[key] for key in ("eps_out", "smoothing_error")}
    paths = report_curves(
        trainer,
        output_dir,
        f"center_curve_{name}",
        "eps_in",
        eps_in,
        series,
        title,
        scalars,
        f"{name} distance",
        certified_accuracy=False,
    )
    per_example = sum(r.time for r in records) / len(records)
    rank_zero_info(
        f"center {name}: median eps_out {medians['eps_out']} at eps_in {eps_in}, median "
        f"smoothing error {error:.4g}, abstain {abstain:.3f}, {per_example:.2f} s/example"
    )
    return scalars, paths


def save_examples(
    trainer: Trainer,
    folder: Path,
    name: str,
    kind: str,
    examples: Sequence[tuple],
    records: Sequence[CenterRecord],
    num_classes: int | None = None,
) -> list[Path]:
    """PNGs ``folder/center_<name>_<idx>.png`` of ``examples`` ((idx, x, base output, center or
    None) each), also logged to wandb as ``cert/<name>/examples``."""
    folder.mkdir(parents=True, exist_ok=True)
    errors = {r.idx: r.smoothing_error for r in records}
    paths = []
    for idx, x, base, center in examples:
        error = "abstained" if center is None else f"{errors[idx]:.4g}"
        title = f"{name} #{idx}: d(base, smoothed) = {error}"
        path = folder / f"center_{name}_{idx:05d}.png"
        paths.append(save_center_example(path, kind, x, base, center, num_classes, title))
    log_images(trainer, f"cert/{name}/examples", paths)
    return paths


def report_center(
    trainer: Trainer,
    output_dir: Path,
    records: Mapping[str, Sequence[CenterRecord]],
    sigma: float,
    pl_module: LightningModule,
    examples: Mapping[str, Sequence[tuple]],
) -> dict[str, float]:
    """Everything rank 0 reports for ``records`` (per distance): curves, scalars (with
    ``cert/time_per_example``, the seconds per example under all distances, and
    ``cert/num_examples``), example figures and where the files are. Returns the scalars."""
    seconds: dict[int, float] = {}
    for certified in records.values():
        for record in certified:
            seconds[record.idx] = seconds.get(record.idx, 0.0) + record.time
    overall = {
        "cert/time_per_example": sum(seconds.values()) / len(seconds),
        "cert/num_examples": float(len(seconds)),
    }
    summary, curves = {}, []
    kind, num_classes = pl_module.output_kind, pl_module.hparams.get("num_classes")
    for position, (name, certified) in enumerate(records.items()):
        title = f"center smoothing ({name}), sigma={sigma}"
        extra = overall if position == 0 else {}
        scalars, paths = report_distance(trainer, output_dir, name, certified, title, extra)
        summary.update(scalars)
        curves.append(paths)
        folder = output_dir / "center_examples"
        save_examples(trainer, folder, name, kind, examples[name], certified, num_classes)
    files = ", ".join(f"center_{name}.tsv" for name in records)
    log_locations(trainer, f"{files} in {output_dir}", curves)
    return summary
