"""Certified-accuracy curves and summaries from certification records."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smoothcert.outcomes import ABSTAIN
from smoothcert.records import CohenRecord


def _arrays(records: Sequence[CohenRecord]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(records) == 0:
        raise ValueError("no certification records: certify at least one example")
    radius = np.array([r.radius for r in records], dtype=np.float64)
    correct = np.array([r.correct for r in records], dtype=bool)
    abstain = np.array([r.predict == ABSTAIN for r in records], dtype=bool)
    return radius, correct, abstain


def certified_accuracy(records: Sequence[CohenRecord], radius: float) -> float:
    """Fraction of examples that are correct with certified radius >= ``radius``."""
    radii, correct, _ = _arrays(records)
    return float(np.mean(correct & (radii >= radius)))


def certified_accuracy_curve(records: Sequence[CohenRecord], radii: Sequence[float]) -> np.ndarray:
    """Certified accuracy at each radius in ``radii`` (non-increasing in the radius)."""
    radius, correct, _ = _arrays(records)
    grid = np.asarray(radii, dtype=np.float64)
    return (correct[None, :] & (radius[None, :] >= grid[:, None])).mean(axis=1)


def radius_grid(records: Sequence[CohenRecord], step: float = 0.01) -> np.ndarray:
    """Radii from 0 to just past the largest certified radius, ``step`` apart."""
    radius, _, _ = _arrays(records)
    top = float(radius.max()) if radius.size else 0.0
    return np.arange(0.0, top + 2 * step, step)


def average_certified_radius(records: Sequence[CohenRecord]) -> float:
    """ACR: the mean over examples of the radius if correct, 0 otherwise."""
    radius, correct, _ = _arrays(records)
    return float(np.mean(np.where(correct, radius, 0.0)))


def abstain_rate(records: Sequence[CohenRecord]) -> float:
    """Fraction of examples on which the smoothed classifier abstained."""
    _, _, abstain = _arrays(records)
    return float(np.mean(abstain))


def summarize(records: Sequence[CohenRecord], report_radii: Sequence[float]) -> dict[str, float]:
    """The ``cert/*`` scalars: accuracy at each radius, ACR, abstain rate, r = 0 accuracy."""
    curve = certified_accuracy_curve(records, report_radii)
    summary = {f"cert/acc@{r:.2f}": float(a) for r, a in zip(report_radii, curve, strict=True)}
    summary["cert/acr"] = average_certified_radius(records)
    summary["cert/abstain"] = abstain_rate(records)
    summary["cert/clean_acc"] = certified_accuracy(records, 0.0)
    summary["cert/num_examples"] = float(len(records))
    return summary
