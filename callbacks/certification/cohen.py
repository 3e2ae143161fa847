"""Cohen et al.'s CERTIFY on held-out examples at the end of fitting, sharded across ranks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from pytorch_lightning import LightningModule, Trainer

from callbacks.certification.base import Item
from callbacks.certification.checks import check_radii
from callbacks.certification.classification import ClassificationCertification
from callbacks.certification.parts import classification_parts
from callbacks.certification.settings import TAKES
from callbacks.certification.settings.classification import IN_RANGE_REFUSED, CohenSettings
from smoothcert.certifiers.examples import certify_group
from smoothcert.certifiers.randomized import certify_group_randomized
from smoothcert.errors import require
from smoothcert.perturbation import is_parametric
from smoothcert.records import COHEN_SCHEMA, CohenRecord, without_interrupted
from smoothcert.report.classification import certify_title


class CohenCertification(ClassificationCertification):
    """CERTIFY(n0, n, alpha) of each example with ``noise`` (None: Gaussian; the config passes
    the training noise node) at ``sigma``, radii in ``norm`` (None: the noise's natural norm),
    each example's noise seeded by ``(seed, index)``, so records depend on neither the device
    count nor the batch size. Rank 0 writes ``certify.tsv`` (Cohen's columns, ``#`` header),
    ``certified_accuracy.tsv``/``.png`` and the ``cert/*`` scalars (l2: ``cert/acc@0.50``; other
    norms name it: ``cert/l1/acc@0.50``); the objective is the average certified radius.
    ``topk`` (e.g. ``[1, 3, 5]``) also certifies each true label among the top k from the same n
    counts (Jia et al.): ``topk.tsv`` beside ``certify.tsv`` (whose columns stay Cohen's), the
    ``certified_topk_accuracy`` curves and ``cert/top<k>/acc@<r>``.

    ``sequential=true`` (issue 23, ``smoothcert.certifiers.sequential``): after the n0 selection
    samples, sampling runs in rounds to fixed check times until every radius of ``radii`` is
    certified, ruled out or out of reach (an anytime-valid confidence sequence; ``n`` is the
    cap); ``certify.tsv`` adds ``samples count p_lower stop grid_radius``, the radius being the
    certificate at the final lower bound (ACR as usual from it). ``budget`` shares forward passes
    or time over the run (``SharedBudget``). An interrupt (Ctrl-C, or SIGTERM as Lightning
    reports it) writes the examples in progress with their bound at the last check (stop
    "interrupted") and stops; ``resume`` certifies those again from scratch, on the same stream.

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
    auto_batch_size = True
    key, schema = "cohen", COHEN_SCHEMA
    settings_type, takes = CohenSettings, (*TAKES, "norm", "perturbation")
    selection = {"batch_size": "auto", "num_examples": 500, "split": "test"}

    def __init__(self, sigma: float, output_dir: str, **settings: Any) -> None:
        super().__init__(sigma, output_dir, **settings)
        self.radii, self.protocol_line = check_radii(self.radii, self.norm), ""
        settings = {"n0": self.n0, "n": self.n, "alpha": self.alpha}
        self.settings = {**settings, **self.perturbation_settings()}
        self.parts = classification_parts(self, self.topk, self.gammas)
        self.in_range = any(part.key == "in_range" for part in self.parts)
        require(not (self.in_range and (self.sequential or self.bound != "cp")), IN_RANGE_REFUSED)
        schema, extra, self.run = self.config.record_mode(self.radii)  # sequential, bound
        self.schema, self.settings = schema or self.schema, {**self.settings, **extra}

    def describe(self, todo: int, total: int, world: int) -> str:
        self.todo, self.world = todo, world  # this rank's share of the budget
        return super().describe(todo, total, world)

    def start(self, trainer: Trainer, pl_module: LightningModule) -> AbstractContextManager:
        self.smooth = self.smoothed(pl_module, channels_last=self.channels_last)
        self.choose_groups(trainer, self.smooth, self.n0, self.n)
        if self.sequential:
            self.group_size = self.run.group_size(self.samples_per_batch)
            mine = len(range(trainer.global_rank, self.todo, self.world))
            self.run.start(mine, self.world, lambda: bool(getattr(trainer, "received_sigterm", 0)))
        return super().start(trainer, pl_module)

    def certify_group(self, items: Sequence[Item]) -> Iterator[dict[str, CohenRecord]]:
        group, settings = self.inputs(items), (self.n0, self.n, self.alpha, self.samples_per_batch)
        if self.sequential:  # after an interrupt, the records at the last check, then a stop
            ks = next((part.ks for part in self.parts if part.key == "topk"), None)
            pairs, stopped = self.run.group(self.smooth, group, self.samples_per_batch, ks)
            yield from ({"cohen": r, **({"topk": t} if t else {})} for r, t in pairs)
            if stopped:
                raise KeyboardInterrupt("sequential certification interrupted (SIGINT/SIGTERM)")
            return
        if self.bound == "randomized_cp":
            records = certify_group_randomized(self.smooth, *group, *settings, self.seed)
            yield from ({"cohen": r} for r in records)
        elif drawing := next((part for part in self.parts if part.key), None):  # top-k, in-range
            pairs = drawing.draw(self.smooth, *group, settings)
            yield from ({"cohen": record, drawing.key: extra} for record, extra in pairs)
        else:
            yield from ({"cohen": r} for r in certify_group(self.smooth, *group, *settings))

    def _previous(self, trainer: Trainer, stores: dict) -> dict[str, list]:
        """Resume: also certifies again (from scratch, on the same stream, so as without the
        interrupt) the examples an interrupt stopped early."""
        previous, redo = without_interrupted(super()._previous(trainer, stores), self.key)
        if redo:
            for key, store in stores.items() if trainer.global_rank == 0 else ():
                store.merge(previous[key])
            trainer.strategy.barrier("sequential_redo")
        return previous

    def title(self, pl_module: LightningModule) -> str:
        name = self.perturbation.name if is_parametric(self.perturbation) else None
        protocol = self.protocol_text(pl_module, len(self.records), n0=self.n0, n=self.n)
        self.protocol_line = f"{protocol}, alpha={self.alpha:g}"  # top-k's title says it too
        head = certify_title(self.noise.name, self.sigma, self.norm, name, self.sound)
        return f"{head}\n{self.protocol_line}"
