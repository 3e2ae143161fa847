"""Cohen et al.'s CERTIFY on held-out examples at the end of fitting, sharded across ranks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from tqdm.auto import tqdm
from typing_extensions import override

import smoothcert
from callbacks.distributed import gather_rows
from callbacks.reporting import report_curve, wandb_run_dir
from smoothcert.certification import certify_examples, select_indices
from smoothcert.curves import certified_accuracy_curve, radius_grid, summarize
from smoothcert.errors import ConfigError, check_alpha, check_count, check_sigma, require
from smoothcert.record_store import RecordStore
from smoothcert.records import CohenRecord
from smoothcert.smooth import Smooth

RECORD_FIELDS = ("idx", "label", "predict", "radius", "correct", "time")


class CohenCertification(Callback):
    """Certifies ``num_examples`` examples of ``split`` with CERTIFY(n0, n, alpha).

    Runs in ``on_train_end``, and in ``on_test_end`` (how certify.py certifies a checkpoint).
    Examples are sharded as ``indices[rank::world_size]``; each example's noise is seeded by
    ``(seed, dataset index)``, so the records do not depend on the device count or batch size. Each
    rank streams its rows to disk as they finish; ``resume`` skips examples already in the run
    directory. Rank 0 writes ``certify.tsv`` (Cohen's schema with a ``#`` metadata header),
    ``certified_accuracy.tsv``/``.png`` and logs ``cert/*`` scalars.
    """

    task = "classification"

    def __init__(
        self,
        sigma: float,
        output_dir: str,
        n0: int = 100,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
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
    ) -> None:
        super().__init__()
        self.sigma = check_sigma(sigma, "certify.sigma")
        self.n0, self.n = check_count(n0, "certify.n0"), check_count(n, "certify.n")
        self.alpha = check_alpha(alpha, "certify.alpha")
        self.batch_size = check_count(batch_size, "certify.batch_size")
        self.num_examples = (
            None if num_examples is None else check_count(num_examples, "certify.num_examples")
        )
        self.skip = check_count(skip, "certify.skip")
        require(split in ("train", "val", "test"), f"certify.split={split!r}: use train/val/test")
        require(weights in ("last", "best"), f"certify.weights={weights!r}: use last or best")
        self.split, self.weights = split, weights
        self.radii = [float(r) for r in radii]
        self.seed = int(seed)
        self.output_dir = Path(output_dir)
        self.bf16, self.channels_last = bf16, channels_last
        self.resume = bool(resume)
        self.crash_after = (
            None if crash_after is None else check_count(crash_after, "certify.crash_after")
        )
        self.records: list[CohenRecord] = []
        self.summary: dict[str, float] = {}

    def _indices(self, trainer: Trainer) -> list[int]:
        size = len(trainer.datamodule.dataset(self.split))
        return select_indices(size, self.num_examples, self.skip, self.split)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Everything that can fail does so here, before training starts.
        self._indices(trainer)
        store = RecordStore(self.output_dir, self.metadata(pl_module, ""))
        if self.resume:
            store.existing()  # checks the settings of the rows already written
        else:
            store.check_fresh()
        train_sigma = pl_module.hparams.get("train_sigma")
        if train_sigma is not None and float(train_sigma) != self.sigma:
            rank_zero_warn(
                f"certifying at sigma={self.sigma} a model trained at sigma={train_sigma}: "
                "certificates are valid, but usually worse than at the training sigma"
            )

    def _load_weights(self, trainer: Trainer, pl_module: LightningModule) -> str:
        if self.weights == "last":
            return "last weights of this run"
        monitored = [
            c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor
        ]
        path = monitored[0].best_model_path if monitored else ""
        if not path:
            raise ConfigError("certify.weights=best needs a ModelCheckpoint with a monitor")
        state = torch.load(path, map_location=pl_module.device, weights_only=False)
        pl_module.load_state_dict(state["state_dict"])
        return path

    def metadata(self, pl_module: LightningModule, checkpoint: str) -> dict[str, object]:
        h = pl_module.hparams
        return {
            "smoothcert": smoothcert.__version__,
            "certifier": "cohen",
            "sigma": self.sigma,
            "train_sigma": h.get("train_sigma"),
            "n0": self.n0,
            "n": self.n,
            "alpha": self.alpha,
            "seed": self.seed,
            "split": self.split,
            "skip": self.skip,
            "num_examples": self.num_examples,
            "dataset": h.get("dataset"),
            "checkpoint": checkpoint,
            "normalization": f"mean={list(h.get('mean', []))} std={list(h.get('std', []))}",
        }

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.certify(trainer, pl_module, self._load_weights(trainer, pl_module))

    @override
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # certify.py: trainer.test(ckpt_path=...) has restored the checkpoint's weights.
        self.certify(trainer, pl_module, str(trainer.ckpt_path or "weights given to trainer.test"))

    def certify(self, trainer: Trainer, pl_module: LightningModule, checkpoint: str) -> None:
        """Certifies this rank's unfinished examples, gathers every record, and (rank 0) writes
        the merged file and the curves and logs them."""
        rank, world = trainer.global_rank, trainer.world_size
        indices = self._indices(trainer)
        store = RecordStore(self.output_dir, self.metadata(pl_module, checkpoint))
        previous = store.existing() if self.resume else []
        trainer.strategy.barrier("cohen_certification_read")
        if rank == 0 and previous:
            store.merge(previous)  # one file of finished rows, a crashed run's shards folded in
        trainer.strategy.barrier("cohen_certification_merged")
        done = {record.idx for record in previous}
        todo = [i for i in indices if i not in done]
        shard = todo[rank::world]
        rank_zero_info(
            f"certifying {len(todo)} of {len(indices)} {self.split} examples "
            f"({len(indices) - len(todo)} already done): n0={self.n0} n={self.n} "
            f"alpha={self.alpha} sigma={self.sigma} on {world} process(es)"
        )
        smooth = Smooth(
            pl_module.model,
            pl_module.hparams.num_classes,
            self.sigma,
            autocast_dtype=torch.bfloat16 if self.bf16 else None,
            channels_last=self.channels_last,
        )
        dataset = trainer.datamodule.dataset(self.split)
        stream = certify_examples(
            smooth,
            dataset,
            shard,
            self.n0,
            self.n,
            self.alpha,
            self.batch_size,
            self.seed,
            pl_module.device,
        )
        mine: list[CohenRecord] = []
        with store.writer(rank, world) as writer:
            for record in tqdm(
                stream,
                total=len(shard),
                desc="certify",
                unit="example",
                disable=rank != 0,
                dynamic_ncols=True,
            ):
                writer.write(record)
                mine.append(record)
                if self.crash_after is not None and len(mine) >= self.crash_after:
                    raise RuntimeError(f"certify.crash_after={self.crash_after}: simulated crash")
        rows = gather_rows(
            trainer,
            [[getattr(r, f) for f in RECORD_FIELDS] for r in mine],
            len(RECORD_FIELDS),
            len(todo),
        )
        new = [
            CohenRecord(int(i), int(lab), int(p), float(r), int(c), float(t))
            for i, lab, p, r, c, t in rows
        ]
        wanted = set(indices)
        self.records = sorted((r for r in previous + new if r.idx in wanted), key=lambda r: r.idx)
        if rank == 0:
            store.merge(previous + new)
            self._report(trainer)
        trainer.strategy.barrier("cohen_certification_done")

    def _report(self, trainer: Trainer) -> None:
        self.summary = summarize(self.records, self.radii)
        grid = radius_grid(self.records)
        curve = certified_accuracy_curve(self.records, grid)
        paths = report_curve(
            trainer,
            self.output_dir,
            "certified_accuracy",
            "radius",
            "certified_accuracy",
            grid.tolist(),
            curve.tolist(),
            f"Cohen CERTIFY, sigma={self.sigma}",
            self.summary,
        )
        table = ", ".join(f"{k.split('/')[1]}={v:.3f}" for k, v in self.summary.items())
        rank_zero_info(f"certified: {table}")
        rank_zero_info(f"records: {self.output_dir / 'certify.tsv'}")
        rank_zero_info(f"curve:   {paths['tsv']} and {paths['png']}")
        run_dir = wandb_run_dir(trainer)
        if run_dir:
            rank_zero_info(f"wandb:   {run_dir} (offline runs upload with `wandb sync {run_dir}`)")
