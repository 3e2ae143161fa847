"""Center smoothing (Kumar and Goldstein) of a structured-output model, sharded across ranks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from tqdm.auto import tqdm
from typing_extensions import override

from callbacks.center_report import report_center
from callbacks.certification_common import (
    CertificationCallback,
    check_records,
    previous_records,
)
from callbacks.distributed import gather_rows
from smoothcert.center import CenterSmooth, output_factor, quantile_level, smallest_m
from smoothcert.center_records import (
    CENTER_COLUMNS,
    CENTER_RESUME_KEYS,
    CenterRecord,
    certify_example,
    read_center_records,
)
from smoothcert.distances import build_distance
from smoothcert.errors import ConfigError, check_count, check_unit_range, require
from smoothcert.record_store import RecordStore
from smoothcert.smooth import eval_mode

OUTPUT_KINDS = ("image", "label_map", "box")


def _float_list(value: float | Sequence[float], setting: str) -> list[float]:
    """Sorted distinct non-negative floats from a number or a list; ConfigError otherwise."""
    values = sorted({float(v) for v in (value if isinstance(value, Sequence) else [value])})
    require(len(values) > 0, f"{setting} is empty: give a number or a list of numbers")
    require(values[0] >= 0, f"{setting}={values[0]} must be >= 0")
    return values


class CenterCertification(CertificationCallback):
    """Certifies ``num_examples`` examples of ``split`` with center smoothing under each of
    ``distance`` (each with its own center), for every input radius ``eps_in`` (or ``h * sigma``).

    Works for any model with ``structured_output(x)`` (the base function f) and ``output_kind``
    ("image", "label_map" or "box"). Every setting is checked in ``setup``, before training: among
    them q > 1 at every eps_in (naming the smallest m that works) and whether each distance fits
    the model's outputs. Examples are sharded as ``indices[rank::world_size]`` and example ``i``'s
    noise is seeded by ``(seed, i)`` (the same noise for every distance), so results depend on
    neither the device count nor the batch size. Rows stream to ``center_<distance>.tsv``
    (``idx eps_in eps_out smoothing_error abstain time p_hat center_radius quantile_radius``, ``#``
    header); ``resume`` skips examples already there. Rank 0 writes per distance the curves of the
    median eps_out and the median smoothing error d(f(x), smoothed f(x)) against eps_in (TSV, PNG,
    wandb), ``cert/*`` scalars and ``num_images`` example figures in ``center_examples/``.
    """

    def __init__(
        self,
        sigma: float,
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
    ) -> None:
        super().__init__(
            sigma, output_dir, batch_size, num_examples, skip, split, weights, seed, bf16
        )
        require(
            (eps_in is None) != (h is None),
            f"certify.eps_in={eps_in} and certify.h={h}: set exactly one of them (eps_in = h * "
            "sigma) and the other to null",
        )
        self.h = None if h is None else _float_list(h, "certify.h")
        self.eps_in = (
            _float_list(eps_in, "certify.eps_in") if h is None else [v * self.sigma for v in self.h]
        )
        self.distances = [distance] if isinstance(distance, str) else [str(d) for d in distance]
        require(
            len(self.distances) == len(set(self.distances)) > 0,
            f"certify.distance={distance}: name a distance or a list of different distances",
        )
        self.settings = {"n": n, "m": m, "delta": delta, "alpha1": alpha1, "alpha2": alpha2}
        self.settings.update(gamma=gamma, candidates=candidates)
        self.feature_network = feature_network
        self.num_images = check_count(num_images, "certify.num_images", minimum=0)
        self.resume = bool(resume)
        self.smoothers: dict[str, CenterSmooth] = {}
        self.records: dict[str, list[CenterRecord]] = {}

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Everything that can fail does so here, before training starts.
        if not callable(getattr(pl_module, "structured_output", None)):
            raise ConfigError(
                f"certify=center needs a model with structured_output (an autoencoder, "
                f"segmentation or box model); {type(pl_module).__name__} has none"
            )
        kind = getattr(pl_module, "output_kind", None)
        require(kind in OUTPUT_KINDS, f"model output_kind={kind!r} is not one of {OUTPUT_KINDS}")
        self.check_selection(trainer, pl_module)
        self.smoothers = {name: self._smoother(pl_module, name) for name in self.distances}
        self._check_first_example(trainer, pl_module)
        check_records(self._stores(pl_module, "").values(), self.resume)
        self._warn_uncertifiable()

    def _smoother(self, pl_module: LightningModule, name: str) -> CenterSmooth:
        num_classes = pl_module.hparams.get("num_classes")
        network = self.feature_network
        distance = build_distance(name, num_classes, network, setting="certify.distance")
        try:
            smoother = CenterSmooth(
                self._base_function(pl_module),
                distance,
                self.sigma,
                batch_size=self.batch_size,
                **self.settings,
            )
            smoother.check_certifiable(self.eps_in)
        except ConfigError as error:  # its messages start with the setting's name
            raise ConfigError(f"certify.{error}") from None
        return smoother

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
        for name, smoother in self.smoothers.items():
            try:
                shape = tuple(smoother.distance(out, out).shape)
                problem = "" if shape == (1,) else f"it gives {shape} distances for one output"
            except (ConfigError, RuntimeError) as error:
                problem = str(error)
            require(
                not problem,
                f"certify.distance={name} does not fit the model's {pl_module.output_kind} "
                f"outputs {tuple(out.shape[1:])}: {problem}",
            )

    def _warn_uncertifiable(self) -> None:
        smoother = next(iter(self.smoothers.values()))
        args = (self.sigma, smoother.delta, smoother.m, smoother.alpha2)
        lost = [e for e in self.eps_in if quantile_level(e, *args) > 1]
        if lost:
            need = smallest_m(lost[-1], self.sigma, smoother.delta, smoother.alpha2)
            rank_zero_warn(
                f"certify.m={smoother.m} gives no certificate (eps_out = inf) at eps_in={lost}: "
                f"q > 1 there; m >= {need} would certify them all"
            )

    def metadata(self, pl_module: LightningModule, checkpoint: str, name: str) -> dict:
        smoother = self.smoothers[name]
        settings = {
            "distance": name,
            "gamma": smoother.gamma,
            "eps_out_factor": output_factor(smoother.gamma),
            "eps_in": self.eps_in,
            "h": self.h,
            "n": smoother.n,
            "m": smoother.m,
            "delta": smoother.delta,
            "alpha1": smoother.alpha1,
            "alpha2": smoother.alpha2,
            "candidates": smoother.candidates,
            "feature_network": type(self.feature_network).__name__ if name == "feature" else None,
            "output_kind": pl_module.output_kind,
        }
        model_keys = ("num_classes",) if pl_module.output_kind == "label_map" else ()
        return self.header(pl_module, checkpoint, "center", settings, model_keys)

    def _stores(self, pl_module: LightningModule, checkpoint: str) -> dict[str, RecordStore]:
        return {
            name: RecordStore(
                self.output_dir,
                self.metadata(pl_module, checkpoint, name),
                f"center_{name}.tsv",
                CENTER_COLUMNS,
                read_center_records,
                CENTER_RESUME_KEYS,
            )
            for name in self.distances
        }

    def certify(self, trainer: Trainer, pl_module: LightningModule, checkpoint: str) -> None:
        """Certifies this rank's unfinished examples under every distance, gathers every record,
        and (rank 0) writes the merged files, the curves and the figures, and logs them."""
        rank, world = trainer.global_rank, trainer.world_size
        indices = self.indices(trainer)
        stores = self._stores(pl_module, checkpoint)
        records = previous_records(trainer, list(stores.values()), self.resume)
        previous = dict(zip(self.distances, records, strict=True))
        done = {name: {record.idx for record in records} for name, records in previous.items()}
        todo = [i for i in indices if any(i not in finished for finished in done.values())]
        rank_zero_info(
            f"center smoothing: {len(todo)} of {len(indices)} {self.split} examples to certify "
            f"under {self.distances} at eps_in={self.eps_in}: sigma={self.sigma} "
            f"{self.settings} on {world} process(es)"
        )
        mine, figures = self._certify_shard(trainer, pl_module, stores, todo[rank::world], done)
        width, wanted = CenterRecord.packed_width(len(self.eps_in)), set(indices)
        for name in self.distances:
            rows = gather_rows(trainer, [r.pack() for r in mine[name]], width, len(todo))
            new = [CenterRecord.unpack(row, self.eps_in) for row in rows]
            merged = [r for r in previous[name] + new if r.idx in wanted]
            self.records[name] = sorted(merged, key=lambda r: r.idx)
            if rank == 0:
                stores[name].merge(previous[name] + new)
        if rank == 0:
            self.summary = report_center(
                trainer, self.output_dir, self.records, self.sigma, pl_module, figures
            )
        trainer.strategy.barrier("center_certification_done")

    def _certify_shard(self, trainer, pl_module, stores, shard, done) -> tuple[dict, dict]:
        """Certifies ``shard`` (streaming each record); returns the records per distance and, on
        rank 0, the first ``num_images`` examples' (idx, x, base output, center) per distance."""
        rank, device = trainer.global_rank, pl_module.device
        mine = {name: [] for name in self.distances}
        figures = {name: [] for name in self.distances}
        if self.feature_network is not None:
            self.feature_network.to(device).eval()
        dataset = trainer.datamodule.dataset(self.split)
        with contextlib.ExitStack() as stack:
            writers = {
                name: stack.enter_context(store.writer(rank, trainer.world_size))
                for name, store in stores.items()
            }
            stack.enter_context(eval_mode(pl_module))
            progress = tqdm(shard, "center", unit="example", disable=rank != 0, dynamic_ncols=True)
            for idx in progress:
                x = torch.as_tensor(dataset[idx][0]).to(device)
                check_unit_range(x, f"{self.split} example {idx}")
                with torch.inference_mode():
                    base = self.smoothers[self.distances[0]].base_function(x[None])
                for name in self.distances:
                    if idx in done[name]:
                        continue
                    smoother = self.smoothers[name]
                    record, center = certify_example(smoother, x, idx, self.eps_in, self.seed, base)
                    writers[name].write(record)
                    mine[name].append(record)
                    if rank == 0 and len(figures[name]) < self.num_images:
                        smoothed = None if center is None else center.cpu()
                        figures[name].append((idx, x.cpu(), base[0].cpu(), smoothed))
        return mine, figures
