"""The report sections of the classification certifiers (Cohen's CERTIFY, its top-k, in-range and
gamma parts, DistSPT, Lipschitz, PREDICT), built from their records as plain data
(:mod:`smoothcert.report.parts`); the certification callbacks publish them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from smoothcert.metrics.certified import certified_accuracy_curve, radius_grid, summarize
from smoothcert.outcomes import ABSTAIN
from smoothcert.records import CohenRecord, read_records
from smoothcert.records.in_range import InRangeRecord, in_range_curve
from smoothcert.records.topk import TopKRecord, topk_accuracy_curve
from smoothcert.report.parts import Curve, Section, say_scalars


def certified_section(
    records: Sequence[CohenRecord],
    radii: Sequence[float],
    prefix: str,
    title: str,
    x_label: str,
    said: str = "certified",
    stem: str = "certified_accuracy",
    unit: str = "",
    amend: Mapping[str, float] | None = None,
    extra: Mapping[str, float] | None = None,
) -> Section:
    """Certified accuracy against radius: ``summarize``'s scalars (``acc@<r>`` at ``radii``, acr,
    abstain, clean_acc, num_examples; ``amend`` replaces some, by their name after ``cert/``)
    under ``prefix`` (e.g. ``cert/``, ``cert/l1/``, ``heuristic/rotation/``) plus ``extra`` (full
    keys), the curve ``stem`` on the records' radius grid (its title ``title``, ending with
    ``: ACR=<acr><unit>``) and the line ``<said>: acc@0.00=..., acr=..., ...``."""
    summary = summarize(records, radii)
    summary.update({f"cert/{key}": value for key, value in (amend or {}).items()})
    scalars = {prefix + key.removeprefix("cert/"): value for key, value in summary.items()}
    scalars.update(extra or {})
    grid = radius_grid(records)
    series = {stem: certified_accuracy_curve(records, grid).tolist()}
    title += f": ACR={summary['cert/acr']:.3f}{unit}"
    curve = Curve(stem, "radius", grid.tolist(), series, title, x_label=x_label)
    table = say_scalars(summary, "cert/") + "".join(
        f", {key}={value:.3f}" for key, value in (extra or {}).items()
    )
    return Section(scalars, curve, [f"{said}: {table}"])


def certify_title(
    noise: str, sigma: float, norm: str, perturbation: str | None = None, sound: bool = True
) -> str:
    """The first line of CERTIFY's curve: the noise at ``sigma`` and the radii's ``norm``, or the
    ``perturbation`` smoothed over (a parametric one), said to be estimated for a heuristic."""
    if not sound:
        return f"estimated over {perturbation} (heuristic), {noise} sigma={sigma}"
    if perturbation:
        return f"CERTIFY over {perturbation}, {noise} sigma={sigma}"
    return f"Cohen CERTIFY, {noise} sigma={sigma}, {norm} radius"


def gamma_scalars(
    records: Sequence[CohenRecord],
    gammas: Sequence[float],
    certified_at: Callable[[Sequence[float], float], Sequence[bool]],
    prefix: str,
) -> dict[str, float]:
    """``<prefix>acc@gamma=<g>``: the fraction of examples right and certified at ``x^g``
    (``certified_at(radii, g)``: whether each radius's range covers g)."""
    scalars = {}
    for gamma in gammas:
        inside = certified_at([r.radius for r in records], gamma)
        hits = [bool(r.correct) and bool(ok) for r, ok in zip(records, inside, strict=True)]
        scalars[f"{prefix}acc@gamma={gamma:g}"] = sum(hits) / max(len(hits), 1)
    return scalars


def topk_section(
    cohen: Sequence[CohenRecord],
    records: Sequence[TopKRecord],
    ks: Sequence[int],
    radii: Sequence[float],
    sigma: float,
    protocol: str = "",
) -> Section:
    """Top-k certificates beside Cohen's top-1 curve: ``certified_topk_accuracy`` (Cohen's curve
    and one per k, on a grid reaching the largest finite top-k radius) and the scalars
    ``cert/top<k>/acc@<r>`` and ``cert/top<k>/acr`` (when every radius is finite)."""
    finite = [r for t in records for r in t.radii if r is not None and np.isfinite(r)]
    grid = np.union1d(radius_grid(cohen), np.arange(0.0, max(finite, default=0) + 0.02, 0.01))
    series = {"top1_cohen_certify": certified_accuracy_curve(cohen, grid).tolist()}
    scalars = {}
    for k in ks:
        series[f"top{k}"] = topk_accuracy_curve(records, k, grid).tolist()
        at = zip(radii, topk_accuracy_curve(records, k, radii), strict=True)
        scalars.update({f"cert/top{k}/acc@{r:.2f}": float(a) for r, a in at})
        top = [t.radii[t.ks.index(k)] or 0.0 for t in records]
        if np.isfinite(top).all():  # k = K certifies every label at every radius
            scalars[f"cert/top{k}/acr"] = float(np.mean(top))
    title = f"Certified top-k accuracy, Gaussian sigma={sigma}, l2 radius"
    title += f"\n{protocol}" if protocol else ""
    curve = Curve(
        "certified_topk_accuracy", "radius", grid.tolist(), series, title,
        x_label="l2 radius", y_label="certified accuracy",
    )  # fmt: skip
    table = ", ".join(f"{k}={v:.3f}" for k, v in scalars.items() if "acc@" in k)
    return Section(scalars, curve, [f"certified top-k: {table}"])


def in_range_section(
    records: Sequence[InRangeRecord],
    grid: Sequence[float],
    radii: Sequence[float],
    prefix: str,
    name: str,
    units: str,
) -> Section:
    """The certificates restricted to the shifts that keep each image in [0, 1]:
    ``certified_accuracy_in_range`` on ``grid`` and ``<prefix>in_range/acc@<r>``, ``.../acr``."""
    key = f"{prefix}in_range/"
    at = in_range_curve(records, radii).tolist()
    scalars = {f"{key}acc@{r:.2f}": v for r, v in zip(radii, at, strict=True)}
    kept = [r.in_range_radius * r.correct for r in records]
    scalars[f"{key}acr"] = sum(kept) / max(len(kept), 1)
    series = {"certified_accuracy": in_range_curve(records, grid).tolist()}
    title = f"CERTIFY over {name}, shifts keeping the image in [0, 1]"
    label = f"brightness radius, shifts keeping the image in [0, 1] ({units})"
    curve = Curve("certified_accuracy_in_range", "radius", list(grid), series, title, label)
    table = ", ".join(f"{k.removeprefix(prefix)}={v:.3f}" for k, v in scalars.items())
    return Section(scalars, curve, [f"certified, in-range shifts only: {table}"])


def lipschitz_section(
    records: Sequence[CohenRecord],
    radii: Sequence[float],
    constant: float,
    cohen: Sequence[CohenRecord] = (),
) -> Section:
    """The Lipschitz-margin certificate's ``cert/lipschitz/...`` scalars and its curve on a fine
    grid (its radii are small), with randomized smoothing's (``cohen``, if any) beside it."""
    summary = summarize(records, radii)
    scalars = {k.replace("cert/", "cert/lipschitz/"): v for k, v in summary.items()}
    largest = max(r.radius for r in records)
    fine = radius_grid(records, max(largest, 1e-6) / 200)
    grid = np.union1d(fine, radius_grid(cohen)) if cohen else fine
    series = {"lipschitz": certified_accuracy_curve(records, grid).tolist()}
    if cohen:
        series["randomized_smoothing_cohen"] = certified_accuracy_curve(cohen, grid).tolist()
    title = f"Lipschitz margin (L={constant:.3g}) vs randomized smoothing"
    curve = Curve(
        "certified_accuracy_lipschitz", "radius", grid.tolist(), series, title,
        x_label="l2 radius", y_label="certified accuracy",
    )  # fmt: skip
    return Section(scalars, curve, [f"certified (Lipschitz): {say_scalars(scalars)}"])


def comparison_records(compare_with: str | None, run_dir: Path) -> list[CohenRecord]:
    """The Cohen records a comparison curve is drawn from: the ``certify.tsv`` ``compare_with``
    names (``auto``: the one in ``run_dir``), none when it is unset, ``none`` or not a file."""
    if compare_with in (None, "", "none"):
        return []
    path = run_dir / "certify.tsv" if compare_with == "auto" else Path(compare_with)
    return read_records(path)[1] if path.is_file() else []


def predict_section(predictions: Sequence[int], corrects: Sequence[int]) -> Section:
    """PREDICT's accuracy (an accuracy, not a certificate: no curve): ``predict/acc``,
    ``predict/abstain`` and ``predict/num_examples``."""
    count = max(len(predictions), 1)
    scalars = {
        "predict/acc": sum(corrects) / count,
        "predict/abstain": sum(p == ABSTAIN for p in predictions) / count,
        "predict/num_examples": float(len(predictions)),
    }
    table = ", ".join(f"{k.removeprefix('predict/')}={v:.3f}" for k, v in scalars.items())
    return Section(scalars, None, [f"predicted: {table}"])
