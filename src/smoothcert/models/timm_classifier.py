"""A timm classifier whose pretrained weights come from this machine only: a file
(``weights=PATH``) or timm's local caches (``pretrained=True``). Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from smoothcert.errors import ConfigError
from smoothcert.models.segmenters import local_pretrained_file


def timm_classifier(
    model_name: str,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool = False,
    weights: str | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """``timm.create_model(model_name, num_classes=..., in_chans=...)``, initialized from
    ``weights`` (a local file: a state dict, ``.pth``/``.bin``/``.safetensors``) or, with
    ``pretrained``, from timm's weights already in the Hugging Face or torch hub cache.

    Either way timm loads them as its pretrained weights: a head for another number of classes is
    left freshly initialized, and the first convolution is adapted to ``in_chans``. A missing file,
    uncached weights, or weights of another architecture are a one-line ConfigError, raised
    before anything is trained, and never a download (the cache lookup is offline).
    """
    import timm

    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"model.net.weights={weights} is not a file: give a local weights file")
    kwargs = dict(timm_kwargs, num_classes=num_classes, in_chans=in_chans)
    if weights is not None or pretrained:
        kwargs["pretrained_cfg_overlay"] = {"file": weights or local_pretrained_file(model_name)}
    try:
        return timm.create_model(model_name, pretrained=weights is not None or pretrained, **kwargs)
    except RuntimeError as error:  # load_state_dict: missing or unexpected keys, other shapes
        if weights is None:
            raise
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(
            f"model.net.weights={weights} does not fit model.net.model_name={model_name} "
            f"({first}): give weights of that architecture, or its name"
        ) from error
