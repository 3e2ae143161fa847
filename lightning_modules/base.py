"""What every smoothcert LightningModule shares: evaluation hooks, optimizers, checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pytorch_lightning import LightningModule
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from lightning_modules.optimization import optimizers_config
from lightning_modules.settings import DeclaredSettings
from smoothcert.errors import ConfigError, check_count, check_unit_range, require
from smoothcert.models.structured import NormalizedNet
from smoothcert.modes import eval_mode
from smoothcert.noise import Noise
from smoothcert.regimes import TrainingObjective

# Constructor arguments that are modules or factories: kept out of hparams, so checkpoints load
# with torch.load(weights_only=True) (the model is rebuilt from the config the checkpoint stores).
NOT_HYPERPARAMETERS = ["net", "objective", "noise", "optimizer", "scheduler"]


def plain_sigma(value: Any) -> float | list[float]:
    """The training sigma as plain floats (a number, or a list of noise levels)."""
    if isinstance(value, (int, float)):
        return float(value)
    return [float(v) for v in value]


def per_stage(make: Callable[[], nn.Module]) -> nn.ModuleDict:
    """One fresh ``make()`` per evaluation stage (``val``, ``test``): metrics must not be shared."""
    return nn.ModuleDict({stage: make() for stage in ("val", "test")})


def plain_floats(values: Any) -> list[float]:
    """``values`` (a list or ListConfig, e.g. the normalization) as plain floats: what hparams
    hold, so checkpoints load with torch.load(weights_only=True)."""
    return [float(v) for v in values]


def check_channels(channels: Any, mean: list[float]) -> int:
    """``model.channels`` as a count, with one mean per channel (one-line ConfigError if not)."""
    channels = check_count(channels, "model.channels")
    require(
        len(mean) == channels,
        f"model.mean has {len(mean)} values for {channels} channels: use data.mean",
    )
    return channels


def means_of(names: tuple[str, ...]) -> nn.ModuleDict:
    """A running mean (torchmetrics ``MeanMetric``) for each of ``names``."""
    return nn.ModuleDict({name: MeanMetric() for name in names})


def clean_and_noisy_accuracy(num_classes: int) -> nn.ModuleList:
    """Accuracy on clean inputs and on noisy ones (micro-averaged): a classifier's two metrics."""
    return nn.ModuleList(
        [MulticlassAccuracy(num_classes=num_classes, average="micro") for _ in range(2)]
    )


@dataclass
class ImageModel:
    """The settings a task module that trains on x + noise itself takes first: the network, the
    smoothing noise, the optimizer factory, the image channels and their normalization."""

    net: nn.Module
    noise: Noise
    optimizer: Callable[..., torch.optim.Optimizer]
    channels: int
    mean: Sequence[float]
    std: Sequence[float]


@dataclass
class RegimeModel:
    """The settings a task module that trains through a regime (``objective``) takes first; it
    states its class count instead of the channels."""

    net: nn.Module
    objective: TrainingObjective
    noise: Noise
    optimizer: Callable[..., torch.optim.Optimizer]
    num_classes: int
    mean: Sequence[float]
    std: Sequence[float]


@dataclass
class Trailing:
    """The settings every task module takes last: the scheduler factory and the dataset's name
    (recorded in checkpoints)."""

    scheduler: Callable[..., Any] | None = None
    dataset: str = ""


@dataclass(frozen=True)
class Contract:
    """What a certifier may rely on in a model, and all it may read (callbacks read this, never
    the module's attributes):

    - ``task`` and ``output_kind``: the kind of the structured output (``class_logits``,
      ``label_map``, ``image``, ``box``, ``detection``, ``vector``);
    - ``base_function``: what a certifier smooths, pixels in [0, 1] -> outputs (classifier
      logits ``[B, K]``, per-pixel logits ``[B, K, H, W]``, or the structured output);
    - ``monitorable``: the metrics a checkpoint may monitor; ``noise``: the training noise;
    - ``num_classes``: K for a model with class outputs (classifiers, segmenters), else None;
    - ``structured_output``: the real-valued or label output center and median smoothing smooth
      (``[B, ...]``), None for a classifier;
    - ``logits_at``: a segmenter's base function at another scale and flip,
      ``logits_at(scale, flip)``, None for other models;
    - ``detection_layout``: how a detector's vector output is laid out, None for other models;
    - ``ignore_index``: the label of unlabelled pixels, for a segmenter; else None;
    - ``target_of``: maps a dataset target to what the structured output estimates, where the
      two differ (e.g. a box to its size); None where the target is compared as it is.
    """

    task: str
    output_kind: str
    base_function: Callable[[Tensor], Tensor]
    monitorable: tuple[str, ...]
    noise: Noise
    num_classes: int | None = None
    structured_output: Callable[[Tensor], Tensor] | None = None
    logits_at: Callable[..., Callable[[Tensor], Tensor]] | None = None
    detection_layout: Any = None
    ignore_index: int | None = None
    target_of: Callable[[Tensor], Tensor] | None = None


class SmoothcertModule(DeclaredSettings, LightningModule):
    """Base of the task modules. A subclass sets ``task`` and ``output_kind``, implements
    ``training_loss(batch)`` and ``_evaluate(batch, stage)`` (validation and test share it), saves
    hparams ``mean``, ``std``, ``dataset`` and keeps its parts with ``keep_parts`` (the model,
    ``noise`` and, if it trains through a regime, ``objective`` with the regime's noise; the
    optimizer and scheduler factories), checks its first training batch in ``check_first_batch``,
    and adds its own checkpoint fields in ``checkpoint_fields``. Checkpoints carry all of them, and
    the training noise level, under ``checkpoint["smoothcert"]``. ``contract()`` is what certifiers
    check in ``setup``.

    A subclass declares its parameters as ``settings`` (groups, see
    ``lightning_modules/settings.py``: ``ImageModel`` or ``RegimeModel``, its own, ``Trailing``);
    the constructor then checks them and makes them plain (``plain_settings``), saves them as
    hparams (but the parts in ``NOT_HYPERPARAMETERS``), keeps the model ``build_model`` gives and
    the parts, and makes the metrics of each evaluation stage (``new_metrics``). A module with a
    constructor of its own (the denoiser) does all this itself."""

    task = ""
    output_kind = ""  # what base_function returns: class_logits | label_map | image | box
    base_attribute = "model"  # the attribute base_function returns
    evaluation_metrics: tuple[str, ...] = ()  # what _evaluate logs, as val/NAME and test/NAME

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        if not settings:
            return
        settings = {**settings, **self.plain_settings(settings)}
        self.save_hyperparameters(ignore=NOT_HYPERPARAMETERS)
        parts = [settings[k] for k in ("noise", "optimizer", "scheduler")]
        self.keep_parts(self.build_model(settings), *parts, settings.get("objective"))
        self.eval_metrics = per_stage(lambda: self.new_metrics(settings))

    def plain_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The settings that are checked (one-line ConfigErrors) or made plain values before they
        are saved, so checkpoints load with torch.load(weights_only=True): the normalization."""
        return {"mean": plain_floats(settings["mean"]), "std": plain_floats(settings["std"])}

    def build_model(self, settings: dict[str, Any]) -> nn.Module:
        """``normalize -> net``, the model the module trains (after the hparams are saved)."""
        return NormalizedNet(settings["net"], settings["mean"], settings["std"])

    def new_metrics(self, settings: dict[str, Any]) -> nn.Module:
        """The metrics of one evaluation stage: a running mean of each ``evaluation_metrics``."""
        return means_of(self.evaluation_metrics)

    @property
    def training_noise(self) -> Noise:
        """The noise the model trains with: its regime's (``objective.noise``) when it trains
        through a regime, else its own ``noise``. The one source of the training sigma."""
        objective = getattr(self, "objective", None)  # set by keep_parts, for regime modules
        return objective.contract().noise if objective is not None else self.noise

    @property
    def train_sigma(self) -> float | list[float]:
        """The training noise level(s), as plain floats (for headers and checkpoints)."""
        return plain_sigma(self.training_noise.sigma)

    def keep_parts(
        self,
        model: nn.Module,
        noise: Noise,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        objective: nn.Module | None = None,
    ) -> None:
        """The constructor part every task module shares, after ``save_hyperparameters``: the
        optimizer and scheduler factories, the normalizing ``model``, the regime ``objective``
        (where the module trains through one) and the smoothing ``noise``, in this order (the
        order of the state dict's keys)."""
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.model = model
        if objective is not None:
            if not isinstance(objective, TrainingObjective):
                raise ConfigError(
                    f"model.objective={type(objective).__name__} is not a training regime: "
                    "choose one with regime=NAME (conf/regime)"
                )
            objective.check_fits(self.output_kind, self.task)  # the regime contract, at set-up
            self.objective = objective
        self.noise = noise

    @override
    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def base_function(self) -> Callable[[Tensor], Tensor]:
        """The function a certifier smooths (inputs in [0, 1]): the attribute ``base_attribute``
        (the normalized ``model`` unless a module names another, e.g. ``structured_output``)."""
        return getattr(self, self.base_attribute)

    def contract(self) -> Contract:
        """The module's declared interface; a one-line ConfigError if something is missing."""
        missing = [name for name in ("task", "output_kind") if not getattr(self, name)]
        if not isinstance(getattr(self, "noise", None), Noise):
            missing.append("noise")
        if missing:
            raise ConfigError(
                f"{type(self).__name__} does not declare {', '.join(missing)}: a certifiable "
                "module states its task, output kind and noise (see SmoothcertModule)"
            )
        return Contract(
            self.task,
            self.output_kind,
            self.base_function(),
            tuple(self.monitorable()),
            self.training_noise,
            **self.contract_fields(),
        )

    def contract_fields(self) -> dict[str, Any]:
        """The optional fields of this module's :class:`Contract` (``num_classes``,
        ``structured_output``, ``logits_at``, ``detection_layout``, ``ignore_index``,
        ``target_of``); none by default."""
        return {}

    def monitorable(self) -> list[str]:
        """The metric keys a checkpoint or early-stopping callback can monitor."""
        logged = ["train/loss", *(f"val/{name}" for name in self.evaluation_metrics)]
        return [*logged, "epoch", "step"]  # Lightning offers these two to every checkpoint

    def _evaluate(self, batch: Any, stage: str) -> None:
        raise NotImplementedError

    def training_loss(self, batch: Any) -> Tensor:
        """The loss of a training batch (``training_step`` logs it as ``train/loss``)."""
        raise NotImplementedError

    @override
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self.training_loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0 and self.current_epoch == 0:  # once, before the first step
            check_unit_range(batch[0], "training batch")
            self.check_first_batch(batch)

    def check_first_batch(self, batch: Any) -> None:
        """One-line ConfigErrors for a first training batch the module cannot train on (its
        inputs are already checked to lie in [0, 1]); nothing more by default."""

    def log_metrics(self, stage: str, metrics: nn.ModuleDict, quiet: str) -> None:
        """Logs each of ``metrics`` as ``stage/NAME``, in the progress bar but for ``quiet``."""
        for name, metric in metrics.items():
            self.log(f"{stage}/{name}", metric, prog_bar=name != quiet)

    def checkpoint_fields(self) -> dict[str, Any]:
        """Task-specific entries of ``checkpoint["smoothcert"]``."""
        return {}

    def trained_parameters(self) -> Iterator[nn.Parameter]:
        """What the optimizer updates (all parameters unless a part stays frozen)."""
        return self.parameters()

    def shapes_on_first_training_example(self) -> tuple[tuple[int, ...], tuple | str] | None:
        """(input shape, model output shape) of the first training example without the batch
        dimension; the output is the error text if the model raised; None without a datamodule."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if not callable(getattr(datamodule, "dataset", None)):
            return None
        x = torch.as_tensor(datamodule.dataset("train")[0][0])[None].to(self.device)
        try:
            with eval_mode(self), torch.no_grad():
                return tuple(x.shape[1:]), tuple(self.model(x).shape[1:])
        except RuntimeError as error:  # e.g. a linear layer sized for other images
            return tuple(x.shape[1:]), f"an error ({(str(error).splitlines() or [repr(error)])[0]})"

    @override
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    @override
    def test_step(self, batch: tuple[Tensor, Tensor] | None, batch_idx: int) -> None:
        if batch is not None:  # None: certify.py certifies without an evaluation pass
            self._evaluate(batch, "test")

    @override
    def configure_optimizers(self) -> Any:
        return optimizers_config(
            self.trained_parameters(), self.optimizer_factory, self.scheduler_factory
        )

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: Any, map_location: Any = None, strict: bool = True, **kwargs: Any
    ) -> SmoothcertModule:
        """The module a smoothcert checkpoint holds, weights loaded (on the CPU unless
        ``map_location``; mode untouched). Lightning's own loader cannot rebuild it: the networks,
        regime, noise and optimizer are not hyper-parameters; they are built again from the model
        config the checkpoint stores (``kwargs`` override its entries). ``module.model`` is then
        ready for ``Smooth`` (takes [0, 1] pixels); ``smoothcert.load`` does the same without
        Lightning."""
        import hydra
        from omegaconf import OmegaConf

        from lightning_modules.run.checkpoints import checkpoint_metadata, upgrade_config

        meta = checkpoint_metadata(checkpoint_path)
        node = OmegaConf.create(upgrade_config("model", (meta.get("config") or {}).get("model")))
        module = hydra.utils.instantiate(node, _convert_="object", **kwargs)
        if not isinstance(module, cls):
            raise ConfigError(
                f"{checkpoint_path} holds a {type(module).__name__}, not a {cls.__name__}: load "
                f"it with {type(module).__name__}.load_from_checkpoint"
            )
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state, strict=strict)
        return module.to(map_location) if map_location is not None else module

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        h = self.hparams
        checkpoint.setdefault("smoothcert", {}).update(
            {
                "task": self.task,
                "train_sigma": self.train_sigma,
                "normalization": {"mean": list(h.mean), "std": list(h.std)},
                "dataset": h.dataset,
                **self.checkpoint_fields(),
            }
        )
