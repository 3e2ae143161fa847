"""Cohen et al.'s CERTIFY on held-out examples at the end of fitting, sharded across ranks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_info
from tqdm.auto import tqdm
from typing_extensions import override

from callbacks.certification_common import (
    CertificationCallback,
    check_records,
    log_locations,
    previous_records,
)
from callbacks.distributed import gather_rows
from callbacks.reporting import report_curve
from smoothcert.certification import certify_examples
from smoothcert.curves import certified_accuracy_curve, radius_grid, summarize
from smoothcert.errors import check_alpha, check_count, require
from smoothcert.record_store import RecordStore
from smoothcert.records import CohenRecord
from smoothcert.smooth import Smooth

RECORD_FIELDS = ("idx", "label", "predict", "radius", "correct", "time")


class CohenCertification(CertificationCallback):
    """Certifies ``num_examples`` examples of ``split`` with CERTIFY(n0, n, alpha).

    Runs in ``on_train_end``, and in ``on_test_end`` (how certify.py certifies a checkpoint).
    Examples are sharded as ``indices[rank::world_size]``; each example's noise is seeded by
    ``(seed, dataset index)``, so the records do not depend on the device count or batch size. Each
    rank streams its rows to disk as they finish; ``resume`` skips examples already in the run
    directory. Rank 0 writes ``certify.tsv`` (Cohen's schema with a ``#`` metadata header),
    ``certified_accuracy.tsv``/``.png`` and logs ``cert/*`` scalars.
    """

    option = "cohen"
    tasks = ("classification", "denoised_classification")

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
        super().__init__(
            sigma, output_dir, batch_size, num_examples, skip, split, weights, seed, bf16
        )
        self.n0, self.n = check_count(n0, "certify.n0"), check_count(n, "certify.n")
        self.alpha = check_alpha(alpha, "certify.alpha")
        self.radii = [float(r) for r in radii]
        require(
            all(r >= 0 for r in self.radii),
            f"certify.radii={list(radii)} has a negative radius: radii are l2 distances (>= 0), "
            "e.g. certify.radii=[0.0,0.25,0.5]",
        )
        self.channels_last = channels_last
        self.resume = bool(resume)
        self.crash_after = (
            None if crash_after is None else check_count(crash_after, "certify.crash_after")
        )
        self.records: list[CohenRecord] = []

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Everything that can fail does so here, before training starts.
        self.check_selection(trainer, pl_module)
        check_records([RecordStore(self.output_dir, self.metadata(pl_module, ""))], self.resume)

    def metadata(self, pl_module: LightningModule, checkpoint: str) -> dict[str, object]:
        settings = {"n0": self.n0, "n": self.n, "alpha": self.alpha}
        return self.header(pl_module, checkpoint, "cohen", settings)

    def certify(self, trainer: Trainer, pl_module: LightningModule, checkpoint: str) -> None:
        """Certifies this rank's unfinished examples, gathers every record, and (rank 0) writes
        the merged file and the curves and logs them."""
        rank, world = trainer.global_rank, trainer.world_size
        indices = self.indices(trainer)
        store = RecordStore(self.output_dir, self.metadata(pl_module, checkpoint))
        (previous,) = previous_records(trainer, [store], self.resume)
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
        log_locations(trainer, str(self.output_dir / "certify.tsv"), [paths])
