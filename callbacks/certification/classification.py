"""The base of the classification certifiers whose records are Cohen's columns (CERTIFY, DistSPT,
Lipschitz): one record file ``key`` plus the files of its parts (top-k, in-range, gamma factors;
see ``callbacks.certification.parts``), which compose with any of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pytorch_lightning import LightningModule, Trainer

from callbacks.certification.base import CertificationCallback, Item
from callbacks.certification.parts import Part
from callbacks.certification.settings import Configured
from smoothcert.certifiers.classification import Smooth
from smoothcert.certifiers.examples import MAX_GROUP, auto_batch_candidates, group_size
from smoothcert.metrics.certified import radius_grid
from smoothcert.noise import example_generator
from smoothcert.perturbation import is_parametric
from smoothcert.records import CohenRecord, RecordSchema
from smoothcert.report.classification import certified_section
from smoothcert.report.parts import Report


class ClassificationCertification(Configured, CertificationCallback):
    """A certifier of classifiers writing Cohen's columns (``idx label predict radius correct
    time``) to the record file ``key`` (``schema``), with ``parts`` composed onto it: their
    record files beside it (header: the certifier's ``settings`` and the part's), their checks
    against ``pl_module.contract()`` before training, their scalars and their report sections.

    Its report is ``certified_section``: certified accuracy against radius (``stem``), the
    ``prefix``-ed scalars (``acc@<r>`` at ``radii``, acr, abstain, clean_acc, num_examples) and
    the line ``<said>: ...`` (for a heuristic, not ``sound``: ``estimated_accuracy`` and
    "estimated"); a subclass gives ``title(pl_module)`` (the figure's title, with the protocol)
    and may set ``x_label`` (default: the perturbation's axis or the norm's radius), ``said`` and
    ``unit``. Its objective is ``<prefix>acr``. ``smoothed`` builds the smoothed classifier from
    the contract, ``inputs`` a group's inputs and ``(seed, index)`` generators. A subclass takes
    its settings as ``Configured`` says (``settings_type``, ``takes``, ``selection``)."""

    key, schema = "", None  # the certificate's record file
    said, stem, unit = "certified", "certified_accuracy", ""
    parts: Sequence[Part] = ()
    records: Sequence[CohenRecord] = ()  # the kept records (``keep``)
    settings: Mapping[str, Any] = {}
    radii: Sequence[float] = ()

    def schemas(self) -> dict[str, RecordSchema]:
        return {self.key: self.schema, **{p.key: p.schema for p in self.parts if p.key}}

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str = "") -> dict:
        extra = next((p.header() for p in self.parts if p.key == key), {})
        return self.header(pl_module, checkpoint, self.option, {**self.settings, **extra})

    def check_model(self, pl_module: LightningModule) -> None:
        super().check_model(pl_module)
        for part in self.parts:  # e.g. each top-k k in 1..K, before training
            part.check(pl_module.contract())

    def smoothed(self, pl_module: LightningModule, **options: Any) -> Smooth:
        """The smoothed classifier of the model's base function (read from
        ``pl_module.contract()``, with its number of classes) under the certifier's noise at
        ``sigma`` (radii in ``norm``) or its ``perturbation``, its forward passes under bfloat16
        autocast if ``bf16``; ``options`` go to ``Smooth``. Sets ``device``."""
        options["autocast_dtype"] = torch.bfloat16 if self.bf16 else None
        if is_parametric(self.perturbation):
            options.update(perturbation=self.perturbation)
        else:
            options.update(noise=self.noise, norm=self.norm)
        contract, self.device = pl_module.contract(), pl_module.device
        return Smooth(contract.base_function, contract.num_classes, self.sigma, **options)

    def choose_groups(self, trainer: Trainer, smooth: Smooth, n0: int, n: int) -> None:
        """Sets ``samples_per_batch`` (``batch_size``, or for ``auto`` the fastest timed on the
        first example) and ``group_size``: examples certified together when whole certifications
        (``n0 + n`` samples) fit a batch at least twice. Records do not depend on either."""
        candidates = auto_batch_candidates(n0, n, MAX_GROUP)
        choose = smooth.choose_batch_size
        self.samples_per_batch = self.choose_batch_size(trainer, choose, candidates, n0 + n)
        self.group_size = group_size(self.samples_per_batch, n0, n, MAX_GROUP)

    def inputs(self, items: Sequence[Item]) -> tuple[list, list, list, list]:
        """A group's indices, inputs (on ``device``), labels and noise generators (each seeded
        by ``(seed, index)``)."""
        indices = [idx for idx, _, _ in items]
        xs = [torch.as_tensor(example[0]).to(self.device) for _, example, _ in items]
        labels = [int(example[1]) for _, example, _ in items]
        return indices, xs, labels, [example_generator(self.seed, i, self.device) for i in indices]

    def keep(self, records: Mapping[str, list[CohenRecord]]) -> None:
        self.records: list[CohenRecord] = records[self.key]
        for part in self.parts:
            part.records = records[part.key] if part.key else []

    def title(self, pl_module: LightningModule) -> str:
        raise NotImplementedError

    @property
    def objective(self) -> str:
        """What a sweeper maximizes: the average certified radius, ``<prefix>acr``."""
        return f"{self.prefix}acr"

    @property
    def x_label(self) -> str:
        """The curve's x axis: the perturbation's (its units), else the radii's norm."""
        if is_parametric(self.perturbation):
            return self.perturbation.axis_label
        return f"{self.norm} radius"

    def build_report(self, pl_module: LightningModule) -> Report:
        amend, extra = {}, {}
        for part in self.parts:
            amend.update(part.amend())
            extra.update(part.extra(self.records))
        said = self.said if self.sound else "estimated (heuristic, not a certificate)"
        stem = self.stem if self.sound else "estimated_accuracy"
        args = (self.records, self.radii, self.prefix, self.title(pl_module), self.x_label)
        main = certified_section(*args, said, stem, self.unit, amend, extra)
        grid = radius_grid(self.records).tolist()
        sections = [s for part in self.parts for s in part.sections(self.records, grid)]
        return Report([main, *sections])
