"""Diffusion denoised smoothing (Carlini et al. 2023): a pretrained DDPM as a one-shot denoiser.

"(Certified!!) Adversarial Robustness for Free!" puts an off-the-shelf diffusion model in front of
an off-the-shelf classifier: the noisy input ``x + delta`` (``delta ~ N(0, sigma^2 I)``, ``x`` in
[0, 1]) is read as a diffusion state ``x_t`` at the timestep whose noise level matches sigma, and
one call of the noise-prediction network gives the estimate of the clean image. The smoothed
classifier is then built on ``f(D(x))`` exactly as for a trained denoiser
(:class:`~smoothcert.models.denoisers.DenoisedClassifier`); radii always use sigma.

The range matters: diffusion models work in [-1, 1], so ``x`` becomes ``2x - 1`` and the noise
``2 delta``, of standard deviation ``sigma' = 2 sigma``. The timestep is the first ``t`` (0-indexed)
with ``(1 - abar_t) / abar_t >= sigma'^2 = 4 sigma^2`` (the reference repository's rule; it gives
t = 70/145/259/396 for sigma 0.12/0.25/0.5/1.0 on diffusers' default linear 1000-step schedule).
Then ``x_t = sqrt(abar_t) (2 (x + delta) - 1) = sqrt(abar_t) (2x - 1) + sqrt(abar_t) 2 sigma eps``:
the DDPM marginal ``sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` exactly when the ratio equals
``4 sigma^2``. Otherwise (the schedule is discrete) the input holds a little less noise than the
model assumes at ``t`` (``abar_t 4 sigma^2 <= 1 - abar_t``); the model then removes slightly too
much noise. The first ``t`` at or above the ratio, rather than the nearest, never asks the model to
remove less noise than there is. Either way ``f(D(.))`` is just a base classifier: certificates stay
sound, only its accuracy under noise depends on the match.

``diffusers`` is optional (``pip install -e ".[diffusion]"``); it is imported when a model loads.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError, require

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def timestep_for_sigma(alphas_cumprod: Tensor, sigma: float, setting: str = "sigma") -> int:
    """The first timestep ``t`` (0-indexed) whose noise-to-signal ratio ``(1 - abar_t) / abar_t``
    reaches ``(2 sigma)^2``: the diffusion level of noise ``sigma`` added to [0, 1] inputs.

    Raises:
        ConfigError: one line, if sigma <= 0 or no timestep of the schedule is that noisy.
    """
    require(float(sigma) > 0, f"{setting}={sigma}: diffusion denoising needs sigma > 0")
    abar = alphas_cumprod.detach().double().cpu()
    ratio = (1 - abar) / abar
    target = 4.0 * float(sigma) ** 2
    reached = torch.nonzero(ratio >= target).flatten()
    largest = math.sqrt(float(ratio.max())) / 2
    require(
        len(reached) > 0,
        f"{setting}={sigma} is noisier than the diffusion model's last timestep (it reaches sigma "
        f"{largest:.3g} in [0, 1] units): use a smaller sigma or a model with a longer schedule",
    )
    return int(reached[0])


class DiffusionDenoiser(nn.Module):
    """One-shot DDPM denoising of ``x + delta`` (pixels in [0, 1], noise of level ``sigma``).

    ``forward`` returns ``x0_hat`` mapped back to [0, 1]: with ``x_t = sqrt(abar_t) (2 y - 1)`` for
    the noisy input ``y`` and ``out = unet(x_t, t)`` (its first C channels when the model also
    predicts its variance, ``out_channels = 2C``), ``x0_hat`` is ``(x_t - sqrt(1 - abar_t) out) /
    sqrt(abar_t)`` for epsilon prediction (``out`` itself for ``sample``, ``sqrt(abar_t) x_t -
    sqrt(1 - abar_t) out`` for ``v_prediction``), clipped to [-1, 1]; the result is ``(x0_hat + 1)
    / 2``. The network is frozen (no gradients to its weights, eval mode forever); inputs still get
    gradients, so attacks can differentiate ``f(D(x))``.
    """

    def __init__(
        self,
        unet: nn.Module,
        alphas_cumprod: Tensor,
        sigma: float,
        prediction_type: str = "epsilon",
        setting: str = "sigma",
    ) -> None:
        super().__init__()
        require(
            prediction_type in PREDICTION_TYPES,
            f"the diffusion model's scheduler predicts {prediction_type!r}: one-shot denoising "
            f"supports {', '.join(PREDICTION_TYPES)}",
        )
        self.timestep = timestep_for_sigma(alphas_cumprod, sigma, setting)
        abar = float(alphas_cumprod.double()[self.timestep])
        self.sigma = float(sigma)
        self.prediction_type = prediction_type
        self.signal, self.noise_scale = math.sqrt(abar), math.sqrt(1.0 - abar)
        self.unet = unet.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> DiffusionDenoiser:
        """Ignores ``mode``: the diffusion model stays in eval mode."""
        return super().train(False)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, timestep={self.timestep}, prediction={self.prediction_type}"

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        x_t = self.signal * (2.0 * x - 1.0)
        t = torch.full((x.shape[0],), self.timestep, dtype=torch.long, device=x.device)
        out = self.unet(x_t, t).sample[:, :channels]  # learned variance: the first C are eps
        if self.prediction_type == "epsilon":
            x0 = (x_t - self.noise_scale * out) / self.signal
        elif self.prediction_type == "sample":
            x0 = out
        else:  # v_prediction
            x0 = self.signal * x_t - self.noise_scale * out
        return (x0.clamp(-1.0, 1.0) + 1.0) / 2.0


def _layout(directory: Path, setting: str) -> tuple[str | None, Path]:
    """(the UNet's subfolder, the scheduler's config file) of a local diffusers model: a pipeline
    folder (``unet/`` and ``scheduler/``) or a UNet folder with ``scheduler_config.json`` beside
    ``config.json``. One-line ConfigError naming what is missing."""
    how = (
        f"point {setting} to a diffusers pipeline folder (unet/ and scheduler/) or a UNet folder "
        "with config.json, diffusion_pytorch_model.safetensors and scheduler_config.json, e.g. "
        "one written by benchmarks/train_ddpm_digits.py"
    )
    require(directory.is_dir(), f"{setting}={directory} is not a directory: {how}")
    if (directory / "unet" / "config.json").is_file():
        subfolder, unet_dir = "unet", directory / "unet"
    else:
        subfolder, unet_dir = None, directory
    require((unet_dir / "config.json").is_file(), f"{setting}={directory} has no UNet: {how}")
    require(
        any((unet_dir / name).is_file() for name in WEIGHT_FILES),
        f"{setting}={directory} has no UNet weights ({WEIGHT_FILES[0]}): {how}",
    )
    candidates = [directory / "scheduler" / "scheduler_config.json"]
    candidates += [directory / "scheduler_config.json", unet_dir / "scheduler_config.json"]
    found = [path for path in candidates if path.is_file()]
    require(bool(found), f"{setting}={directory} has no scheduler_config.json: {how}")
    return subfolder, found[0]


def load_diffusion_denoiser(
    pretrained_dir: str | None,
    sigma: float,
    channels: int | None = None,
    setting: str = "model.pretrained_dir",
) -> DiffusionDenoiser:
    """The :class:`DiffusionDenoiser` of the diffusers DDPM saved in ``pretrained_dir``
    (``UNet2DModel`` weights and a ``DDPMScheduler`` config), for noise of level ``sigma``.

    Reads local files only (``local_files_only``): nothing is ever downloaded. The folder's layout
    is checked before diffusers is imported or any weight is read.

    Raises:
        ConfigError: one line naming ``setting``, if the folder or a file is missing, diffusers is
            not installed, the files do not load, the model's channels differ from ``channels``,
            its outputs are neither C nor 2C channels, or sigma is out of the schedule's range.
    """
    require(
        bool(pretrained_dir),
        f"{setting} is not set: pass {setting}=DIR, a diffusers DDPM saved with save_pretrained "
        "(e.g. by benchmarks/train_ddpm_digits.py); weights are never downloaded",
    )
    directory = Path(str(pretrained_dir))
    subfolder, scheduler_file = _layout(directory, setting)
    try:
        from diffusers import DDPMScheduler, UNet2DModel
    except ImportError:
        raise ConfigError(
            f"{setting}: diffusion denoising needs diffusers: pip install -e '.[diffusion]'"
        ) from None
    try:
        unet = UNet2DModel.from_pretrained(
            str(directory), subfolder=subfolder, local_files_only=True, low_cpu_mem_usage=False
        )
        config = DDPMScheduler.load_config(str(scheduler_file.parent), local_files_only=True)
        scheduler = DDPMScheduler.from_config(config)
    except (OSError, ValueError, TypeError, RuntimeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(
            f"{setting}={directory} does not load as a diffusers UNet2DModel and DDPMScheduler "
            f"({first})"
        ) from None
    c_in, c_out = int(unet.config.in_channels), int(unet.config.out_channels)
    require(
        c_out in (c_in, 2 * c_in),
        f"{setting}={directory}: the UNet has {c_out} output channels for {c_in} input channels; "
        "one-shot denoising needs C (the noise) or 2C (noise and learned variance)",
    )
    require(
        channels is None or int(channels) == c_in,
        f"{setting}={directory} takes {c_in}-channel images but data has {channels} channels: "
        "use a diffusion model trained on this dataset",
    )
    prediction = str(scheduler.config.prediction_type)
    return DiffusionDenoiser(unet, scheduler.alphas_cumprod, sigma, prediction, setting="sigma")
