"""The one way a certification or attack callback takes its settings, and what the
structured-output certifiers (SegCertify, center, median) share: reading the model's contract.

``Configured`` is a mixin for ``CertificationCallback`` (kept here, so that the base class stays
as it is), used by every certifier and attack: ``__init__(sigma, output_dir, **settings)`` passes
the example selection it ``takes`` (of ``batch_size``, ``num_examples``, ``skip``, ``split``,
``weights``, ``seed``, ``bf16``, ``resume``, ``crash_after``; defaults in ``selection``) to the
base class, the smoothing (``noise``, ``norm``, ``perturbation``, those it takes) to
``smooth_with`` and every other setting to the certifier's ``settings_type``, whose checked
fields become the callback's attributes (so a bad or unknown setting fails on construction, as
with an explicit signature). Each subclass's ``__init__`` states all of them as its signature
(``inspect.signature``, with their types; a call is bound to it), so
``lightning_modules/run/config_checks.py`` checks the config's keys and types before anything is
built, as for a callback with explicit parameters."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, ClassVar

import torch
from pytorch_lightning import LightningModule, Trainer
from torch import Tensor

from callbacks.certification.base import CertificationCallback
from smoothcert.certifiers.classification import eval_mode
from smoothcert.errors import ConfigError, check_unit_range
from smoothcert.noise import Noise
from smoothcert.perturbation import ADDITIVE, Perturbation, is_parametric

SELECTION = ("batch_size", "num_examples", "skip", "split", "weights", "seed", "bf16", "resume")
SELECTION_DEFAULTS = {"skip": 1, "weights": "last", "seed": 0}  # each certifier adds its own
# The selection of a callback that neither samples under autocast nor simulates crashes.
PLAIN = ("batch_size", "num_examples", "skip", "split", "weights", "seed", "resume")
TAKES = (*SELECTION, "crash_after", "noise")  # what a sampling certifier takes by default
# How noise meets the input: the settings ``smooth_with`` takes, with their types and defaults.
SMOOTHING = {"noise": (Noise | None, None), "norm": (str | None, None)}
SMOOTHING["perturbation"] = (Perturbation, ADDITIVE)


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
    """Mixin before ``CertificationCallback``: the constructor of a certifier (or attack) whose
    settings are the dataclass ``settings_type`` (kept as ``config``, its fields also as
    attributes), which ``takes`` the selection and smoothing settings named there (with the
    selection defaults ``selection``), smoothing as ``smooth_with`` says: with ``noise`` at
    ``sigma`` (None: Gaussian) and radii in ``norm`` (None: the noise's own), or over a
    ``perturbation``'s parameters. A class without ``settings_type`` is a base of such classes."""

    settings_type: ClassVar[type | None] = None
    selection: ClassVar[dict[str, Any]] = {}
    takes: ClassVar[tuple[str, ...]] = TAKES

    def __init__(self, sigma: float, output_dir: str, **settings: Any) -> None:
        chosen = {**SELECTION_DEFAULTS, **self.selection}
        chosen.update({k: settings.pop(k) for k in (*SELECTION, "crash_after") if k in settings})
        smoothing = {k: settings.pop(k) for k in SMOOTHING if k in settings}
        super().__init__(sigma, output_dir, **chosen)
        self.smooth_with(**smoothing)
        self.config = self.settings_type(**settings)
        for field in dataclasses.fields(self.config):
            setattr(self, field.name, getattr(self.config, field.name))

    def smooth_with(
        self, noise: Noise | None = None, norm: str | None = None, perturbation: Any = ADDITIVE
    ) -> None:
        """Smooths over ``perturbation``'s parameters if it is a transformation, else (if the
        certifier takes ``noise``) with ``noise`` at ``sigma`` in ``norm``; a certifier that
        smooths otherwise (or not at all) overrides it."""
        if is_parametric(perturbation):
            self.use_perturbation(perturbation)
        elif "noise" in self.takes:
            self.use_noise(noise, norm)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.settings_type is None:
            return  # a base class: its subclasses state the settings
        own = cls.__init__  # the class's own constructor, or the one it inherits
        parameters, hints = settings_signature(cls, own)
        signature = inspect.Signature(parameters)

        def __init__(self, *args: Any, **settings: Any) -> None:
            signature.bind(self, *args, **settings)  # TypeError for an unknown or missing one
            own(self, *args, **settings)

        __init__.__signature__ = signature
        __init__.__annotations__ = hints
        __init__.__doc__, __init__.__qualname__ = own.__doc__, f"{cls.__qualname__}.__init__"
        cls.__init__ = __init__

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


def settings_signature(cls: type, own: Any) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    """The parameters and type hints of ``cls``'s constructor: those ``own`` names (e.g.
    ``sigma``, ``output_dir``), then, keyword-only, the fields of its ``settings_type``, the
    example selection (defaults: ``cls.selection``, else the base class's; ``batch_size`` a
    whole number unless the certifier chooses it) and smoothing settings it ``takes``."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = {
        name: p
        for name, p in inspect.signature(own).parameters.items()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }
    hints = {k: v for k, v in typing.get_type_hints(own).items() if k in parameters}
    fields = [f for f in dataclasses.fields(cls.settings_type) if f.init]
    field_hints = typing.get_type_hints(cls.settings_type)
    for field in fields:
        default = field.default
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        elif default is dataclasses.MISSING:
            default = inspect.Parameter.empty
        parameters.setdefault(field.name, inspect.Parameter(field.name, keyword, default=default))
        hints.setdefault(field.name, field_hints[field.name])
    base = inspect.signature(CertificationCallback.__init__).parameters
    base_hints = typing.get_type_hints(CertificationCallback.__init__)
    defaults = {**SELECTION_DEFAULTS, **cls.selection}
    for name in cls.takes:
        if name in SMOOTHING:
            hint, default = SMOOTHING[name]
        else:
            hint, default = base_hints[name], defaults.get(name, base[name].default)
        parameters.setdefault(name, inspect.Parameter(name, keyword, default=default))
        hints.setdefault(name, hint)
    if not cls.auto_batch_size:
        hints["batch_size"] = int
    return list(parameters.values()), hints
