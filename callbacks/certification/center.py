"""Center smoothing (Kumar and Goldstein) of a structured-output model, sharded across ranks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager

import torch
from pytorch_lightning import LightningModule, Trainer
from torch import Tensor, nn

from callbacks.center_checks import (
    build_smoothers,
    check_outputs_fit,
    guarantee,
    noise_grid,
    warn_uncertifiable,
)
from callbacks.center_report import report_center
from callbacks.certification.base import CertificationCallback
from callbacks.certification.checks import CERTIFIER_FOR_TASK
from smoothcert.certifiers.center import CenterSmooth, center_noise, certify_example, output_factor
from smoothcert.certifiers.classification import eval_mode
from smoothcert.distances import build_distance
from smoothcert.errors import ConfigError, check_count, check_unit_range, require
from smoothcert.noise import Noise
from smoothcert.records import CenterExample, RecordSchema, center_schema

OUTPUT_KINDS = ("image", "label_map", "box")


class CenterCertification(CertificationCallback):
    """Certifies ``num_examples`` examples of ``split`` with center smoothing under each of
    ``distance`` (each with its own center) at each noise level of ``sigma`` (a number or a list),
    for every input radius ``eps_in`` or, with ``h``, at eps_in = h * sigma (the paper grows sigma
    with eps_in at a fixed h).

    Works for any model with ``structured_output(x)`` (the base function f) and ``output_kind``
    ("image", "label_map" or "box"). Every setting is checked in ``setup``, before training: among
    them q > 1 at every eps_in of a sigma (naming the smallest m that works), too few ``candidates``
    (see ``CenterSmooth``) and whether each distance fits the model's outputs. Each certificate
    holds for each x' within eps_in separately, with probability at least 1 - alpha1 - alpha2 (the
    header's ``guarantee``); the model and the feature network run in eval mode while certifying
    (the library restores their mode). Examples are sharded as ``indices[rank::world_size]`` and
    example ``i``'s noise is seeded by ``(seed, i)`` (the same standard normal draws for every
    distance and sigma, scaled by sigma), so results depend on neither the device count nor the
    batch size. Rows stream to ``center_<distance>.tsv`` (``idx eps_in eps_out smoothing_error
    abstain time sigma p_hat center_radius quantile_radius``, ``#`` header), all sigmas of an
    example together; ``resume`` skips the examples finished at every sigma. Rank 0 writes per
    distance the curves of the median eps_out and the median smoothing error d(f(x), smoothed f(x))
    against eps_in (TSV, PNG, wandb; with several sigmas and ``h``, one pair per h across the
    sigmas), ``cert/*`` scalars and ``num_images`` example figures (at the first sigma) in
    ``center_examples/``.
    """

    option = "center"  # certifies any model with structured_output (see check_model)
    progress, objective_mode = "center", "min"  # objective: median eps_out (see __init__)

    def __init__(
        self,
        sigma: float | Sequence[float],
        output_dir: str,
        eps_in: float | Sequence[float] | None = None,
        h: float | Sequence[float] | None = None,
        n: int = 10_000,
        m: int = 1_000_000,
        delta: float = 0.05,
        alpha1: float = 0.005,
        alpha2: float = 0.005,
        gamma: float | None = None,
        distance: str | Sequence[str] = "l2",
        feature_network: nn.Module | None = None,
        candidates: int | None = None,
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
        sigmas, self.h, self.grid = noise_grid(sigma, eps_in, h)  # grid: (sigma, its eps_in)
        selection = (batch_size, num_examples, skip, split, weights, seed)
        super().__init__(sigmas[0], output_dir, *selection, bf16, resume)
        self.sigmas = sigmas
        self.use_noise(noise, None)
        try:
            center_noise(self.noise)
        except ConfigError as error:
            raise ConfigError(f"certify.noise: {error}") from None
        self.distances = [distance] if isinstance(distance, str) else [str(d) for d in distance]
        require(
            len(self.distances) == len(set(self.distances)) > 0,
            f"certify.distance={distance}: name a distance or a list of different distances",
        )
        self.settings = {"n": n, "m": m, "delta": delta, "alpha1": alpha1, "alpha2": alpha2}
        self.settings.update(gamma=gamma, candidates=candidates)
        self.feature_network = feature_network
        self.num_images = check_count(num_images, "certify.num_images", minimum=0)
        at = f"/sigma{sigmas[0]:g}" if len(sigmas) > 1 else ""
        # The median eps_out under the first distance at the first sigma's smallest eps_in (named
        # by its h when eps_in = h * sigma, so that jobs of a sigma sweep share the key).
        point = f"{self.grid[0][1][0]:g}" if self.h is None else f"h{self.h[0]:g}"
        self.objective = f"cert/{self.distances[0]}/eps_out@{point}{at}"
        self.smoothers: dict[str, list[CenterSmooth]] = {}  # one per sigma, in grid order
        self.candidate_counts: dict[str, int] = {}  # centers chosen among (n: all samples)
        self.records: dict[str, list[CenterExample]] = {}

    def check_model(self, pl_module: LightningModule) -> None:
        """Center smoothing certifies any model with a ``structured_output`` of a known kind."""
        if not callable(getattr(pl_module, "structured_output", None)):
            task = getattr(pl_module, "task", "")
            suggestion = CERTIFIER_FOR_TASK.get(task)
            fix = f": use certify={suggestion}" if suggestion else ""
            raise ConfigError(
                f"certify=center needs a model with structured_output (an autoencoder, "
                f"segmentation or box model); {type(pl_module).__name__} has none{fix}"
            )
        kind = getattr(pl_module, "output_kind", None)
        require(kind in OUTPUT_KINDS, f"model output_kind={kind!r} is not one of {OUTPUT_KINDS}")

    def prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.smoothers = {name: self._smoothers(pl_module, name) for name in self.distances}
        self._check_first_example(trainer, pl_module)
        warn_uncertifiable(next(iter(self.smoothers.values()))[0], self.grid)

    def _smoothers(self, pl_module: LightningModule, name: str) -> list[CenterSmooth]:
        num_classes = pl_module.hparams.get("num_classes")
        network = self.feature_network
        distance = build_distance(name, num_classes, network, setting="certify.distance")
        base = self._base_function(pl_module)
        settings = {**self.settings, "modules": (pl_module,), "noise": self.noise.name}
        return build_smoothers(base, distance, self.grid, self.batch_size, settings)

    def _base_function(self, pl_module: LightningModule) -> Callable[[Tensor], Tensor]:
        def base(x: Tensor) -> Tensor:
            with self.autocast(x.device):
                out = pl_module.structured_output(x)
            return out.float() if out.is_floating_point() else out

        return base

    def _check_first_example(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The first example lies in [0, 1] and each distance accepts the model's outputs."""
        idx = self.indices(trainer)[0]
        x = torch.as_tensor(trainer.datamodule.dataset(self.split)[idx][0])
        check_unit_range(x, f"{self.split} example {idx}")
        with eval_mode(pl_module), torch.inference_mode():
            out = self._base_function(pl_module)(x[None].to(pl_module.device))
        distances = {name: smoothers[0].distance for name, smoothers in self.smoothers.items()}
        check_outputs_fit(distances, out, pl_module.output_kind)
        try:  # candidates mode (forced or by the memory budget) is decided by the output size
            self.candidate_counts = {
                name: smoothers[0]._num_candidates(out)
                for name, smoothers in self.smoothers.items()
            }
        except ConfigError as error:
            raise ConfigError(f"certify.{error}") from None

    def schemas(self) -> dict[str, RecordSchema]:
        """One record file per distance, ``center_<distance>.tsv``."""
        return {name: center_schema(name) for name in self.distances}

    def metadata(self, pl_module: LightningModule, checkpoint: str, name: str) -> dict:
        """The record file's header: ``sigma`` and ``eps_in`` as a number and a list with one
        sigma; with several, the list of sigmas and one list of eps_in per sigma."""
        smoother, several = self.smoothers[name][0], len(self.grid) > 1
        settings = {
            "distance": name,
            "gamma": smoother.gamma,
            "eps_out_factor": output_factor(smoother.gamma),
            "eps_in": [eps_in for _, eps_in in self.grid] if several else self.grid[0][1],
            "h": self.h,
            "n": smoother.n,
            "m": smoother.m,
            "delta": smoother.delta,
            "alpha1": smoother.alpha1,
            "alpha2": smoother.alpha2,
            "candidates": self.candidate_counts.get(name, smoother.candidates),
            "min_candidates": smoother.min_candidates,
            "candidate_miss_budget": smoother.miss_budget
            if self.candidate_counts.get(name, smoother.n) < smoother.n
            else 0.0,
            "guarantee": guarantee(smoother),
            "feature_network": type(self.feature_network).__name__ if name == "feature" else None,
            "output_kind": pl_module.output_kind,
        }
        model_keys = ("num_classes",) if pl_module.output_kind == "label_map" else ()
        header = self.header(pl_module, checkpoint, "center", settings, model_keys)
        header["sigma"] = self.sigmas if several else self.sigma
        return header

    def describe(self, todo: int, total: int, world: int) -> str:
        radii = f"eps_in={self.grid[0][1]}" if self.h is None else f"eps_in = h * sigma, h={self.h}"
        sigma = self.sigmas if len(self.sigmas) > 1 else self.sigma
        return (
            f"center smoothing: {todo} of {total} {self.split} examples to certify "
            f"under {self.distances} at sigma={sigma}, {radii}: {self.settings} on {world} "
            "process(es)"
        )

    def start(self, trainer: Trainer, pl_module: LightningModule) -> AbstractContextManager:
        """Certifies in eval mode (restored afterwards), the feature network on the device."""
        self.device = pl_module.device
        self.figures: dict[str, list[tuple]] = {name: [] for name in self.distances}
        if self.feature_network is not None:  # FeatureDistance runs it in eval mode
            self.feature_network.to(self.device)
        return eval_mode(pl_module)

    def certify_one(
        self, idx: int, example: tuple, needed: Sequence[str]
    ) -> dict[str, CenterExample]:
        """The example at every sigma under each ``needed`` distance; on rank 0 the first
        ``num_images`` examples' (idx, x, base output, center at the first sigma) are kept."""
        x = torch.as_tensor(example[0]).to(self.device)
        check_unit_range(x, f"{self.split} example {idx}")
        with torch.inference_mode():
            base = self.smoothers[self.distances[0]][0].base_function(x[None])
        records = {}
        for name in needed:
            levels = [
                certify_example(smoother, x, idx, eps_in, self.seed, base)
                for smoother, (_, eps_in) in zip(self.smoothers[name], self.grid, strict=True)
            ]  # (record, center) per sigma
            records[name] = CenterExample(idx, tuple(record for record, _ in levels))
            center = levels[0][1]
            if self.global_rank == 0 and len(self.figures[name]) < self.num_images:
                smoothed = None if center is None else center.cpu()
                self.figures[name].append((idx, x.cpu(), base[0].cpu(), smoothed))
        return records

    def keep(self, records: Mapping[str, list]) -> None:
        self.records = dict(records)

    def report(self, trainer: Trainer, pl_module: LightningModule) -> None:
        statement = guarantee(next(iter(self.smoothers.values()))[0], short=True)
        count = len(next(iter(self.records.values()), []))
        sizes = {key: self.settings[key] for key in ("n", "m", "alpha1", "alpha2")}
        statement = f"{self.protocol_text(pl_module, count, **sizes)}\n{statement}".strip()
        self.summary = report_center(
            trainer, self.output_dir, self.records, self.h, pl_module, self.figures, statement
        )
