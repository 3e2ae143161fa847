"""Center smoothing (Kumar and Goldstein) of a structured-output model, sharded across ranks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager

import torch
from pytorch_lightning import LightningModule, Trainer
from torch import Tensor

from callbacks.certification.base import CertificationCallback
from callbacks.certification.reports.center import center_report
from callbacks.certification.settings import Configured, contract_of
from callbacks.certification.settings import center as checks
from smoothcert.certifiers.center import certify_example
from smoothcert.certifiers.classification import eval_mode
from smoothcert.errors import check_unit_range
from smoothcert.records import CenterExample, RecordSchema, center_schema
from smoothcert.report.parts import Report


class CenterCertification(Configured, CertificationCallback):
    """Certifies ``num_examples`` examples of ``split`` with center smoothing (the settings:
    ``CenterSettings``) under each of ``distance`` (each with its own center) at each noise level
    of ``sigma`` (a number or a list), for every input radius ``eps_in`` or, with ``h``, at eps_in
    = h * sigma (the paper grows sigma with eps_in at a fixed h).

    Works for any model whose contract states a ``structured_output`` (the base function f) of
    output kind "image", "label_map" or "box". Every setting is checked in ``setup``, before
    training: among them q > 1 at every eps_in of a sigma (naming the smallest m that works), too
    few ``candidates`` and whether each distance fits the model's outputs. Each certificate holds
    for each x' within eps_in separately, with probability at least 1 - alpha1 - alpha2 (the
    header's ``guarantee``); the model and the feature network run in eval mode while certifying.
    Example ``i``'s noise is seeded by ``(seed, i)`` (the same standard normal draws for every
    distance and sigma, scaled by sigma). Rows stream to ``center_<distance>.tsv`` (``idx eps_in
    eps_out smoothing_error abstain time sigma p_hat center_radius quantile_radius``), all sigmas
    of an example together; ``resume`` skips the examples finished at every sigma. Rank 0 reports
    per distance (``reports/center.py``): the curves of the median eps_out and smoothing error
    against eps_in, ``cert/*`` scalars and ``num_images`` figures (at the first sigma).
    """

    option, progress, objective_mode = "center", "center", "min"  # objective: median eps_out
    settings_type = checks.CenterSettings
    selection = {"batch_size": 1000, "num_examples": 50, "split": "test"}

    def __init__(self, sigma: float | Sequence[float], output_dir: str, **settings) -> None:
        """``settings``: ``eps_in`` or ``h`` (the input radii of every sigma), the selection, the
        noise and the ``CenterSettings``."""
        sigmas, h, self.grid = checks.noise_grid(sigma, settings.get("eps_in"), settings.get("h"))
        super().__init__(sigmas[0], output_dir, **settings)
        self.sigmas, self.h = sigmas, h  # sorted; grid: each sigma with its eps_in
        checks.check_center_noise(self.noise)
        self.objective = checks.objective_key(self.distances[0], self.grid, self.h)

    def check_model(self, pl_module: LightningModule) -> None:
        self.contract = contract_of(pl_module, self.option)
        checks.check_fits(self.contract, type(pl_module).__name__)

    def prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """``smoothers``: per distance, one ``CenterSmooth`` per sigma in grid order; checks that
        the first example lies in [0, 1] and that every distance fits the model's output on it."""
        setup = (self.grid, self.batch_size, self.noise.name, pl_module, self.contract.num_classes)
        self.smoothers = self.config.smoothers(self.base, *setup)
        out = self.first_output(trainer, pl_module, self.base)
        kind = self.contract.output_kind
        self.candidate_counts = checks.check_first_output(self.smoothers, out, kind)
        checks.warn_uncertifiable(next(iter(self.smoothers.values()))[0], self.grid)

    def base(self, x: Tensor) -> Tensor:
        """The base function f: the contract's structured output (floats as float32)."""
        out = self.structured(x)
        return out.float() if out.is_floating_point() else out

    def schemas(self) -> dict[str, RecordSchema]:
        """One record file per distance, ``center_<distance>.tsv``."""
        return {name: center_schema(name) for name in self.distances}

    def metadata(self, pl_module: LightningModule, checkpoint: str, name: str) -> dict:
        """The header: ``sigma`` a number with one sigma, the list of sigmas with several."""
        kind, chosen = self.contract.output_kind, self.candidate_counts.get(name)
        setting = (self.grid, self.h, chosen, self.feature_network, kind)
        settings = checks.center_header(self.smoothers[name][0], name, *setting)
        model_keys = ("num_classes",) if kind == "label_map" else ()
        header = self.header(pl_module, checkpoint, "center", settings, model_keys)
        return {**header, "sigma": self.sigmas if len(self.grid) > 1 else self.sigma}

    def describe(self, todo: int, total: int, world: int) -> str:
        radii = f"eps_in={self.grid[0][1]}" if self.h is None else f"eps_in = h * sigma, h={self.h}"
        return (
            f"center smoothing: {todo} of {total} {self.split} examples to certify under "
            f"{self.distances} at sigma={self.sigmas if len(self.sigmas) > 1 else self.sigma}, "
            f"{radii}: {self.settings} on {world} process(es)"
        )

    def start(self, trainer: Trainer, pl_module: LightningModule) -> AbstractContextManager:
        """Certifies in eval mode (restored afterwards), the feature network on the device."""
        self.device, self.figures = pl_module.device, {name: [] for name in self.distances}
        if self.feature_network is not None:  # FeatureDistance runs it in eval mode
            self.feature_network.to(self.device)
        return eval_mode(pl_module)

    def certify_one(self, idx: int, example: tuple, needed: Sequence[str]) -> dict:
        """The example at every sigma under each ``needed`` distance; on rank 0 the first
        ``num_images`` examples' (idx, x, base output, center at the first sigma) are kept."""
        x = torch.as_tensor(example[0]).to(self.device)
        check_unit_range(x, f"{self.split} example {idx}")
        with torch.inference_mode():
            base = self.smoothers[self.distances[0]][0].base_function(x[None])
        records = {}
        for name in needed:
            levels = [  # (record, center) per sigma
                certify_example(smoother, x, idx, eps_in, self.seed, base)
                for smoother, (_, eps_in) in zip(self.smoothers[name], self.grid, strict=True)
            ]
            records[name] = CenterExample(idx, tuple(record for record, _ in levels))
            if self.global_rank == 0 and len(self.figures[name]) < self.num_images:
                center = None if levels[0][1] is None else levels[0][1].cpu()
                self.figures[name].append((idx, x.cpu(), base[0].cpu(), center))
        return records

    def keep(self, records: Mapping[str, list[CenterExample]]) -> None:
        self.records = dict(records)

    def build_report(self, pl_module: LightningModule) -> Report:
        return center_report(pl_module, self)
