"""Denoisers for denoised ("black-box") smoothing (Salman et al. 2020), and the frozen composition.

A denoiser ``D`` maps a noisy image ``x + delta`` (``x`` in [0, 1]) to an estimate of ``x``; the
smoothed classifier is then built on ``f(D(.))`` for a pretrained, unchanged classifier ``f``.
Outputs are not clipped to [0, 1] (as in the reference DnCNN): clipping would cut gradients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothcert.errors import ConfigError, check_count, require
from smoothcert.models import NormalizedClassifier


class DnCNN(nn.Module):
    """DnCNN (Zhang et al. 2017), as in the denoised-smoothing reference: residual learning.

    ``depth`` 3x3 convolutions of ``width`` channels (conv+ReLU, ``depth - 2`` x conv+BN+ReLU,
    conv); the network predicts the noise and the output is ``x - predicted_noise``. The paper's
    CIFAR-10/ImageNet denoiser is depth 17, width 64; the digits configs use a smaller one.
    Convolutions are orthogonally initialized, as in the reference.
    """

    def __init__(self, channels: int = 3, depth: int = 17, width: int = 64) -> None:
        super().__init__()
        channels = check_count(channels, "model.denoiser.channels")
        depth = check_count(depth, "model.denoiser.depth", minimum=2)
        width = check_count(width, "model.denoiser.width")
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width, eps=1e-4, momentum=0.05),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(width, channels, 3, padding=1, bias=False))
        self.dncnn = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.orthogonal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x - self.dncnn(x)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small residual U-Net: ``depth`` 2x down-samplings, skip connections, ``x + correction``.

    Widths double per level from ``width``. Any input size works (up-sampled features are resized
    to their skip connection), so 8x8 digits can use ``depth=2``. Same argument names as
    :class:`DnCNN`, so ``model.denoiser._target_=smoothcert.models.denoisers.UNet`` swaps it in.
    """

    def __init__(self, channels: int = 3, depth: int = 2, width: int = 32) -> None:
        super().__init__()
        channels = check_count(channels, "model.denoiser.channels")
        width = check_count(width, "model.denoiser.width")
        levels = check_count(depth, "model.denoiser.depth")
        widths = [width * 2**i for i in range(levels + 1)]
        self.encoders = nn.ModuleList(
            [_block(channels, widths[0])]
            + [_block(widths[i], widths[i + 1]) for i in range(levels)]
        )
        self.ups = nn.ModuleList(
            [nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(levels)]
        )
        self.decoders = nn.ModuleList([_block(2 * widths[i], widths[i]) for i in range(levels)])
        self.head = nn.Conv2d(widths[0], channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        h = x
        for i, encoder in enumerate(self.encoders):
            h = encoder(h if i == 0 else F.max_pool2d(h, 2, ceil_mode=True))
            skips.append(h)
        h = skips.pop()
        for i in reversed(range(len(self.decoders))):
            skip = skips.pop()
            up = self.ups[i](h)
            if up.shape[-2:] != skip.shape[-2:]:
                up = F.interpolate(up, size=skip.shape[-2:], mode="nearest")
            h = self.decoders[i](torch.cat([up, skip], dim=1))
        return x + self.head(h)


class FrozenClassifier(nn.Module):
    """Wraps a classifier so it can never train: no gradients to its parameters, always eval mode.

    ``train(True)`` (as Lightning and ``Smooth`` call it) leaves this wrapper and everything inside
    in eval mode, so BatchNorm running statistics never change; inputs still get gradients.
    """

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenClassifier:
        """Ignores ``mode``: the classifier stays in eval mode."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x)


def denoiser_loss_terms(
    classifier: nn.Module, x: Tensor, denoised: Tensor, objective: str, stability_weight: float
) -> dict[str, Tensor]:
    """The denoised-smoothing losses for clean ``x`` and ``denoised = D(x + delta)``.

    ``objective`` is ``mse``, ``stability`` or ``mse+stability``. ``mse`` is the mean squared error
    to ``x``; ``stability`` is the cross-entropy of ``classifier(denoised)`` against the labels
    ``classifier`` gives to ``x`` (computed without gradients; no ground-truth labels are used).
    Returns the terms and their total under ``"loss"`` (mse + stability_weight * stability).
    """
    terms: dict[str, Tensor] = {}
    if "mse" in objective:
        terms["mse"] = F.mse_loss(denoised, x)
    if "stability" in objective:
        with torch.no_grad():
            target = classifier(x).argmax(dim=1)
        terms["stability"] = F.cross_entropy(classifier(denoised), target)
    loss = terms.get("mse", 0.0) + stability_weight * terms.get("stability", 0.0)
    return {"loss": loss, **terms}


class DenoisedClassifier(nn.Module):
    """``f(D(x))``: a trainable denoiser in front of a frozen classifier; takes [0, 1] pixels.

    This is the base classifier that denoised smoothing certifies (``Smooth(DenoisedClassifier)``).
    """

    def __init__(self, denoiser: nn.Module, classifier: FrozenClassifier) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.denoiser(x))


def _mismatch(classifier: nn.Module, state: dict[str, Tensor]) -> str:
    """A short description of how ``state`` does not fit ``classifier`` ('' when it fits)."""
    expected = classifier.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [k for k in expected if k in state and expected[k].shape != state[k].shape]
    parts = [
        f"{what} {keys[0]}" + (f" (+{len(keys) - 1} more)" if len(keys) > 1 else "")
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape of", shapes))
        if keys
    ]
    return "; ".join(parts)


def read_checkpoint(path: str | None, setting: str, task: str) -> dict[str, Any]:
    """The checkpoint at ``path`` if it is a ``task`` checkpoint written by this project.

    Raises:
        ConfigError: one line, if the path is unset, missing or unreadable, or ``task`` differs.
    """
    how = f"pass {setting}=PATH to a checkpoints/last.ckpt written by train.py"
    require(bool(path), f"{setting} is not set: {how} (e.g. +experiment=digits_clean)")
    require(Path(str(path)).is_file(), f"{setting}={path} is not a file: {how}")
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file: pickle, zip or torch errors
        raise ConfigError(
            f"{setting}={path} could not be read as a checkpoint ({type(error).__name__}): {how}"
        ) from None
    meta = checkpoint.get("smoothcert") if isinstance(checkpoint, dict) else None
    require(
        isinstance(meta, dict) and meta.get("task") == task,
        f"{setting}={path} is not a {task} checkpoint written by train.py: {how}",
    )
    return checkpoint


def load_state(module: nn.Module, state: dict[str, Tensor], prefix: str, message: str) -> None:
    """Loads the ``prefix``-ed entries of ``state`` into ``module``, strictly.

    Raises:
        ConfigError: ``message`` plus what does not fit (missing, unexpected, shapes).
    """
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    problem = _mismatch(module, own)
    require(not problem, f"{message} ({problem})")
    module.load_state_dict(own)


def load_classifier(
    path: str | None, net: nn.Module, setting: str, num_classes: int, channels: int, dataset: str
) -> tuple[NormalizedClassifier, dict[str, Any]]:
    """Rebuilds the classifier saved by ``train.py`` at ``path`` on ``net`` (its architecture).

    Normalization and ``cifar_stem`` come from the checkpoint (``checkpoint["smoothcert"]`` and
    its hyper-parameters), the weights from its ``model.*`` state. Returns the classifier (on the
    CPU, train mode untouched) and the checkpoint's ``smoothcert`` metadata.

    Raises:
        ConfigError: one line, if the path is unset, missing or unreadable, is not a classification
            checkpoint, or does not fit this run (classes, channels, dataset, architecture).
    """
    checkpoint = read_checkpoint(path, setting, "classification")
    meta = checkpoint["smoothcert"]
    require(
        int(meta["num_classes"]) == int(num_classes),
        f"{setting}={path} has {meta['num_classes']} classes but data has {num_classes}: "
        f"use a classifier trained on this dataset",
    )
    mean, std = meta["normalization"]["mean"], meta["normalization"]["std"]
    require(
        len(mean) == int(channels),
        f"{setting}={path} takes {len(mean)}-channel inputs but data has {channels} channels",
    )
    trained_on = meta.get("dataset") or ""
    require(
        not trained_on or not dataset or trained_on == dataset,
        f"{setting}={path} was trained on {trained_on} but this run uses data={dataset} "
        "(another input shape): use a classifier trained on this dataset",
    )
    cifar_stem = bool(checkpoint.get("hyper_parameters", {}).get("cifar_stem", False))
    classifier = NormalizedClassifier(net, mean, std, cifar_stem=cifar_stem)
    message = (
        f"{setting}={path} does not fit the configured architecture: set the model's "
        "classifier_net/surrogate_net to the network that checkpoint was trained with"
    )
    load_state(classifier, checkpoint["state_dict"], "model.", message)
    return classifier, meta


def load_denoiser(path: str, denoiser: nn.Module, setting: str) -> None:
    """Loads into ``denoiser`` the denoiser of a checkpoint written by the denoiser module.

    Raises:
        ConfigError: one line, if the file is unreadable, not a denoiser checkpoint, or its
            denoiser has another architecture.
    """
    checkpoint = read_checkpoint(path, setting, "denoised_classification")
    message = f"{setting}={path} holds a denoiser of another architecture than model.denoiser"
    load_state(denoiser, checkpoint["state_dict"], "model.denoiser.", message)
