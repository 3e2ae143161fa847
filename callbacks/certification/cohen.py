"""Cohen et al.'s CERTIFY on held-out examples at the end of fitting, sharded across ranks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Literal

import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from callbacks.certification.base import CertificationCallback, Item
from callbacks.certification.checks import (
    check_gammas,
    check_radii,
    check_sample_sizes,
    norm_prefix,
)
from callbacks.certification.topk import TopKReport
from callbacks.reporting import log_locations, report_curve, say_scalars
from smoothcert.certifiers.classification import Smooth
from smoothcert.certifiers.examples import (
    MAX_GROUP,
    auto_batch_candidates,
    certify_group,
    group_size,
)
from smoothcert.certifiers.in_range import certify_group_in_range
from smoothcert.certifiers.topk import certify_group_topk
from smoothcert.errors import check_alpha, check_count, require
from smoothcert.metrics.certified import certified_accuracy_curve, radius_grid, summarize
from smoothcert.noise import Noise, example_generator
from smoothcert.perturbation import ADDITIVE, Perturbation, is_parametric
from smoothcert.records import COHEN_SCHEMA, CohenRecord, RecordSchema
from smoothcert.records.in_range import IN_RANGE_SCHEMA, clean_accuracy, in_range_curve
from smoothcert.records.topk import TOPK_SCHEMA


class CohenCertification(CertificationCallback):
    """CERTIFY(n0, n, alpha) of each example with ``noise`` (None: Gaussian; the config passes
    the training noise node) at ``sigma``, radii in ``norm`` (None: the noise's natural norm),
    each example's noise seeded by ``(seed, index)``, so records depend on neither the device
    count nor the batch size. Rank 0 writes ``certify.tsv`` (Cohen's columns, ``#`` header),
    ``certified_accuracy.tsv``/``.png`` and the ``cert/*`` scalars (l2: ``cert/acc@0.50``; other
    norms name it: ``cert/l1/acc@0.50``); the objective is the average certified radius.
    ``topk`` (e.g. ``[1, 3, 5]``) also certifies each true label among the top k from the same n
    counts (Jia et al.): ``topk.tsv`` beside ``certify.tsv`` (whose columns stay Cohen's), the
    ``certified_topk_accuracy`` curves and ``cert/top<k>/acc@<r>``.

    ``batch_size="auto"`` times the first example at batch sizes up to the memory cap and
    certifies with the fastest; when whole certifications (``n0 + n`` samples) fit a batch at
    least twice, examples are certified in groups sharing forward passes. Records do not change.

    ``perturbation`` (conf/perturbation) smooths over transformation parameters instead: its noise
    draws them, radii are in its units (brightness units, pixels, |ln gamma|; the header says
    which), and the keys are ``cert/<name>/...`` (e.g. ``cert/brightness/acc@0.50``); for one
    that does not compose (rotation: BaseSPT, a heuristic) ``heuristic/<name>/...``, and the
    curve, its title and the summary line say "estimated", never "certified". With
    ``perturbation=gamma``, ``gammas`` (factors in (0, inf)) adds ``cert/gamma/acc@gamma=<g>``:
    the fraction of examples right and certified at ``x^g`` (each one's range, asymmetric for
    Rayleigh smoothing). A parametric certificate whose radius is 0 abstains (brightness_contrast:
    nothing holds jointly with every contrast in range). Brightness and brightness_contrast cover
    the shift before clipping (TSS's threat model; the header and the axis say so): they also
    write ``in_range.tsv`` (the certificate restricted to the shifts that keep each image in
    [0, 1], and the smoothed prediction at x, from which ``clean_acc`` is counted),
    ``certified_accuracy_in_range.tsv``/``.png`` and ``cert/<name>/in_range/acc@<r>``.
    """

    option, tasks = "cohen", ("classification", "denoised_classification")
    objective, objective_mode, auto_batch_size = "cert/acr", "max", True

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
        topk: Sequence[int] | None = None,
        perturbation: Perturbation = ADDITIVE,
        gammas: Sequence[float] | None = None,
    ) -> None:
        selection = (batch_size, num_examples, skip, split, weights, seed)
        super().__init__(sigma, output_dir, *selection, bf16, resume, crash_after)
        self.perturbation = perturbation
        if is_parametric(perturbation):  # its noise draws the parameters; radii in its units
            require(
                perturbation.sigma == self.sigma,
                f"certify.sigma={self.sigma} differs from perturbation={perturbation.name}'s noise "
                f"sigma={perturbation.sigma}: certify at the perturbation's level",
            )
            self.noise, self.norm = perturbation.noise, perturbation.name
            self.sound = perturbation.certified  # BaseSPT (rotation): heuristic/rotation/...
            self.prefix = norm_prefix(self.norm, self.sound)
        else:
            self.use_noise(noise, norm)
        self.objective = f"{self.prefix}acr"
        self.n0, self.n = check_count(n0, "certify.n0"), check_count(n, "certify.n")
        self.alpha, self.radii = check_alpha(alpha, "certify.alpha"), check_radii(radii, self.norm)
        if swapped := check_sample_sizes(self.n0, self.n, self.alpha):
            rank_zero_warn(swapped)
        self.channels_last, self.records = channels_last, []
        self.settings = {"n0": self.n0, "n": self.n, "alpha": self.alpha}
        self.topk = TopKReport(topk, self) if topk else None
        name = perturbation.name if is_parametric(perturbation) else "additive noise"
        self.gammas = check_gammas(gammas, name)
        if is_parametric(perturbation):
            heuristic = "" if perturbation.certified else " (heuristic: not a certificate)"
            self.settings.update(
                perturbation=perturbation.name, units=perturbation.units + heuristic
            )
            self.settings.update(perturbation.header_settings())
        self.in_range = is_parametric(perturbation) and not perturbation.keeps_range
        self.in_range = self.in_range and not self.topk  # top-k keeps its own second file

    def check_selection(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().check_selection(trainer, pl_module)
        if is_parametric(self.perturbation):  # e.g. translation of examples that are not images
            example = trainer.datamodule.dataset(self.split)[0][0]
            self.perturbation.check_input(tuple(torch.as_tensor(example).shape))

    def schemas(self) -> dict[str, RecordSchema]:
        extra = {"topk": TOPK_SCHEMA} if self.topk else {}
        extra.update({"in_range": IN_RANGE_SCHEMA} if self.in_range else {})
        return {"cohen": COHEN_SCHEMA, **extra}

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str = "") -> dict:
        extra = {"topk": self.topk.ks} if key == "topk" and self.topk else {}
        return self.header(pl_module, checkpoint, "cohen", {**self.settings, **extra})

    def check_model(self, pl_module: LightningModule) -> None:
        super().check_model(pl_module)
        if self.topk:  # each k in 1..K, before training
            self.topk.check(pl_module.hparams.num_classes)

    def start(self, trainer: Trainer, pl_module: LightningModule) -> AbstractContextManager:
        options = {"autocast_dtype": torch.bfloat16 if self.bf16 else None, "noise": self.noise}
        options.update(channels_last=self.channels_last, norm=self.norm)
        if is_parametric(self.perturbation):
            options.update(noise=None, norm=None, perturbation=self.perturbation)
        classes, self.device = pl_module.hparams.num_classes, pl_module.device
        self.smooth = Smooth(pl_module.base_function(), classes, self.sigma, **options)
        candidates = auto_batch_candidates(self.n0, self.n, MAX_GROUP)
        choose, per = self.smooth.choose_batch_size, self.n0 + self.n
        self.samples_per_batch = self.choose_batch_size(trainer, choose, candidates, per)
        self.group_size = group_size(self.samples_per_batch, self.n0, self.n, MAX_GROUP)
        return super().start(trainer, pl_module)

    def certify_group(self, items: Sequence[Item]) -> Iterator[dict[str, CohenRecord]]:
        indices = [idx for idx, _, _ in items]
        xs = [torch.as_tensor(example[0]).to(self.device) for _, example, _ in items]
        labels = [int(example[1]) for _, example, _ in items]
        generators = [example_generator(self.seed, idx, self.device) for idx in indices]
        settings = (self.n0, self.n, self.alpha, self.samples_per_batch)
        if self.topk:
            pairs = certify_group_topk(
                self.smooth, indices, xs, labels, generators, settings, self.topk.ks
            )
            yield from ({"cohen": record, "topk": topk} for record, topk in pairs)
            return
        if self.in_range:
            pairs = certify_group_in_range(self.smooth, indices, xs, labels, generators, settings)
            yield from ({"cohen": record, "in_range": extra} for record, extra in pairs)
            return
        records = certify_group(self.smooth, indices, xs, labels, generators, *settings)
        yield from ({"cohen": record} for record in records)

    def keep(self, records: Mapping[str, list[CohenRecord]]) -> None:
        self.records: list[CohenRecord] = records["cohen"]
        if self.topk:
            self.topk.records = records["topk"]
        self.in_range_records = records["in_range"] if self.in_range else []

    def report(self, trainer: Trainer, pl_module: LightningModule) -> None:
        summary = summarize(self.records, self.radii)
        if self.in_range:  # the smoothed prediction at x, also where the certificate abstains
            summary["cert/clean_acc"] = clean_accuracy(self.in_range_records)
        self.summary = {self.prefix + k.removeprefix("cert/"): v for k, v in summary.items()}
        for gamma in self.gammas or ():  # perturbation=gamma: accuracy certified at x^gamma
            radii = [r.radius for r in self.records]
            inside = self.perturbation.certified_at(radii, gamma)
            hits = [
                bool(r.correct) and bool(ok) for r, ok in zip(self.records, inside, strict=True)
            ]
            self.summary[f"{self.prefix}acc@gamma={gamma:g}"] = sum(hits) / max(len(hits), 1)
        grid = radius_grid(self.records)
        curve = certified_accuracy_curve(self.records, grid).tolist()
        title = f"Cohen CERTIFY, {self.noise.name} sigma={self.sigma}, {self.norm} radius"
        stem = "certified_accuracy" if self.sound else "estimated_accuracy"
        names = (stem, "radius", stem, grid.tolist(), curve)
        label = f"{self.norm} radius"
        if is_parametric(self.perturbation):
            title = f"CERTIFY over {self.perturbation.name}, {self.noise.name} sigma={self.sigma}"
            label = self.perturbation.axis_label
        if not self.sound:
            name = self.perturbation.name
            title = f"estimated over {name} (heuristic), {self.noise.name} sigma={self.sigma}"
        protocol = self.protocol_text(pl_module, len(self.records), n0=self.n0, n=self.n)
        self.protocol_line = f"{protocol}, alpha={self.alpha:g}"  # top-k's title says it too
        title += f"\n{self.protocol_line}: ACR={summary['cert/acr']:.3f}"
        paths = report_curve(
            trainer, self.output_dir, *names, title, self.summary, x_label=label, sound=self.sound
        )
        table = say_scalars(summary, "cert/")
        at_gammas = {k: v for k, v in self.summary.items() if "acc@gamma=" in k}
        table += "".join(f", {k}={v:.3f}" for k, v in at_gammas.items())
        said = "certified" if self.sound else "estimated (heuristic, not a certificate)"
        rank_zero_info(f"{said}: {table}")
        curves = [paths, self.topk.report(trainer, self.records)] if self.topk else [paths]
        if self.in_range:
            curves.append(self.report_in_range(trainer, grid))
        log_locations(trainer, str(self.output_dir / "certify.tsv"), curves)

    def report_in_range(self, trainer: Trainer, grid) -> dict:
        """The curve and scalars of the certificates restricted to in-range shifts."""
        key = f"{self.prefix}in_range/"
        report = in_range_curve(self.in_range_records, self.radii).tolist()
        scalars = {f"{key}acc@{r:.2f}": v for r, v in zip(self.radii, report, strict=True)}
        radii = [r.in_range_radius * r.correct for r in self.in_range_records]
        scalars[f"{key}acr"] = sum(radii) / max(len(radii), 1)
        self.summary.update(scalars)
        curve = in_range_curve(self.in_range_records, grid).tolist()
        title = f"CERTIFY over {self.perturbation.name}, shifts keeping the image in [0, 1]"
        label = f"brightness radius, shifts keeping the image in [0, 1] ({self.perturbation.units})"
        names = ("certified_accuracy_in_range", "radius", "certified_accuracy", grid.tolist())
        table = ", ".join(f"{k.removeprefix(self.prefix)}={v:.3f}" for k, v in scalars.items())
        rank_zero_info(f"certified, in-range shifts only: {table}")
        return report_curve(trainer, self.output_dir, *names, curve, title, scalars, label)
