"""The regime contract: what a training regime states, and all a task module reads of it.

A regime (a :class:`TrainingObjective`, called as ``objective(model, x, y) -> loss`` with ``x``
in [0, 1] pixel space) states, in :meth:`TrainingObjective.contract`:

- ``noise``: the :class:`~smoothcert.noise.Noise` it trains with (the one source of the training
  sigma that checkpoints and headers record);
- ``augment(x)``: one random draw of its training distribution per example of a batch (the noise,
  or the transformation it trains on; SmoothAdv's attack comes on top in its loss): what a task
  module's "noisy" validation metric evaluates on;
- ``output_kinds``: the kinds of model output it trains (a task module's ``output_kind``:
  ``class_logits`` for a classifier, ``label_map`` for a segmenter's per-pixel logits).

A task module checks the fit in its constructor (``objective.check_fits(output_kind, task)``): a
regime that does not fit is one line naming the regimes that do, before anything trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from smoothcert.errors import ConfigError
from smoothcert.noise import Noise

__all__ = ["CLASS_LOGITS", "LABEL_MAP", "RegimeContract", "TrainingObjective", "regimes_for"]

CLASS_LOGITS = "class_logits"  # a classifier: logits [B, K], one label per example
LABEL_MAP = "label_map"  # a segmenter: logits [B, K, H, W], one label per pixel


@dataclass(frozen=True)
class RegimeContract:
    """A regime's declared interface (see the module docstring). ``option`` is the name that
    selects it (``regime=<option>``)."""

    option: str
    noise: Noise
    augment: Callable[[Tensor], Tensor]
    output_kinds: tuple[str, ...]

    def check_fits(self, output_kind: str, task: str = "") -> None:
        """Raises a one-line ConfigError unless the regime trains models of ``output_kind``."""
        if output_kind in self.output_kinds:
            return
        model = f"a {task} model ({output_kind} outputs)" if task else f"{output_kind} outputs"
        fitting = " or ".join(f"regime={name}" for name in regimes_for(output_kind))
        raise ConfigError(
            f"regime={self.option} trains {' or '.join(self.output_kinds)} models, not {model}: "
            f"use {fitting or 'a regime that states ' + output_kind + ' in its output_kinds'}"
        )


class TrainingObjective(nn.Module):
    """Base class of the regimes: a subclass keeps its ``noise``, states ``option`` (its name
    under ``conf/regime/``) and ``output_kinds``, and implements ``forward(model, x, y) -> scalar
    loss``; ``augment`` draws the noise unless it trains on something else. Task modules call
    ``on_epoch_start(epoch)`` every epoch, so schedules (warm-ups) need no module changes."""

    option = ""
    output_kinds: tuple[str, ...] = ()
    noise: Noise

    def on_epoch_start(self, epoch: int) -> None:
        """Called at the start of every training epoch; no-op by default."""

    def augment(self, x: Tensor) -> Tensor:
        """One random draw of the training distribution per example of the batch ``x``."""
        return self.noise(x)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def contract(self) -> RegimeContract:
        """The regime's :class:`RegimeContract`; a one-line ConfigError if it states no noise or
        no output kind."""
        name = self.option or type(self).__name__
        if not isinstance(getattr(self, "noise", None), Noise):
            raise ConfigError(f"regime {name} keeps no noise: a regime trains with self.noise")
        if not self.output_kinds:
            raise ConfigError(
                f"regime {name} states no output_kinds: say which model outputs it trains, e.g. "
                f"output_kinds = ({CLASS_LOGITS!r},)"
            )
        return RegimeContract(name, self.noise, self.augment, tuple(self.output_kinds))

    def check_fits(self, output_kind: str, task: str = "") -> None:
        """The one-line set-up check of a task module whose model outputs ``output_kind``."""
        self.contract().check_fits(output_kind, task)


def regimes_for(output_kind: str) -> list[str]:
    """The options of the regimes defined so far (subclasses of TrainingObjective) that train
    models of ``output_kind``, in definition order."""
    found, pending = [], list(TrainingObjective.__subclasses__())
    while pending:
        regime = pending.pop(0)
        pending.extend(regime.__subclasses__())
        if regime.option and output_kind in regime.output_kinds and regime.option not in found:
            found.append(regime.option)
    return found
