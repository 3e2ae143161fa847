"""The one attack pattern (``attack=``): an empirical attack on the examples a certifier of the
same run certified, bound to that certifier by configuration (``attack.certifier``, its
``certify=`` name), not by the order of the callbacks. The loop, the selection, resume, the
record files, the way settings are taken (``Configured``) and reports are published
(``build_report``) are the certification base class's; an attack supplies its per-example
attack, its record schema, what it reads from its certifier (``begin``) and its report."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import LightningModule, Trainer

from callbacks.certification.base import CertificationCallback
from callbacks.certification.settings import PLAIN, Configured
from smoothcert.errors import ConfigError, require
from smoothcert.records import Record, RecordSchema


class AttackCallback(Configured, CertificationCallback):
    """Attacks the examples that its certifier (``certifier``: the ``certify=`` option of a
    certification callback of the run, e.g. ``cohen``) certified, after it, with the same example
    selection. In ``setup``, before training, a one-line ConfigError says that the named certifier
    is not in the run, is not one the attack fits (``fits``), certifies radii in a norm the attack
    does not attack in (``norms``) or in another than the attack's ``norm`` (None: the
    certifier's), or selects other examples. Wherever the attack's callback stands in
    ``trainer.callbacks``, it runs after its certifier (``setup`` moves it right behind it if it
    stood before).

    A subclass sets ``tasks``, ``fits``, ``key`` and ``schema`` (its one record file),
    ``header_name``, ``settings`` (``settings["attack"]`` names it in ``empirical_summary.json``),
    the message parts ``targets``, ``instead`` and ``needs``, its ``settings_type`` (with a
    ``certifier`` field) and ``selection`` defaults, and implements ``begin`` (what it reads from
    its certifier and the model before attacking), ``certify_one`` and ``build_report`` (its
    scalars are ``attack/*``, its curve under wandb's ``cert/`` root as before; see
    ``callbacks.attack_report.attack_section``).
    """

    progress = "attack"
    fits: type[CertificationCallback] = CertificationCallback  # the certifier kind it attacks
    key, schema, header_name = "", None, ""  # its record file, and the header's certifier
    model_keys: tuple[str, ...] = ()  # model hyperparameters in its record header
    targets = ""  # what it attacks ("classifiers"), for messages
    instead = ""  # the fix for a model of another task ("use attack=seg_pgd for segmentation")
    needs = ""  # why it needs its certifier ("attacks at multiples of Cohen's certified radii")
    norms: tuple[str, ...] = ("l2",)  # the norms it attacks in
    norm: str | None = None  # the one it attacks in (None: its certifier's; bound in setup)

    takes = PLAIN  # no autocast (attacks need full-precision gradients), no simulated crash

    def __init__(self, sigma: float, output_dir: str, **settings: Any) -> None:
        super().__init__(sigma, output_dir, **settings)
        self.certifier_name = str(self.certifier)  # the setting names it; bound in setup:
        self.certifier: CertificationCallback | None = None

    def check_model(self, pl_module: LightningModule) -> None:
        task = pl_module.contract().task
        if task not in self.tasks:
            raise ConfigError(
                f"{self.option} attacks {self.targets}, but the model is a {task} model: "
                f"{self.instead}, or attack=none"
            )

    def bind(self, trainer: Trainer) -> CertificationCallback:
        """The certifier named ``attack.certifier`` among the run's callbacks, checked to fit
        (a one-line ConfigError otherwise); this callback then runs after it."""
        name, fits = self.certifier_name, self.fits.option
        others = [c for c in trainer.callbacks if isinstance(c, CertificationCallback)]
        named = [c for c in others if c is not self and c.option == name]
        present = ", ".join(f"certify={c.option}" for c in others if c is not self) or "none"
        require(named, f"{self.option} {self.needs}: use certify={name} (the run has {present})")
        require(len(named) == 1, f"attack.certifier={name} names {len(named)} certifiers")
        certifier = named[0]
        require(
            isinstance(certifier, self.fits),
            f"attack.certifier={name}: {self.option} attacks what certify={fits} certified, "
            f"not certify={name}: set attack.certifier={fits} and certify={fits}",
        )
        require(
            certifier.norm in self.norms,
            f"{self.option} attacks in {'/'.join(self.norms)}, but certify.norm={certifier.norm}: "
            "use certify.norm=null with noise=gaussian",
        )
        require(
            self.norm in (None, certifier.norm),
            f"attack.norm={self.norm} differs from the norm of certify={name}'s radii "
            f"({certifier.norm}): leave attack.norm=null (the certificate's norm) or set "
            f"certify.norm={self.norm}",
        )
        self.norm = certifier.norm
        mine = (self.split, self.skip, self.num_examples)
        theirs = (certifier.split, certifier.skip, certifier.num_examples)
        require(
            mine == theirs,
            f"{self.option}: split/skip/num_examples {mine} differ from certify's {theirs}: "
            "leave attack.split, attack.skip and attack.num_examples at ${certify.*}",
        )
        self.follow(trainer, certifier)
        return certifier

    def follow(self, trainer: Trainer, certifier: CertificationCallback) -> None:
        """Puts this callback right behind ``certifier`` if it stood before it (Lightning calls
        ``on_train_end``/``on_test_end`` in list order). A new list, so that the hook now being
        called (setup) still reaches every callback once."""
        callbacks = list(trainer.callbacks)
        if callbacks.index(self) < callbacks.index(certifier):
            callbacks.remove(self)
            callbacks.insert(callbacks.index(certifier) + 1, self)
            trainer.callbacks = callbacks

    def prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.certifier = self.bind(trainer)

    def begin(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Reads what the attack needs from its (finished) certifier and the model."""
        raise NotImplementedError

    def start(self, trainer: Trainer, pl_module: LightningModule) -> contextlib.ExitStack:
        # certify.py certifies inside Lightning's test loop (inference mode): attacks need grads.
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        return stack

    def schemas(self) -> dict[str, RecordSchema]:
        return {self.key: self.schema}

    def metadata(self, pl_module: LightningModule, checkpoint: str, key: str = "") -> dict:
        return self.header(pl_module, checkpoint, self.header_name, self.settings, self.model_keys)

    def keep(self, records: Mapping[str, list[Record]]) -> None:
        self.records = records[self.key]

    def write_summary(self) -> Path:
        """``empirical_summary.json`` (certification_summary.json stays the certifier's)."""
        path = self.output_dir / "empirical_summary.json"
        content = {"attack": self.settings["attack"], "summary": self.summary}
        path.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
        return path
