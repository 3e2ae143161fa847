"""What the structured-output certifiers' callbacks (SegCertify, center, median) share besides the
base loop: their settings objects (one dataclass per certifier, checked on construction) and
reading the model's contract.

``Configured`` is a mixin for ``CertificationCallback`` (kept here, so that the base class stays
as it is): ``__init__(sigma, output_dir, noise, **settings)`` passes the example selection
(``batch_size``, ``num_examples``, ``skip``, ``split``, ``weights``, ``seed``, ``bf16``,
``resume``, ``crash_after``; defaults in ``selection``) to the base class and every other setting
to the certifier's ``settings_type``, whose checked fields become the callback's attributes (so a
bad or unknown setting fails on construction, as with an explicit signature)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from pytorch_lightning import LightningModule, Trainer
from torch import Tensor

from smoothcert.certifiers.classification import eval_mode
from smoothcert.errors import ConfigError, check_unit_range

SELECTION = ("batch_size", "num_examples", "skip", "split", "weights", "seed", "bf16", "resume")


def contract_of(pl_module: LightningModule, option: str) -> Any:
    """The model's declared contract (``pl_module.contract()``: output kind, base function,
    classes, structured output, detection layout); a one-line ConfigError if it declares none."""
    try:
        return pl_module.contract()
    except AttributeError:
        raise ConfigError(
            f"certify={option}: {type(pl_module).__name__} declares no contract(): a certifiable "
            "module states its task, output kind and noise (see lightning_modules/base.py)"
        ) from None


class Configured:
    """Mixin before ``CertificationCallback``: the constructor of a certifier whose settings are
    the dataclass ``settings_type`` (kept as ``config``, its fields also as attributes), with the
    example selection defaults ``selection``, smoothing with ``noise`` at ``sigma`` (None:
    Gaussian) and, if ``radius_norms``, radii in the setting ``norm`` (None: the noise's own)."""

    settings_type: ClassVar[type]
    selection: ClassVar[dict[str, Any]] = {}
    radius_norms: ClassVar[bool] = False

    def __init__(self, sigma: float, output_dir: str, noise: Any = None, **settings: Any) -> None:
        chosen = dict(self.selection)  # this certifier's defaults; the base class has the rest
        chosen.update({k: settings.pop(k) for k in (*SELECTION, "crash_after") if k in settings})
        norm = settings.pop("norm", None) if self.radius_norms else None
        super().__init__(sigma, output_dir, **chosen)
        self.use_noise(noise, norm)
        self.config = self.settings_type(**settings)
        for field in dataclasses.fields(self.config):
            setattr(self, field.name, getattr(self.config, field.name))

    def structured(self, x: Tensor) -> Tensor:
        """The model's structured output (``contract.structured_output``, the base function of
        center and median smoothing) on ``x``, under the callback's autocast."""
        with self.autocast(x.device):
            return self.contract.structured_output(x)

    def first_output(self, trainer: Trainer, pl_module: LightningModule, base: Any) -> Tensor:
        """``base`` (the base function) on the first selected example, a batch of one, in eval
        mode; a one-line ConfigError first if that example is not in [0, 1]."""
        idx = self.indices(trainer)[0]
        x = torch.as_tensor(trainer.datamodule.dataset(self.split)[idx][0])
        check_unit_range(x, f"{self.split} example {idx}")
        with eval_mode(pl_module), torch.inference_mode():
            return base(x[None].to(pl_module.device))
