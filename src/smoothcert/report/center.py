"""What center smoothing reports, without Lightning or wandb: per distance a section (the curves of
the median eps_out and the median smoothing error against eps_in, its ``cert/*`` scalars and one
line per sigma) and the figures of the first examples (input, base output, smoothed output)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.patches import Rectangle

from smoothcert.records.center import CenterExample, CenterRecord, median_curves
from smoothcert.report.parts import Curve, Points, Section
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


def distance_section(
    name: str,
    examples: Sequence[CenterExample],
    h: Sequence[float] | None,
    extra_scalars: Mapping[str, float],
    statement: str = "",
) -> Section:
    """The section of the distance ``name``: the curves of the median eps_out and the median
    smoothing error against eps_in (``center_curve_<name>``), the scalars
    ``cert/<name>/eps_out@<eps_in>`` (and ``eps_out@h<h>`` with ``h``: eps_in = h * sigma),
    ``cert/<name>/smoothing_error`` and ``cert/<name>/abstain`` (each ending in ``/sigma<sigma>``
    when several sigmas were certified; plus ``extra_scalars``) and one line per sigma.
    ``statement`` (the protocol, what each certificate guarantees) ends the plot title.

    One sigma: the curve TSV has the columns ``eps_in eps_out smoothing_error``. Several: a long
    table, one row per point, ``h sigma eps_in eps_out smoothing_error`` (rows by h, then sigma)
    with ``h``, else ``sigma eps_in eps_out smoothing_error``.
    """
    levels = [list(level) for level in zip(*(example.levels for example in examples), strict=True)]
    sigmas = [level[0].sigma for level in levels]
    several = len(sigmas) > 1
    medians, scalars, lines = [median_curves(level) for level in levels], {}, []
    for sigma, level, median in zip(sigmas, levels, medians, strict=True):
        at = f"/sigma{sigma:g}" if several else ""
        for eps, value in zip(median["eps_in"], median["eps_out"], strict=True):
            scalars[f"cert/{name}/eps_out@{eps:g}{at}"] = value
        for factor, value in zip(h or median["eps_out"], median["eps_out"], strict=True):
            if h:  # eps_in = h * sigma: the same key at every sigma, so sigma sweeps compare
                scalars[f"cert/{name}/eps_out@h{factor:g}{at}"] = value
        scalars[f"cert/{name}/smoothing_error{at}"] = error = median["smoothing_error"][0]
        scalars[f"cert/{name}/abstain{at}"] = abstain = sum(r.abstain for r in level) / len(level)
        per_example = sum(r.time for r in level) / len(level)
        lines.append(
            f"center {name}, sigma={sigma:g}: eps_in {say(median['eps_in'])} -> median eps_out "
            f"{say(median['eps_out'])}; median smoothing error {error:.4g}, abstain "
            f"{abstain:.3f}, {per_example:.2f} s/example"
        )
    scalars.update(extra_scalars)
    title = f"center smoothing ({name}), sigma={', '.join(f'{s:g}' for s in sigmas)}: median"
    title += f" eps_out\n{statement}" if statement else " eps_out"
    stem, y_label = f"center_curve_{name}", f"{name} distance"
    if not several:
        series = {key: medians[0][key] for key in ("eps_out", "smoothing_error")}
        xs = medians[0]["eps_in"]
        curve = Curve(stem, "eps_in", xs, series, title, None, y_label, certified_accuracy=False)
        return Section(scalars, curve, lines)
    columns, rows, curves = sigma_series(medians, sigmas, h)
    return Section(scalars, Points(stem, columns, rows, curves, title, "eps_in", y_label), lines)


def overall_scalars(records: Mapping[str, Sequence[CenterExample]]) -> dict[str, float]:
    """``cert/time_per_example`` (seconds per example under all distances and sigmas) and
    ``cert/num_examples``."""
    seconds: dict[int, float] = {}
    for certified in records.values():
        for example in certified:
            seconds[example.idx] = seconds.get(example.idx, 0.0) + example.time
    return {
        "cert/time_per_example": sum(seconds.values()) / len(seconds),
        "cert/num_examples": float(len(seconds)),
    }


def save_examples(
    folder: Path,
    name: str,
    kind: str,
    examples: Sequence[tuple],
    records: Sequence[CenterRecord],
    num_classes: int | None = None,
) -> list[Path]:
    """PNGs ``folder/center_<name>_<idx>.png`` of ``examples`` ((idx, x, base output, center or
    None) each, smoothed at the sigma of ``records``)."""
    folder.mkdir(parents=True, exist_ok=True)
    errors = {r.idx: r.smoothing_error for r in records}
    sigma = records[0].sigma if records else None
    paths = []
    for idx, x, base, center in examples:
        error = "abstained" if center is None else f"{errors[idx]:.4g}"
        title = f"{name} #{idx}, sigma={sigma:g}: d(base, smoothed) = {error}"
        path = folder / f"center_{name}_{idx:05d}.png"
        paths.append(save_center_example(path, kind, x, base, center, num_classes, title))
    return paths
