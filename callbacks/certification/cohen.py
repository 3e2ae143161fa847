"""Cohen et al.'s CERTIFY on held-out examples at the end of fitting, sharded across ranks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Literal

import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info

from callbacks.certification.base import CertificationCallback, Item
from callbacks.certification.checks import certify_noise, norm_prefix
from callbacks.reporting import log_locations, report_curve
from smoothcert.certifiers.classification import Smooth
from smoothcert.certifiers.examples import (
    MAX_GROUP,
    auto_batch_candidates,
    certify_group,
    group_size,
)
from smoothcert.errors import check_alpha, check_count, require
from smoothcert.metrics.certified import certified_accuracy_curve, radius_grid, summarize
from smoothcert.noise import Noise, example_generator
from smoothcert.records import COHEN_SCHEMA, CohenRecord, RecordSchema


class CohenCertification(CertificationCallback):
    """CERTIFY(n0, n, alpha) of each example at ``sigma``, its noise seeded by ``(seed, index)``
    (records depend on neither the device count nor the batch size). Rank 0 writes
    ``certify.tsv`` (Cohen's columns, ``#`` header), ``certified_accuracy.tsv``/``.png`` and logs
    the ``cert/*`` scalars; the objective is the average certified radius ``cert/acr``.

    ``noise`` is the smoothing distribution, used at ``sigma`` (None: Gaussian; the config passes
    the training noise node, so ``certify.sigma`` may differ from the training level) and ``norm``
    the norm of the certified radius (None: the noise's natural norm). Radii and their keys are in
    that norm: l2 keys are ``cert/acc@0.50``, other norms name it (``cert/l1/acc@0.50``, objective
    ``cert/l1/acr``).

    ``batch_size="auto"`` times the first selected example at batch sizes from 64 up to the
    memory cap and certifies with the fastest (once per run and process; logged). When whole
    certifications (``n0 + n`` samples) fit a batch at least twice, examples are certified in
    groups that share forward passes (``Smooth.certify_many``); records do not change."""

    option, tasks = "cohen", ("classification", "denoised_classification")
    objective, objective_mode = "cert/acr", "max"
    auto_batch_size = True
    max_group = MAX_GROUP  # examples certified together at most (a crash loses at most these)

    def __init__(
        self,
        sigma: float,
        output_dir: str,
        n0: int = 100,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int | Literal["auto"] = "auto",
        num_examples: int | None = 500,
        skip: int = 1,
        split: str = "test",
        weights: str = "last",
        radii: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
        seed: int = 0,
        bf16: bool = False,
        channels_last: bool = False,
        resume: bool = False,
        crash_after: int | None = None,
        noise: Noise | None = None,
        norm: str | None = None,
    ) -> None:
        selection = (batch_size, num_examples, skip, split, weights, seed)
        super().__init__(sigma, output_dir, *selection, bf16, resume, crash_after)
        self.noise, self.norm = certify_noise(self.sigma, noise, norm)
        self.prefix = norm_prefix(self.norm)
        self.objective = f"{self.prefix}acr"
        self.n0, self.n = check_count(n0, "certify.n0"), check_count(n, "certify.n")
        self.alpha, self.radii = check_alpha(alpha, "certify.alpha"), [float(r) for r in radii]
        negative = (
            f"certify.radii={list(radii)} has a negative radius: radii are {self.norm} distances"
        )
        require(
            all(r >= 0 for r in self.radii), f"{negative} (>= 0), e.g. certify.radii=[0.0,0.25,0.5]"
        )
        self.channels_last, self.records = channels_last, []

    def schemas(self) -> dict[str, RecordSchema]:
        return {"cohen": COHEN_SCHEMA}

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str = "") -> dict:
        noise = {"noise": self.noise.name, "noise_scale": self.noise.scale, "norm": self.norm}
        settings = {**noise, "n0": self.n0, "n": self.n, "alpha": self.alpha}
        return self.header(pl_module, checkpoint, "cohen", settings)

    def describe(self, todo: int, total: int, world: int) -> str:
        return (
            f"certifying {todo} of {total} {self.split} examples ({total - todo} already done): "
            f"n0={self.n0} n={self.n} alpha={self.alpha} {self.noise.name} sigma={self.sigma} "
            f"({self.norm} radii) on {world} process(es)"
        )

    def start(self, trainer: Trainer, pl_module: LightningModule) -> AbstractContextManager:
        dtype, classes = torch.bfloat16 if self.bf16 else None, pl_module.hparams.num_classes
        base = getattr(pl_module, "base_function", None)
        model, self.device = (base() if callable(base) else pl_module.model), pl_module.device
        options = {"autocast_dtype": dtype, "channels_last": self.channels_last}
        noise = {"noise": self.noise, "norm": self.norm}
        self.smooth = Smooth(model, classes, self.sigma, **options, **noise)
        self.samples_per_batch = self.batch_size
        if self.batch_size == "auto":
            indices = self.indices(trainer)
            first = trainer.datamodule.dataset(self.split)[indices[0]][0]
            x = torch.as_tensor(first).to(self.device)
            candidates = auto_batch_candidates(self.n0, self.n, self.max_group)
            work = -(-len(indices) // trainer.world_size) * (self.n0 + self.n)  # this rank's
            choice = self.smooth.choose_batch_size(x, max(candidates), candidates, work=work)
            self.samples_per_batch = choice.batch_size
            rank_zero_info(f"certify.batch_size=auto: {choice.describe()}")
        self.group_size = group_size(self.samples_per_batch, self.n0, self.n, self.max_group)
        if self.group_size > 1:
            rank_zero_info(
                f"certifying {self.group_size} examples per group: their n0 + n = "
                f"{self.n0 + self.n} samples share forward passes of {self.samples_per_batch}"
            )
        return super().start(trainer, pl_module)

    def certify_one(
        self, idx: int, example: tuple, needed: Sequence[str]
    ) -> dict[str, CohenRecord]:
        return next(self.certify_group([(idx, example, needed)]))

    def certify_group(self, items: Sequence[Item]) -> Iterator[dict[str, CohenRecord]]:
        indices = [idx for idx, _, _ in items]
        xs = [torch.as_tensor(example[0]).to(self.device) for _, example, _ in items]
        labels = [int(example[1]) for _, example, _ in items]
        generators = [example_generator(self.seed, idx, self.device) for idx in indices]
        settings = (self.n0, self.n, self.alpha, self.samples_per_batch)
        records = certify_group(self.smooth, indices, xs, labels, generators, *settings)
        yield from ({"cohen": record} for record in records)

    def keep(self, records: Mapping[str, list[CohenRecord]]) -> None:
        self.records: list[CohenRecord] = records["cohen"]

    def report(self, trainer: Trainer, pl_module: LightningModule) -> None:
        summary = summarize(self.records, self.radii)
        self.summary = {self.prefix + k.removeprefix("cert/"): v for k, v in summary.items()}
        grid = radius_grid(self.records)
        curve = certified_accuracy_curve(self.records, grid).tolist()
        title = f"Cohen CERTIFY, {self.noise.name} sigma={self.sigma}, {self.norm} radius"
        names = ("certified_accuracy", "radius", "certified_accuracy")
        xs, label = grid.tolist(), f"{self.norm} radius"
        paths = report_curve(
            trainer, self.output_dir, *names, xs, curve, title, self.summary, x_label=label
        )
        table = ", ".join(f"{k.removeprefix(self.prefix)}={v:.3f}" for k, v in summary.items())
        rank_zero_info(f"certified: {table}")
        log_locations(trainer, str(self.output_dir / "certify.tsv"), [paths])
