"""Diffusion denoised smoothing (Carlini et al. 2023): a pretrained DDPM in front of a frozen
classifier, certified like the trained denoiser of ``lightning_modules/denoiser.py``.

Nothing is trained: the DDPM (``model.pretrained_dir``, a diffusers folder) and the classifier
(``classifier_ckpt``) are used as they are. ``train.py`` runs an epoch whose training steps do
nothing (``+experiment=digits_diffusion_denoiser``: one epoch of one batch, whose inputs are
checked), validates, writes the checkpoint that ``certify.py`` can certify again, and certifies at
its end, as for every other model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from typing_extensions import override

from lightning_modules.denoiser import DenoiserModule
from smoothcert.errors import ConfigError, require
from smoothcert.models.diffusion import load_diffusion_denoiser
from smoothcert.noise import Noise


class DiffusionDenoiserModule(DenoiserModule):
    """``f(D(x))`` with ``D`` the one-shot denoiser of a pretrained diffusion model
    (:class:`~smoothcert.models.diffusion.DiffusionDenoiser`) at the training noise's sigma, and
    ``f`` the frozen classifier of ``classifier_ckpt`` (any architecture ``classifier_net`` names).

    The composition, the frozen classifier, the metrics (``val/acc``: f(D(x)) on clean inputs,
    ``val/acc_noisy``: on x + delta) and the certification are the trained denoiser's
    (:class:`DenoiserModule`). Certification only queries ``f``; its gradients (full access) are
    there for attacks, which differentiate through ``D`` and ``f``.

    Raises:
        ConfigError: one line, when constructed and before the classifier is read, for a missing or
            unreadable ``model.pretrained_dir``, a sigma the schedule cannot match, or several
            noise levels; then the classifier checks of :class:`DenoiserModule`.
    """

    def __init__(
        self,
        classifier_net: nn.Module,
        noise: Noise,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_classes: int,
        channels: int,
        pretrained_dir: str | None = None,
        classifier_ckpt: str | None = None,
        scheduler: Callable[..., Any] | None = None,
        dataset: str = "",
    ) -> None:
        levels = list(noise.levels)
        require(
            len(levels) == 1,
            f"sigma={noise.sigma}: a diffusion denoiser works at one noise level (its timestep); "
            "give one sigma",
        )
        denoiser = load_diffusion_denoiser(pretrained_dir, levels[0], channels)
        super().__init__(
            denoiser=denoiser,
            classifier_net=classifier_net,
            noise=noise,
            optimizer=optimizer,
            num_classes=num_classes,
            channels=channels,
            classifier_ckpt=classifier_ckpt,
            scheduler=scheduler,
            dataset=dataset,
        )

    @override
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        return None  # nothing trains: Lightning moves on (the inputs were checked before)

    def check_first_batch(self, batch: tuple[Tensor, Tensor]) -> None:
        super().check_first_batch(batch)
        try:
            with torch.no_grad():
                self.model.denoiser(batch[0][:1])
        except RuntimeError as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(
                f"model.pretrained_dir={self.hparams.pretrained_dir} does not denoise "
                f"{tuple(batch[0].shape[1:])} inputs ({message}): use a diffusion model trained "
                "on images of this size"
            ) from None

    def checkpoint_fields(self) -> dict[str, Any]:
        denoiser = self.model.denoiser
        return {
            "num_classes": int(self.hparams.num_classes),
            "classifier_ckpt": str(self.hparams.classifier_ckpt),
            "pretrained_dir": str(self.hparams.pretrained_dir),
            "diffusion_timestep": int(denoiser.timestep),
        }
