"""What a certification is of, and what its records and plots say about it: the noise or the
perturbation it smooths with (``use_noise``, ``use_perturbation``; the settings' ``smooth_with``
calls one of them), the ``#`` header of its record files and the protocol in its plots' titles.
A mixin of ``CertificationCallback``, whose ``sigma``, ``option``, ``sound``, ``seed`` and
example selection it reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pytorch_lightning import LightningModule

import smoothcert
from callbacks.certification.checks import (
    certify_noise,
    check_perturbation,
    norm_prefix,
    trained_sigma,
)
from smoothcert.noise import Noise
from smoothcert.perturbation import is_parametric


class Described:
    """The smoothing a certification uses and the record header and plot protocol stating it."""

    def use_noise(self, noise: Noise | None, norm: str | None) -> None:
        """Certifies with ``noise`` (None: Gaussian) at ``sigma`` in ``norm`` (None: its natural
        norm): sets ``noise``, ``norm`` and ``prefix`` (the summary keys' ``cert/`` or
        ``cert/<norm>/``); the record headers then state the noise, its own scale and the norm."""
        self.noise, self.norm = certify_noise(self.sigma, noise, norm)
        self.prefix = norm_prefix(self.norm, self.sound)

    def use_perturbation(
        self, perturbation: Any, sound: bool | None = None, kind: type | None = None
    ) -> None:
        """Smooths over ``perturbation``'s parameters (a transformation: brightness, gamma,
        rotation...; ``check_perturbation`` refuses one of another ``kind`` or noise level): its
        noise draws them, radii are in its units and the keys under ``cert/<name>/``, or, for one
        that does not compose (``certified`` False, e.g. BaseSPT over rotations) and unless
        ``sound`` says otherwise, ``heuristic/<name>/``. ``check_selection`` checks the examples
        fit it."""
        check_perturbation(self.option, self.sigma, perturbation, kind)
        self.perturbation, self.noise = perturbation, perturbation.noise
        self.norm = perturbation.name
        self.sound = perturbation.certified if sound is None else sound
        self.prefix = norm_prefix(self.norm, self.sound)

    def perturbation_settings(self) -> dict[str, object]:
        """What a record header says about the perturbation (nothing for additive noise): its
        name, its units (marked as a heuristic's when not ``sound``) and its own settings."""
        p = self.perturbation
        if not is_parametric(p):
            return {}
        units = p.units + ("" if self.sound else " (heuristic: not a certificate)")
        return {"perturbation": p.name, "units": units, **p.header_settings()}

    def header(
        self,
        pl_module: LightningModule,
        checkpoint: str,
        certifier: str,
        settings: Mapping[str, object],
        model_keys: Iterable[str] = (),
    ) -> dict[str, object]:
        """The ``#`` metadata of a record file: version, certifier, sigma (and the training sigma),
        the certifier's ``settings``, the example selection, the dataset, the hyperparameters
        ``model_keys`` of the model, the checkpoint and the model's input normalization."""
        h = pl_module.hparams
        return {
            "smoothcert": smoothcert.__version__,
            "certifier": certifier,
            "sigma": self.sigma,
            "train_sigma": trained_sigma(pl_module),
            **self.noise_settings(),
            **settings,
            "seed": self.seed,
            "split": self.split,
            "skip": self.skip,
            "num_examples": self.num_examples,
            "dataset": h.get("dataset"),
            **{key: h.get(key) for key in model_keys},
            "checkpoint": checkpoint,
            "inputs": "pixels in [0, 1], normalized inside the model",
            "normalization": f"mean={list(h.get('mean', []))} std={list(h.get('std', []))}",
        }

    def protocol_text(self, pl_module: LightningModule, examples: int, **settings: object) -> str:
        """What a plot's title states besides the certifier: ``digits test, 200 examples, n0=100,
        n=10000, alpha=0.001`` (the dataset, the split, the number of examples, ``settings``)."""
        dataset = (getattr(pl_module, "hparams", None) or {}).get("dataset")
        words = [f"{dataset} {self.split}" if dataset else self.split, f"{examples} {self.noun}"]
        words += [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items()]
        return ", ".join(words)

    def noise_settings(self) -> dict[str, object]:
        """The header's noise, its own scale and the norm of the radii (empty before use_noise)."""
        if self.noise is None:
            return {}
        return {"noise": self.noise.name, "noise_scale": self.noise.scale, "norm": self.norm}
