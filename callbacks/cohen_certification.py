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
from callbacks.reporting import report_curve, wandb_run_dir
from smoothcert.certification import certify_examples, select_indices
from smoothcert.curves import certified_accuracy_curve, radius_grid, summarize
from smoothcert.errors import ConfigError, check_alpha, check_count, check_sigma, require
from smoothcert.records import CohenRecord, RecordWriter, write_records
from smoothcert.smooth import Smooth

RECORD_FIELDS = ("idx", "label", "predict", "radius", "correct", "time")


class CohenCertification(Callback):
    """Certifies ``num_examples`` examples of ``split`` with CERTIFY(n0, n, alpha).

    Runs in ``on_train_end``, and in ``on_test_end`` (how certify.py certifies a checkpoint).

    Examples are sharded as ``indices[rank::world_size]``; each example's noise is seeded by
    ``(seed, dataset index)``, so the records do not depend on the device count or batch size. Each
    rank streams its rows to disk as they finish; rank 0 writes ``certify.tsv`` (Cohen's schema with
    a ``#`` metadata header), ``certified_accuracy.tsv``/``.png`` and logs ``cert/*`` scalars.
    """

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
        require(
            split in ("train", "val", "test"), f"certify.split={split!r}: use train, val or test"
        )
        require(weights in ("last", "best"), f"certify.weights={weights!r}: use last or best")
        self.split, self.weights = split, weights
        self.radii = [float(r) for r in radii]
        self.seed = int(seed)
        self.output_dir = Path(output_dir)
        self.bf16, self.channels_last = bf16, channels_last
        self.records: list[CohenRecord] = []
        self.summary: dict[str, float] = {}

    def _indices(self, trainer: Trainer) -> list[int]:
        size = len(trainer.datamodule.dataset(self.split))
        available = len(range(0, size, self.skip))
        if self.num_examples is not None and self.num_examples > available:
            raise ConfigError(
                f"certify.num_examples={self.num_examples} exceeds the {available} examples of "
                f"split={self.split} (size {size}, skip {self.skip}): lower certify.num_examples"
            )
        return select_indices(size, self.num_examples, self.skip)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._indices(trainer)  # fail before training, not after it
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
        """Certifies this rank's shard, gathers every record, and (rank 0) writes and logs them."""
        rank, world = trainer.global_rank, trainer.world_size
        indices = self._indices(trainer)
        shard = indices[rank::world]
        smooth = Smooth(
            pl_module.model,
            pl_module.hparams.num_classes,
            self.sigma,
            autocast_dtype=torch.bfloat16 if self.bf16 else None,
            channels_last=self.channels_last,
        )
        self.output_dir.mkdir(parents=True, exist_ok=True)
        stream_name = "certify.tsv" if world == 1 else f"certify.rank{rank}.tsv"
        metadata = self.metadata(pl_module, checkpoint)
        rank_zero_info(
            f"certifying {len(indices)} {self.split} examples: n0={self.n0} n={self.n} "
            f"alpha={self.alpha} sigma={self.sigma} on {world} process(es)"
        )
        mine = []
        dataset = trainer.datamodule.dataset(self.split)
        records = certify_examples(
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
        with RecordWriter(self.output_dir / stream_name, metadata) as writer:
            for record in tqdm(
                records,
                total=len(shard),
                desc="certify",
                unit="example",
                disable=rank != 0,
                dynamic_ncols=True,
            ):
                writer.write(record)
                mine.append(record)
        self.records = self._gather(trainer, mine, len(indices))
        if rank == 0:
            if world > 1:
                write_records(self.output_dir / "certify.tsv", metadata, self.records)
                for other in range(world):
                    (self.output_dir / f"certify.rank{other}.tsv").unlink(missing_ok=True)
            self._report(trainer)
        trainer.strategy.barrier("cohen_certification_done")

    def _gather(self, trainer: Trainer, mine: list[CohenRecord], total: int) -> list[CohenRecord]:
        """All ranks' records sorted by index (every rank gets them; padding rows have idx -1)."""
        world = trainer.world_size
        if world == 1:
            return sorted(mine, key=lambda r: r.idx)
        length = -(-total // world)
        table = torch.full((length, len(RECORD_FIELDS)), -1.0, dtype=torch.float64)
        for row, record in enumerate(mine):
            table[row] = torch.tensor(
                [float(getattr(record, f)) for f in RECORD_FIELDS], dtype=torch.float64
            )
        gathered = trainer.strategy.all_gather(table.to(trainer.strategy.root_device)).cpu()
        rows = [row for row in gathered.reshape(-1, len(RECORD_FIELDS)).tolist() if row[0] >= 0]
        return sorted(
            (
                CohenRecord(int(i), int(lab), int(p), float(r), int(c), float(t))
                for i, lab, p, r, c, t in rows
            ),
            key=lambda r: r.idx,
        )

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
