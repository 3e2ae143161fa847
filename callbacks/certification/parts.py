"""Parts that compose with a classification certificate (issue 22): top-k certificates from the
same counts, the in-range restriction of a brightness certificate, and accuracy certified at gamma
factors. A classification callback holds a list of them (``parts``) and asks each for its record
file, header, checks, draws and report; none is a branch of the callback."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from callbacks.certification.checks import check_gammas
from smoothcert.certifiers.in_range import certify_group_in_range
from smoothcert.certifiers.topk import certify_group_topk, check_topk
from smoothcert.errors import ConfigError
from smoothcert.perturbation import is_parametric
from smoothcert.records import CohenRecord, RecordSchema
from smoothcert.records.in_range import IN_RANGE_SCHEMA, clean_accuracy
from smoothcert.records.topk import TOPK_SCHEMA
from smoothcert.report.classification import gamma_scalars, in_range_section, topk_section
from smoothcert.report.parts import Section


class Part:
    """One part of a classification certification (``owner``: the callback, whose ``sigma``,
    ``noise``, ``norm``, ``radii``, ``prefix`` and ``perturbation`` it reads). A part with a
    ``key`` writes its own record file (``schema``, header ``header()``) from the samples the
    certificate draws (``draw``); ``amend`` replaces scalars of the certificate's summary (by
    their name after ``cert/``), ``extra`` adds scalars to it, ``sections`` adds report
    sections."""

    key: str = ""
    schema: RecordSchema | None = None

    def __init__(self, owner: Any) -> None:
        self.owner, self.records = owner, []

    def header(self) -> dict[str, object]:
        return {}

    def check(self, contract: Any) -> None:
        """One-line ConfigError if the part does not fit the model (``pl_module.contract()``)."""

    def draw(self, smooth, indices, xs, labels, generators, settings) -> Iterator[tuple]:
        """(certificate record, this part's record) of each example of a group."""
        raise NotImplementedError

    def amend(self) -> dict[str, float]:
        return {}

    def extra(self, records: Sequence[CohenRecord]) -> dict[str, float]:
        return {}

    def sections(self, records: Sequence[CohenRecord], grid: list[float]) -> list[Section]:
        return []


class TopK(Part):
    """``certify.topk``: each true label certified among the top k (Jia et al.; Gaussian noise,
    l2 radii) from the n counts CERTIFY already drew: ``topk.tsv`` and the curves
    ``certified_topk_accuracy`` with ``cert/top<k>/acc@<r>`` and ``cert/top<k>/acr``."""

    key, schema = "topk", TOPK_SCHEMA

    def __init__(self, owner: Any, ks: int | Sequence[int]) -> None:
        super().__init__(owner)
        self.ks = [ks] if isinstance(ks, int) else list(ks)  # checked against K in ``check``
        if owner.noise.name != "gaussian" or owner.norm != "l2":
            raise ConfigError(
                f"certify.topk={self.ks} certifies l2 radii under Gaussian noise (Jia et al.), "
                f"not {owner.noise.name} noise in {owner.norm}: use noise=gaussian "
                "certify.norm=null, or certify.topk=null"
            )

    def header(self) -> dict[str, object]:
        return {"topk": self.ks}

    def check(self, contract: Any) -> None:
        self.ks = check_topk(self.ks, int(contract.num_classes))  # each k in 1..K

    def draw(self, smooth, indices, xs, labels, generators, settings) -> Iterator[tuple]:
        return certify_group_topk(smooth, indices, xs, labels, generators, settings, self.ks)

    def sections(self, records: Sequence[CohenRecord], grid: list[float]) -> list[Section]:
        o = self.owner
        return [topk_section(records, self.records, self.ks, o.radii, o.sigma, o.protocol_line)]


class InRange(Part):
    """A brightness certificate (covering the shift before clipping) restricted to the shifts
    that keep each image in [0, 1]: ``in_range.tsv``, the smoothed prediction at x (the summary's
    clean accuracy), ``certified_accuracy_in_range`` and ``cert/<name>/in_range/acc@<r>``."""

    key, schema = "in_range", IN_RANGE_SCHEMA

    def draw(self, smooth, indices, xs, labels, generators, settings) -> Iterator[tuple]:
        return certify_group_in_range(smooth, indices, xs, labels, generators, settings)

    def amend(self) -> dict[str, float]:
        return {"clean_acc": clean_accuracy(self.records)}  # also where the certificate abstains

    def sections(self, records: Sequence[CohenRecord], grid: list[float]) -> list[Section]:
        o, p = self.owner, self.owner.perturbation
        return [in_range_section(self.records, grid, o.radii, o.prefix, p.name, p.units)]


class GammaFactors(Part):
    """``certify.gammas`` with ``perturbation=gamma``: ``cert/gamma/acc@gamma=<g>``, the fraction
    of examples right and certified at ``x^g`` (each one's range, from its radius)."""

    def __init__(self, owner: Any, gammas: Sequence[float]) -> None:
        super().__init__(owner)
        self.gammas = gammas

    def extra(self, records: Sequence[CohenRecord]) -> dict[str, float]:
        o = self.owner
        return gamma_scalars(records, self.gammas, o.perturbation.certified_at, o.prefix)


def classification_parts(owner: Any, topk: object, gammas: object) -> list[Part]:
    """The parts a classification certification's settings ask for: ``topk``, ``gammas``
    (checked: it needs perturbation=gamma), and the in-range restriction of a perturbation that
    leaves [0, 1] (top-k keeps its own second file instead)."""
    perturbation = owner.perturbation
    parts: list[Part] = [TopK(owner, topk)] if topk else []
    name = perturbation.name if is_parametric(perturbation) else "additive noise"
    checked = check_gammas(gammas, name)
    if is_parametric(perturbation) and not perturbation.keeps_range and not topk:
        parts.append(InRange(owner))
    return parts + ([GammaFactors(owner, checked)] if checked else [])
