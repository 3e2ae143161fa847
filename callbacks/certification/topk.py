"""``certify.topk``: top-k certificates of the true label beside Cohen's top-1 curve, from the
class counts CERTIFY already drew (no extra forward passes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning import Trainer
from pytorch_lightning.utilities import rank_zero_info

from callbacks.reporting import report_curves
from smoothcert.certifiers.topk import check_topk
from smoothcert.errors import ConfigError
from smoothcert.metrics.certified import certified_accuracy_curve, radius_grid
from smoothcert.records import CohenRecord
from smoothcert.records.topk import TopKRecord, topk_accuracy_curve


class TopKReport:
    """The top-k part of a Cohen certification (``certifier``: the callback, whose ``sigma``,
    ``noise``, ``norm``, ``radii``, ``output_dir`` and ``summary`` it reads and extends).

    Jia et al.'s theorem is for Gaussian noise and l2 radii; other noises or norms are refused.
    Each k must lie in 1..K (checked against the model's number of classes in ``check``, before
    training). ``report`` writes ``certified_topk_accuracy.tsv``/``.png`` (Cohen's top-1 curve
    and one curve per k) and the scalars ``cert/top<k>/acc@<r>`` and ``cert/top<k>/acr``.
    """

    def __init__(self, ks: Sequence[int], certifier: Any) -> None:
        self.ks = [ks] if isinstance(ks, int) else list(ks)  # checked against K in ``check``
        if certifier.noise.name != "gaussian" or certifier.norm != "l2":
            raise ConfigError(
                f"certify.topk={self.ks} certifies l2 radii under Gaussian noise (Jia et al.), "
                f"not {certifier.noise.name} noise in {certifier.norm}: use noise=gaussian "
                "certify.norm=null, or certify.topk=null"
            )
        self.certifier = certifier
        self.records: list[TopKRecord] = []

    def check(self, num_classes: int) -> None:
        """One-line ConfigError unless every k lies in 1..``num_classes`` (the model's K)."""
        self.ks = check_topk(self.ks, int(num_classes))

    def report(self, trainer: Trainer, cohen: Sequence[CohenRecord]) -> dict[str, Path]:
        """Writes the top-k curves next to Cohen's and adds their scalars to the summary."""
        c = self.certifier
        finite = [r for t in self.records for r in t.radii if r is not None and np.isfinite(r)]
        grid = np.union1d(radius_grid(cohen), np.arange(0.0, max(finite, default=0) + 0.02, 0.01))
        series = {"top1_cohen_certify": certified_accuracy_curve(cohen, grid).tolist()}
        scalars = {}
        for k in self.ks:
            series[f"top{k}"] = topk_accuracy_curve(self.records, k, grid).tolist()
            at = topk_accuracy_curve(self.records, k, c.radii)
            scalars.update(
                {f"cert/top{k}/acc@{r:.2f}": float(a) for r, a in zip(c.radii, at, strict=True)}
            )
            radii = [t.radii[t.ks.index(k)] or 0.0 for t in self.records]
            if np.isfinite(radii).all():  # k = K certifies every label at every radius
                scalars[f"cert/top{k}/acr"] = float(np.mean(radii))
        title = f"Certified top-k accuracy, Gaussian sigma={c.sigma}, l2 radius"
        title += f"\n{c.protocol_line}" if getattr(c, "protocol_line", "") else ""
        paths = report_curves(
            trainer, c.output_dir, "certified_topk_accuracy", "radius", grid.tolist(), series,
            title, scalars, y_label="certified accuracy", x_label="l2 radius",
        )  # fmt: skip
        c.summary.update(scalars)
        table = ", ".join(f"{k}={v:.3f}" for k, v in scalars.items() if "acc@" in k)
        rank_zero_info(f"certified top-k: {table}")
        return paths
