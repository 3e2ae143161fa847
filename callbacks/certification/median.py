"""Median (percentile) smoothing (Chiang et al. 2020) of a real-vector model, through the base
callback: records, resume, sharding, curves, figures, wandb."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager

import numpy as np
import torch
from pytorch_lightning import LightningModule, Trainer
from torch import Tensor

from callbacks.certification.base import CertificationCallback
from callbacks.median_report import report_median
from smoothcert.certifiers.classification import eval_mode
from smoothcert.certifiers.median import PercentileSmooth, as_output_vectors, bound_alpha
from smoothcert.certifiers.median_detection import SLOT
from smoothcert.certifiers.median_expectation import (
    METHODS,
    check_range,
    expectation_bounds,
    mean_interval,
)
from smoothcert.errors import ConfigError, check_count, check_unit_range, require
from smoothcert.noise import Noise, example_generator
from smoothcert.records.median import MedianRecord, median_schema

OUTPUT_KINDS = ("box", "vector", "detection")
# Coordinates per box of each output kind, for the per_box guarantee (a detection slot: x1, y1,
# x2, y2, score, label); a vector has no boxes, so its default guarantee is per_coordinate.
BOX_SIZES = {"box": 4, "detection": SLOT}


class MedianCertification(CertificationCallback):
    """Certifies ``num_examples`` examples of ``split`` by percentile smoothing of the model's
    ``structured_output`` (a real vector per input: a box, a scalar, a detection vector): per
    eps, certified bounds on every coordinate of h_p(x + delta), ||delta||_2 <= eps, holding with
    probability >= 1 - alpha per coordinate, per box or for all coordinates at once
    (``guarantee``; null: per box for boxes and detections, per coordinate for a vector; the
    header says which). With ``output_range: [l, u]`` the same samples also give the expectation
    bound (paper 000, Corollary 1) in ``expectation.tsv``.

    Checked in ``setup``, before training: p in (0, 1), eps >= 0, the guarantee's name, that the
    model's output on the first example is a real vector, and that n gives finite bounds at the
    largest eps (else a one-line error naming the smallest n). Example ``i``'s noise is seeded by
    ``(seed, i)``. Rank 0 writes the curves (median interval width; for boxes the median certified
    IoU with the ground truth and the median worst IoU between two certified boxes) against eps
    (TSV, PNG, wandb) and ``num_images`` figures with the farthest each box edge can move.
    """

    option = "median"
    progress, objective_mode = "median", "min"

    def __init__(
        self,
        sigma: float,
        output_dir: str,
        eps: float | Sequence[float] = (0.25, 0.36, 0.5),
        n: int = 2000,
        alpha: float = 0.001,
        p: float = 0.5,
        guarantee: str | None = None,
        output_range: Sequence[float] | None = None,
        method: str = "clopper_pearson",
        batch_size: int = 1000,
        num_examples: int | None = 50,
        skip: int = 1,
        split: str = "test",
        weights: str = "last",
        seed: int = 0,
        num_images: int = 4,
        bf16: bool = False,
        resume: bool = False,
        noise: Noise | None = None,
    ) -> None:
        selection = (batch_size, num_examples, skip, split, weights, seed)
        super().__init__(sigma, output_dir, *selection, bf16, resume)
        self.use_noise(noise, None)
        self.requested = guarantee  # resolved in check_model, once the output kind is known
        self.smoother = PercentileSmooth(  # checks the settings now (a box as placeholder)
            self._base, self.noise, eps, n, alpha, p, guarantee, self.batch_size, box_size=4
        )
        self.range = None if output_range is None else check_range(*output_range)
        require(method in METHODS, f"certify.method={method!r}: use one of {', '.join(METHODS)}")
        self.method = method
        self.num_images = check_count(num_images, "certify.num_images", minimum=0)
        self.settings = {"n": n, "alpha": alpha, "p": p, "guarantee": guarantee}
        self.objective = f"cert/median/width@{self.smoother.eps[0]:g}"  # detection: see prepare
        self.outputs = 0  # m, from the first example (prepare)
        self.module: LightningModule | None = None
        self.records: dict[str, list[MedianRecord]] = {}
        self.figures: list[tuple] = []

    def _base(self, x: Tensor) -> Tensor:
        with self.autocast(x.device):
            return as_output_vectors(self.module.structured_output(x))

    def check_model(self, pl_module: LightningModule) -> None:
        kind = getattr(pl_module, "output_kind", "")
        if not callable(getattr(pl_module, "structured_output", None)) or kind not in OUTPUT_KINDS:
            raise ConfigError(
                f"certify=median needs a model whose structured_output is a real vector (output "
                f"kinds {', '.join(OUTPUT_KINDS)}); {type(pl_module).__name__} gives "
                f"{kind or 'none'}: use certify=cohen, segcertify or center"
            )
        box_size, smoother = BOX_SIZES.get(kind), self.smoother
        self.smoother = PercentileSmooth(
            self._base,
            self.noise,
            smoother.eps,
            smoother.n,
            smoother.alpha,
            smoother.p,
            self.requested,
            self.batch_size,
            box_size,
        )
        self.settings["guarantee"] = self.smoother.guarantee

    def prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.module = pl_module
        idx, eps0 = self.indices(trainer)[0], self.smoother.eps[0]
        x = torch.as_tensor(trainer.datamodule.dataset(self.split)[idx][0])
        check_unit_range(x, f"{self.split} example {idx}")
        with eval_mode(pl_module), torch.inference_mode():
            out = self._base(x[None].to(pl_module.device))
        self.outputs = out.shape[1]
        if pl_module.output_kind == "detection":
            self.objective = f"cert/detection/ap50_lower_bound@{eps0:g}"
            self.objective_mode = "max"
        self.smoother.check_certifiable(self.outputs)
        if self.range is not None:
            require(
                bool(((out >= self.range[0]) & (out <= self.range[1])).all()),
                f"certify.output_range={list(self.range)} does not hold the model's output "
                f"{out.flatten().tolist()[:4]}: the expectation bound needs f in [l, u]",
            )

    def schemas(self) -> dict:
        files = {"median": median_schema()}
        if self.range is not None:
            files["expectation"] = median_schema("expectation")
        return files

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str) -> dict:
        ranks = self.smoother.ranks(self.outputs) if self.outputs else []
        settings = {
            **self.settings,
            "eps": self.smoother.eps,
            "outputs": self.outputs,
            "output_kind": pl_module.output_kind,
            "guarantee_statement": self.smoother.statement(self.outputs or 1),
            "ranks_lower_upper_1based": [(r.lower, r.upper) for r in ranks],
            "alpha_per_bound": ranks[0].alpha if ranks else None,
        }
        if key == "expectation":
            settings.update(output_range=list(self.range), method=self.method)
            settings["guarantee_statement"] = (
                f"for each eps and coordinate: P[E f(x + delta + G) leaves [lower, upper] for "
                f"some ||delta||_2 <= eps] <= {self.smoother.alpha:g} ({self.method}, alpha / 2 "
                f"per side; {self.smoother.guarantee}: alpha / m per coordinate if simultaneous, "
                f"alpha / box size if per_box)"
            )
        certifier = "median" if key == "median" else "median_expectation"
        return self.header(pl_module, checkpoint, certifier, settings)

    def start(self, trainer: Trainer, pl_module: LightningModule) -> AbstractContextManager:
        self.module, self.device, self.figures = pl_module, pl_module.device, []
        return eval_mode(pl_module)

    def certify_one(self, idx: int, example: tuple, needed: Sequence[str]) -> dict:
        began = time.perf_counter()
        x = torch.as_tensor(example[0]).to(self.device)
        check_unit_range(x, f"{self.split} example {idx}")
        generator = example_generator(self.seed, idx, x.device)
        stream = self.noise.stream(tuple(x.shape), generator, x.device, x.dtype)
        values = self.smoother.sorted_outputs(x, stream)
        result = self.smoother.certify_sorted(values)
        target = self._target(example, values.shape[1], self.module)
        seconds = time.perf_counter() - began
        eps = tuple(result.eps)
        records = {
            "median": MedianRecord(
                idx,
                eps,
                result.estimate.cpu().numpy(),
                result.lower.cpu().numpy(),
                result.upper.cpu().numpy(),
                target,
                seconds,
            )
        }
        if self.range is not None:
            low, high = self.range
            rounding = torch.Generator().manual_seed(generator.initial_seed() + 1)
            smoother = self.smoother
            alpha = 2 * bound_alpha(
                smoother.alpha, values.shape[1], smoother.guarantee, smoother.box_size
            )
            mean_lo, mean_hi = mean_interval(values.T, low, high, alpha, self.method, rounding)
            lower, upper = expectation_bounds(mean_lo, mean_hi, low, high, self.noise, eps)
            mean = values.double().mean(0).cpu().numpy()
            records["expectation"] = MedianRecord(idx, eps, mean, lower.T, upper.T, target, 0.0)
        if self.global_rank == 0 and len(self.figures) < self.num_images:
            self.figures.append((idx, x.cpu(), example[1], records["median"]))
        return {key: records[key] for key in needed}

    @staticmethod
    def _target(example: tuple, m: int, module: LightningModule) -> np.ndarray:
        """The ground truth per coordinate (the model's ``regression_target`` of the example's
        target, or the target itself) when it is a float vector of m; nan otherwise."""
        target = example[1] if len(example) > 1 else None
        convert = getattr(module, "regression_target", None)
        if target is not None and callable(convert):
            target = convert(target)
        if isinstance(target, Tensor) and target.is_floating_point() and target.numel() == m:
            return target.reshape(-1).double().numpy()
        return np.full(m, np.nan)

    def keep(self, records: Mapping[str, list]) -> None:
        self.records = dict(records)

    def report(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.summary = report_median(
            trainer,
            self.output_dir,
            self.records,
            pl_module,
            self.figures,
            self.smoother.statement(self.outputs),
            trainer.datamodule.dataset(self.split),
            self.sigma,
            f"{self.smoother.guarantee}, alpha {self.smoother.alpha:g}",
        )
