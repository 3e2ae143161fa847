"""The attacks' summaries (``attack/*`` scalars) from their records and their report section,
next to the attack callbacks (``callbacks/attack.py``, ``callbacks/seg_attack.py``): pure
functions of the records, so a report can be rebuilt from the record files. None of them is a
certificate."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_warn

from smoothcert.attacks.empirical import inside_radius_check, success_rate
from smoothcert.records.empirical import EmpiricalRecord
from smoothcert.records.seg_attack import SegAttackRecord
from smoothcert.records.segmentation import summarize_scores
from smoothcert.report.parts import Points, Section

Series = tuple[Sequence[float], Sequence[float]]  # a curve's radii and values


def attack_section(
    stem: str,
    columns: tuple[str, str, str],
    y_label: str,
    curves: Mapping[str, Series],
    title: str,
    scalars: dict[str, float],
    line: str,
    x_label: str = "radius",
) -> Section:
    """The certified curve beside the attacked one (``curves``, certified first): ``stem.tsv``
    (``columns``: 0 for the certified curve, 1 for the attacked one, the radius and the value)
    and ``stem.png`` against the radius (axis ``x_label``), the ``attack/*`` ``scalars``, and
    ``line`` said."""
    rows = [
        [float(i), x, y]
        for i, (xs, ys) in enumerate(curves.values())
        for x, y in zip(xs, ys, strict=True)
    ]
    points = Points(stem, columns, rows, curves, title, x_label, y_label)
    return Section(scalars, points, [line])


def attacked_at(records: Sequence[EmpiricalRecord], target: str) -> tuple[list[int], list[int]]:
    """PREDICT's answers and the labels of the attacks aimed at ``target`` (only correctly
    certified examples are attacked at multiples of R: their label is the certified class)."""
    rows = [
        (p, r.label)
        for r in records
        for t, p in zip(r.targets, r.predicts, strict=True)
        if t == target
    ]
    return [p for p, _ in rows], [y for _, y in rows]


def empirical_summary(
    records: Sequence[EmpiricalRecord],
    radii: Sequence[float],
    multiples: Sequence[float],
    alphas: tuple[float, float],
) -> tuple[dict[str, float], list[float]]:
    """``attack/acc@<r>`` at each grid radius, ``attack/success@<k>R`` (PREDICT names a wrong
    class) and ``attack/success_or_abstain@<k>R`` at each multiple, and, at multiples <= 1, the
    soundness check (``attack/inside_wrong@<k>R``, ``attack/inside_pvalue``; warned about when
    p < 0.001; ``alphas``: CERTIFY's and PREDICT's levels); with the empirical robust accuracy
    at each grid radius."""
    alpha_certify, alpha = alphas
    summary: dict[str, float] = {}
    grid_acc = []
    for r_index, radius in enumerate(radii):
        correct = [rec.predicts[r_index] == rec.label for rec in records]
        grid_acc.append(float(np.mean(correct)))
        summary[f"attack/acc@{radius:.2f}"] = grid_acc[-1]
    for k in multiples:
        predicts, labels = attacked_at(records, f"{k:.2f}R")
        wrong, wrong_or_abstain = success_rate(predicts, labels)
        summary[f"attack/success@{k:.2f}R"] = wrong
        summary[f"attack/success_or_abstain@{k:.2f}R"] = wrong_or_abstain
        summary["attack/certified_examples"] = float(len(predicts))
        if k > 1.0:
            continue
        found, total, pvalue = inside_radius_check(predicts, labels, alpha_certify, alpha)
        summary[f"attack/inside_wrong@{k:.2f}R"] = float(found)
        summary["attack/inside_pvalue"] = min(pvalue, summary.get("attack/inside_pvalue", 1.0))
        if pvalue < 1e-3:
            rank_zero_warn(
                f"soundness check failed: PREDICT named another class than the certified "
                f"one at {k:.2f}R on {found} of {total} examples, more than alpha_certify "
                f"+ alpha = {alpha_certify + alpha:g} allows (p={pvalue:.2g})"
            )
    return summary, grid_acc


def segcertify_curve(taus: Sequence[float], rows: Sequence) -> tuple[list[float], list[float]]:
    """SegCertify's certified pixel accuracy at each tau's radius, by radius (as it reports it:
    pooled over the images, abstentions counted as errors), from its records ``rows``."""
    points = []
    for tau in taus:
        scores = torch.stack([r.scores for r in rows if r.kind == tau])
        radius = min(r.radius for r in rows if r.kind == tau)
        points.append((radius, summarize_scores(scores)["pixel_acc"]))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points]


def seg_attack_summary(
    records: Sequence[SegAttackRecord],
    radii: Sequence[float],
    certified: tuple[Sequence[float], Sequence[float]],
) -> tuple[dict[str, float], list[float]]:
    """``attack/pixel_acc@<r>`` (pooled over the images) and ``attack/certified_pixel_acc@<r>``
    (the best ``certified`` pixel accuracy at a radius >= r; nan if none) at each radius, and
    ``attack/num_examples``; with the attacked pixel accuracy at each radius."""
    valid = sum(r.valid for r in records)
    attacked = [sum(r.correct[i] for r in records) / valid for i in range(len(radii))]
    summary: dict[str, float] = {}
    for radius, acc in zip(radii, attacked, strict=True):
        summary[f"attack/pixel_acc@{radius:.2f}"] = acc
        holding = [c for r, c in zip(*certified, strict=True) if r >= radius]
        summary[f"attack/certified_pixel_acc@{radius:.2f}"] = max(holding, default=math.nan)
    summary["attack/num_examples"] = float(len(records))
    return summary, attacked
