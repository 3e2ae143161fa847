"""Median smoothing's settings (``conf/certify/median.yaml``), checked on construction, the
model checks in ``setup`` and what the record headers say."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from smoothcert.certifiers.median import PercentileSmooth
from smoothcert.certifiers.median_detection import SLOT
from smoothcert.certifiers.median_expectation import METHODS, check_range
from smoothcert.errors import ConfigError, check_count, require
from smoothcert.noise import Noise

OUTPUT_KINDS = ("box", "vector", "detection")
# Coordinates per box of each output kind, for the per_box guarantee (a detection slot: x1, y1,
# x2, y2, score, label); a vector has no boxes, so its default guarantee is per_coordinate.
BOX_SIZES = {"box": 4, "detection": SLOT}


@dataclass
class MedianSettings:
    """Percentile smoothing's settings: the input l2 radii ``eps`` (each certified from the same
    ``n`` samples), the failure probability ``alpha`` of the ``guarantee`` (None: per box for
    boxes and detections, per coordinate otherwise), the percentile ``p``, the ``output_range``
    [l, u] of the expectation bound (None: none; checked as ``limits``) with its interval
    ``method``, and ``num_images`` figures. eps, n, alpha, p and the guarantee are checked by
    ``PercentileSmooth`` (``smoother``)."""

    eps: float | Sequence[float] = (0.25, 0.36, 0.5)
    n: int = 2000
    alpha: float = 0.001
    p: float = 0.5
    guarantee: str | None = None
    output_range: Sequence[float] | None = None
    method: str = "clopper_pearson"
    num_images: int = 4
    limits: tuple[float, float] | None = field(init=False)
    settings: dict[str, Any] = field(init=False)  # the opening line's and the headers'

    def __post_init__(self) -> None:
        self.limits = None if self.output_range is None else check_range(*self.output_range)
        method = self.method
        require(method in METHODS, f"certify.method={method!r}: use one of {', '.join(METHODS)}")
        self.num_images = check_count(self.num_images, "certify.num_images", minimum=0)
        self.settings = {"n": self.n, "alpha": self.alpha, "p": self.p, "guarantee": self.guarantee}

    def smoother(
        self, base: Callable[[Tensor], Tensor], noise: Noise, batch_size: int, kind: str = "box"
    ) -> PercentileSmooth:
        """The certifier of ``base`` (outputs of ``kind``: boxes of its ``BOX_SIZES``) in
        ``noise``, inputs one image in [0, 1]; its settings are checked (before the output kind
        is known, as a box)."""
        return PercentileSmooth(
            base,
            noise,
            self.eps,
            self.n,
            self.alpha,
            self.p,
            self.guarantee,
            batch_size,
            BOX_SIZES.get(kind),
            input_range=(0.0, 1.0),
        )

    def check_output(self, out: Tensor) -> None:
        """The model's output on the first example lies in ``limits`` (the expectation bound
        needs f in [l, u]); a one-line ConfigError otherwise."""
        if self.limits is not None:
            require(
                bool(((out >= self.limits[0]) & (out <= self.limits[1])).all()),
                f"certify.output_range={list(self.limits)} does not hold the model's output "
                f"{out.flatten().tolist()[:4]}: the expectation bound needs f in [l, u]",
            )


def check_fits(contract: Any, model: str) -> None:
    """Median smoothing certifies a model whose contract states a ``structured_output`` that is a
    real vector (output kinds ``OUTPUT_KINDS``); a one-line ConfigError otherwise."""
    kind = contract.output_kind
    if contract.structured_output is None or kind not in OUTPUT_KINDS:
        raise ConfigError(
            f"certify=median needs a model whose structured_output is a real vector (output "
            f"kinds {', '.join(OUTPUT_KINDS)}); {model} gives {kind or 'none'}: use "
            "certify=cohen, segcertify or center"
        )


def median_header(
    smoother: PercentileSmooth,
    settings: Mapping[str, Any],
    outputs: int,
    kind: str,
    key: str,
    method: str,
    limits: tuple[float, float] | None,
) -> dict[str, object]:
    """The settings in the header of ``median.tsv`` (``key`` "median") or ``expectation.tsv``:
    the eps, the ranks of each bound and the guarantee for ``outputs`` coordinates (0: not yet
    known) of ``kind``."""
    ranks = smoother.ranks(outputs) if outputs else []
    header = {
        **settings,
        "eps": smoother.eps,
        "outputs": outputs,
        "output_kind": kind,
        "guarantee_statement": smoother.statement(outputs or 1),
        "ranks_lower_upper_1based": [(r.lower, r.upper) for r in ranks],
        "alpha_per_bound": ranks[0].alpha if ranks else None,
    }
    if key == "expectation":
        header.update(output_range=list(limits), method=method)
        header["guarantee_statement"] = (
            f"for each eps and coordinate: P[E f(x + delta + G) leaves [lower, upper] for "
            f"some ||delta||_2 <= eps] <= {smoother.alpha:g} ({method}, alpha / 2 "
            f"per side; {smoother.guarantee}: alpha / m per coordinate if simultaneous, "
            f"alpha / box size if per_box)"
        )
    return header


def target_vector(example: tuple, m: int, convert: Callable | None) -> np.ndarray:
    """The ground truth per coordinate (the model's ``regression_target`` ``convert`` of the
    example's target, or the target itself) when it is a float vector of m; nan otherwise."""
    target = example[1] if len(example) > 1 else None
    if target is not None and callable(convert):
        target = convert(target)
    if isinstance(target, Tensor) and target.is_floating_point() and target.numel() == m:
        return target.reshape(-1).double().numpy()
    return np.full(m, np.nan)
