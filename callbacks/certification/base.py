"""The one certification loop: selection, weights, the checks in ``setup``, sharding, streaming,
gather, merge, resume, reporting hooks and the final barrier. A certifier supplies only how to
certify one example, its record schemas, its header settings and its report; what it smooths
with and what its record headers say are in ``callbacks.certification.header`` (``Described``),
how it takes its settings in ``callbacks.certification.settings`` (``Configured``)."""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from tqdm.auto import tqdm
from typing_extensions import override

from callbacks.certification.checks import (
    check_batch_size,
    check_task,
    number_or_list,
    sigma_levels,
    trained_sigma,
)
from callbacks.certification.header import Described
from callbacks.certification.interrupt import interrupted_message, run_overrides
from callbacks.distributed import gather_packed
from callbacks.reporting import check_keys, log_records, publish
from smoothcert.certifiers.examples import select_indices
from smoothcert.errors import ConfigError, check_count, check_sigma, require
from smoothcert.noise import Noise
from smoothcert.perturbation import ADDITIVE, is_parametric
from smoothcert.records import Record, RecordSchema, RecordStore
from smoothcert.report.parts import Report

SUMMARY_FILE = "certification_summary.json"  # written by rank 0 next to the records
# One example of the loop: its dataset index, the example, and the record files that lack it.
Item = tuple[int, Any, Sequence[str]]


class CertificationCallback(Described, Callback):
    """Certifies ``num_examples`` examples of ``split`` (every ``skip``-th) with the ``last``
    weights or the ``best`` checkpoint, at the end of fitting (``on_train_end``) or testing
    (``on_test_end``, how certify.py certifies a checkpoint).

    Guarantees of the loop (``certify``): the unfinished examples are sharded as
    ``todo[rank::world_size]``; each record is written to disk as soon as it is produced (a crash
    loses at most the examples in progress, one or a group of ``group_size``, and one a crash cut
    short is certified again on ``resume``); every rank ends with every record (``records``);
    rank 0 merges each record file and reports; all ranks meet at a final barrier. A bad setting
    fails in ``setup``, before training, and so do existing records without ``resume`` or with
    other settings.

    A subclass implements ``schemas``, ``metadata``, ``describe``, ``certify_one``, ``keep`` and
    ``build_report`` (and optionally ``prepare``, ``start``, and ``certify_group`` with
    ``group_size`` to certify several examples together), and declares its ``objective``: the
    ``summary`` key a sweeper optimizes, in direction ``objective_mode`` ("max" or "min").
    ``batch_size="auto"`` is refused unless it sets ``auto_batch_size`` (and resolves it, e.g. in
    ``start``); ``begin`` runs before the record headers are written. No subclass overrides
    ``certify``. It reads the model through ``pl_module.contract()`` only.

    How a certifier reports (one pattern for all): ``build_report(pl_module)`` returns a
    ``smoothcert.report.parts.Report``, plain data built from the kept records: ``sections``,
    each a ``Section(scalars, curve, lines)`` with a ``Curve`` (series over shared xs: certified
    accuracy against radius) or ``Points`` (series with their own xs, a long table) or no curve;
    ``figures`` (wandb key -> PNG files it drew); and ``records`` (where the records are; empty:
    the first record file). The base class's ``report`` then keeps the union of the sections'
    scalars as ``summary`` and ``callbacks.reporting.publish`` writes each curve to
    ``<stem>.tsv``/``.png``, logs it and its scalars to every logger (wandb: under
    ``key_root(sound)``, ``cert/`` or ``heuristic/``; a heuristic's scalars may not be under
    ``cert/``), says the section's lines, logs the figures and says where everything is. The
    section builders of the classification certifiers are in ``smoothcert.report.classification``
    (``certified_section``: Cohen's curve, ACR and summary line, used by Cohen and DistSPT).
    """

    option = ""  # its certify= option, for messages
    tasks: tuple[str, ...] = ()  # the model tasks (``pl_module.task``) it certifies
    noun = "examples"  # what the examples are called in messages
    progress = "certify"  # the progress bar's name
    objective = ""  # the summary key a sweeper optimizes
    objective_mode = "max"  # whether larger ("max") or smaller ("min") is better
    sound = True  # False for a heuristic (no certificate): its keys are heuristic/..., never cert/
    auto_batch_size = False  # whether it chooses its batch size itself (batch_size="auto")
    group_size = 1  # examples per certify_group call (a subclass may raise it, e.g. in start)

    def __init__(
        self,
        sigma: float,
        output_dir: str,
        batch_size: int | Literal["auto"],
        num_examples: int | None,
        skip: int,
        split: str,
        weights: str,
        seed: int,
        bf16: bool = False,
        resume: bool = False,
        crash_after: int | None = None,
    ) -> None:
        super().__init__()
        self.sigma = check_sigma(sigma, "certify.sigma")
        self.batch_size = check_batch_size(batch_size, self.option, self.auto_batch_size)
        self.num_examples = (
            None if num_examples is None else check_count(num_examples, "certify.num_examples")
        )
        self.skip = check_count(skip, "certify.skip")
        require(split in ("train", "val", "test"), f"certify.split={split!r}: use train/val/test")
        require(weights in ("last", "best"), f"certify.weights={weights!r}: use last or best")
        self.split, self.weights, self.seed = split, weights, int(seed)
        self.output_dir, self.bf16, self.resume = Path(output_dir), bool(bf16), bool(resume)
        self.crash_after = (
            None if crash_after is None else check_count(crash_after, "certify.crash_after")
        )
        self.summary: dict[str, float] = {}
        self.sigmas = [self.sigma]  # every noise level certified (a subclass may certify several)
        self.global_rank = 0  # set when certifying
        self.noise: Noise | None = None  # set by use_noise or use_perturbation
        self.perturbation = ADDITIVE  # how noise meets the input (use_perturbation changes it)
        self.samples_per_batch = self.batch_size  # "auto" is resolved by choose_batch_size
        self.certifying: str | None = None  # the checkpoint being certified, while certifying

    # What a certifier supplies.

    def schemas(self) -> Mapping[str, RecordSchema]:
        """The record files, by key (the keys of ``certify_one``'s result)."""
        raise NotImplementedError

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str) -> dict[str, Any]:
        """The ``#`` header of the record file ``key`` (see ``header``)."""
        raise NotImplementedError

    def prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Certifier-specific checks and set-up in ``setup`` (after the selection checks)."""

    def begin(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called first when certifying, on the certified weights, before the record headers are
        written: set-up they state (e.g. a constant computed from the weights)."""

    def start(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> contextlib.AbstractContextManager:
        """Called before certifying; the context it returns is held while certifying."""
        return contextlib.nullcontext()

    def describe(self, todo: int, total: int, world: int) -> str:
        """The line said (rank 0) before certifying ``todo`` of ``total`` examples: the
        ``settings`` (a dict, if the certifier keeps one), the noise and the norm."""
        settings = " ".join(f"{k}={v}" for k, v in getattr(self, "settings", {}).items())
        noise = f"{self.noise.name} " if self.noise is not None else ""
        norm = f" ({self.norm} radii)" if self.noise is not None else ""
        return (
            f"certifying {todo} of {total} {self.split} {self.noun} ({total - todo} already "
            f"done): {settings} {noise}sigma={self.sigma}{norm} on {world} process(es)"
        )

    def certify_one(self, idx: int, example: Any, needed: Sequence[str]) -> Mapping[str, Record]:
        """The records of dataset example ``idx`` (``dataset[idx]``), for every key in ``needed``
        (the record files that lack it). Its noise must be seeded by ``(seed, idx)`` only."""
        raise NotImplementedError

    def certify_group(self, items: Sequence[Item]) -> Iterator[Mapping[str, Record]]:
        """The records of several examples (``(idx, example, needed)``, at most ``group_size``),
        one mapping per example, in order, each yielded as soon as it is produced (the loop writes
        it at once). Default: ``certify_one`` of each."""
        for idx, example, needed in items:
            yield self.certify_one(idx, example, needed)

    def keep(self, records: Mapping[str, list[Record]]) -> None:
        """Keeps (on every rank) the selected examples' records, by key, sorted by index."""
        raise NotImplementedError

    def build_report(self, pl_module: LightningModule) -> Report:
        """The report of the kept records (rank 0): a ``smoothcert.report.parts.Report`` of
        sections (curve, scalars, lines said), figures and where the records are. Pure: it writes
        nothing; ``report`` writes and logs it."""
        raise NotImplementedError

    def report(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Writes and logs (rank 0) ``build_report``'s report (see ``callbacks.reporting.publish``)
        and keeps its scalars as ``summary``."""
        report = self.build_report(pl_module)
        self.summary = report.summary
        if not report.records:  # the first record file
            report.records = str(self.output_dir / next(iter(self.schemas().values())).file_name)
        publish(trainer, self.output_dir, report, self.sound)

    # The shared machinery.

    def indices(self, trainer: Trainer) -> list[int]:
        """The dataset indices to certify; ConfigError if the split has too few examples."""
        size = len(trainer.datamodule.dataset(self.split))
        return select_indices(size, self.num_examples, self.skip, self.split, self.noun)

    def check_model(self, pl_module: LightningModule) -> None:
        """Raises a one-line ConfigError if ``pl_module`` does not declare its contract (task,
        output kind, base function, monitorable metrics, noise; modules of the project do) or its
        task is not one this certifier certifies (run before training: a mismatch would
        otherwise fail after it)."""
        contract = getattr(pl_module, "contract", None)
        task = contract().task if callable(contract) else getattr(pl_module, "task", "")
        check_task(self.option, self.tasks, task)

    def check_selection(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Checks that the certifier fits the model and the example selection, and warns about
        the noise levels (``sigmas``) the model was not trained at (its ``train_sigma``, from the
        noise it trains with: a number or a list)."""
        self.check_model(pl_module)
        self.indices(trainer)
        if is_parametric(self.perturbation):  # e.g. translation of examples that are not images
            example = trainer.datamodule.dataset(self.split)[0][0]
            self.perturbation.check_input(tuple(torch.as_tensor(example).shape))
        train_sigma = trained_sigma(pl_module)
        if train_sigma is None:
            return
        trained = sigma_levels(train_sigma)
        untrained = [sigma for sigma in self.sigmas if sigma not in trained]
        if untrained:
            rank_zero_warn(
                f"certifying at sigma={number_or_list(untrained)} a model trained at "
                f"sigma={number_or_list(trained)}: certificates are valid, but usually worse "
                f"than at {'the training sigma' if len(trained) == 1 else 'a training sigma'}"
            )

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Everything that can fail does so here, before training starts.
        self.check_selection(trainer, pl_module)
        self.prepare(trainer, pl_module)
        for store in self.stores(pl_module, "").values():
            store.existing() if self.resume else store.check_fresh()

    def stores(self, pl_module: LightningModule, checkpoint: str) -> dict[str, RecordStore]:
        """One store per record file, in the run directory, with its header."""
        return {
            key: RecordStore(self.output_dir, schema, self.metadata(pl_module, checkpoint, key))
            for key, schema in self.schemas().items()
        }

    def load_weights(self, trainer: Trainer, pl_module: LightningModule) -> str:
        """Loads the best checkpoint's weights if ``weights=best``; returns what is certified."""
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

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.certify(trainer, pl_module, self.load_weights(trainer, pl_module))

    @override
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # certify.py: trainer.test(ckpt_path=...) has restored the checkpoint's weights.
        loaded = trainer.ckpt_path or getattr(pl_module, "external_weights", None)
        self.certify(trainer, pl_module, str(loaded or "weights given to trainer.test"))

    def certify(self, trainer: Trainer, pl_module: LightningModule, checkpoint: str) -> None:
        """Certifies this rank's share of the unfinished examples (streaming each record),
        gathers every record on every rank, and (rank 0) merges the files and reports."""
        rank, world = trainer.global_rank, trainer.world_size
        self.global_rank, self.certifying = rank, checkpoint
        self.begin(trainer, pl_module)
        indices, stores = self.indices(trainer), self.stores(pl_module, checkpoint)
        previous = self._previous(trainer, stores)
        done = {key: {record.idx for record in records} for key, records in previous.items()}
        todo = [i for i in indices if any(i not in finished for finished in done.values())]
        rank_zero_info(self.describe(len(todo), len(indices), world))
        dataset = trainer.datamodule.dataset(self.split)
        mine: dict[str, list[Record]] = {key: [] for key in stores}
        with contextlib.ExitStack() as stack:
            writers = {k: stack.enter_context(s.writer(rank, world)) for k, s in stores.items()}
            stack.enter_context(self.start(trainer, pl_module))
            shard, step = todo[rank::world], self.group_size
            if step > 1:
                rank_zero_info(f"certifying {step} {self.noun} per group (shared forward passes)")
            unit = self.noun.removesuffix("s")
            bar = tqdm(shard, self.progress, unit=unit, disable=rank != 0, dynamic_ncols=True)
            items = ((i, dataset[i], [k for k in stores if i not in done[k]]) for i in bar)
            for count, ((_, _, needed), records) in enumerate(self._certified(items, step), 1):
                for key in needed:
                    writers[key].write(records[key])
                    mine[key].append(records[key])
                if self.crash_after is not None and count >= self.crash_after:
                    raise RuntimeError(f"certify.crash_after={self.crash_after}: simulated crash")
        wanted, kept = set(indices), {}
        for key, store in stores.items():
            every = previous[key] + self._gather(trainer, store, mine[key])
            kept[key] = sorted((r for r in every if r.idx in wanted), key=lambda r: r.idx)
            if rank == 0:
                store.merge(every)
        self.keep(kept)
        self.certifying = None
        if rank == 0:
            self.report(trainer, pl_module)
            self.write_summary()
            log_records(trainer, [store.final for store in stores.values()], self.sound)
        # Every rank returns the objective (train.py, sweepers): rank 0's summary, broadcast.
        self.summary = trainer.strategy.broadcast(self.summary, src=0)
        trainer.strategy.barrier(f"{self.option}_certification_done")

    @override
    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        # Ctrl-C while certifying: Lightning exits; say how to continue (rank 0, once).
        interrupted = isinstance(exception, KeyboardInterrupt) and self.certifying
        if interrupted and trainer.global_rank == 0:
            message = interrupted_message(self.output_dir, self.certifying, run_overrides())
            print(f"\n{message}", file=sys.stderr, flush=True)
        self.certifying = None

    def _certified(
        self, items: Iterator[Item], size: int
    ) -> Iterator[tuple[Item, Mapping[str, Record]]]:
        """Each item with its records: ``certify_group`` of ``size`` items at a time."""
        while group := list(itertools.islice(items, size)):
            yield from zip(group, self.certify_group(group), strict=True)

    def _previous(self, trainer: Trainer, stores: Mapping[str, RecordStore]) -> dict[str, list]:
        """The finished records of each store (none without ``resume``), read on every rank; rank
        0 then folds each store's files (a crashed run's shards included) into its merged file."""
        previous = {key: store.existing() if self.resume else [] for key, store in stores.items()}
        trainer.strategy.barrier("certification_read")
        if trainer.global_rank == 0:
            for key, store in stores.items():
                if previous[key]:
                    store.merge(previous[key])
        trainer.strategy.barrier("certification_merged")
        return previous

    @staticmethod
    def _gather(trainer: Trainer, store: RecordStore, mine: list[Record]) -> list[Record]:
        """Every rank's new records of ``store``, on every rank (as written to its files)."""
        if trainer.world_size == 1:
            return list(mine)
        packed = gather_packed(trainer, store.schema.pack(mine))
        return [r for part in packed for r in store.schema.unpack(part, store.metadata)]

    def objective_value(self) -> float | None:
        """The ``objective`` of the last certification (None before one), on every rank."""
        return self.summary.get(self.objective)

    def write_summary(self) -> Path:
        """``certification_summary.json`` in the run directory: the certifier, whether it is a
        certificate, its objective (name, direction, value) and every summary scalar; the sweep
        summary reads it for any certifier. A heuristic's keys may not start with ``cert/``."""
        path = self.output_dir / SUMMARY_FILE
        check_keys([self.objective, *self.summary], self.sound)
        content = {
            "certifier": self.option,
            "certificate": self.sound,  # False: a heuristic, its keys under heuristic/
            "objective": self.objective,
            "objective_mode": self.objective_mode,
            "value": self.objective_value(),
            "summary": {key: float(value) for key, value in self.summary.items()},
        }
        path.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
        return path

    def choose_batch_size(
        self, trainer: Trainer, choose: Callable[..., Any], candidates: Sequence[int], per: int
    ) -> int:
        """``batch_size``, or for ``"auto"`` the fastest of ``candidates`` as ``choose(x, cap,
        candidates, work=...)`` times it on the first selected example (``per`` samples per
        example; this rank's share of the work caps the timing), logged once."""
        if self.batch_size != "auto":
            return self.batch_size
        indices = self.indices(trainer)
        first = trainer.datamodule.dataset(self.split)[indices[0]][0]
        x = torch.as_tensor(first).to(trainer.lightning_module.device)
        work = -(-len(indices) // trainer.world_size) * per
        choice = choose(x, max(candidates), candidates, work=work)
        rank_zero_info(f"certify.batch_size=auto: {choice.describe()}")
        return choice.batch_size

    def autocast(self, device: torch.device):
        """bfloat16 autocast of the forward passes if ``bf16`` (a no-op otherwise)."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)
