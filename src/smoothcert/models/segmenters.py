"""Segmentation models: a timm encoder with an HRNetV2-style head, normalization as first layer
and inference at a scale (or several, with flips) with logits upsampled back to full resolution.
Weights are never downloaded. Per-pixel training regimes: ``smoothcert.regimes.segmentation``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothcert.errors import ConfigError
from smoothcert.models.normalize import NormalizedNet

# Targets the segmentation module hands to objectives use this for ignored pixels, which is
# F.cross_entropy's default ignore_index: classification objectives then work per pixel unchanged.
IGNORE = -100


class HRNetV2Head(nn.Module):
    """Upsamples every stage to the highest resolution, concatenates, then 1x1 conv + BN + ReLU and
    a 1x1 conv to the classes (the HRNetV2 segmentation head of Wang et al., 2019)."""

    def __init__(
        self, in_channels: Sequence[int], num_classes: int, mid_channels: int | None = None
    ):
        super().__init__()
        total = int(sum(in_channels))
        mid = int(mid_channels or total)
        self.fuse = nn.Sequential(
            nn.Conv2d(total, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)
        )
        self.classify = nn.Conv2d(mid, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        size = features[0].shape[-2:]
        upsampled = [features[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]
        ]
        return self.classify(self.fuse(torch.cat(upsampled, dim=1)))


class EncoderHeadSegmenter(nn.Module):
    """``encoder`` (a list of feature maps) -> ``head`` -> logits upsampled to the input size.

    An input whose sides are not multiples of the encoder's largest stride (HRNet's branches fuse
    only at exact multiples; PASCAL-Context's images have any size) is zero-padded at the bottom
    and right (the mean pixel, as HRNet pads at test time) and the logits cropped back; other
    inputs run unchanged."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        info = getattr(encoder, "feature_info", None)
        self.stride = int(info.reduction()[-1]) if info is not None else 1

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pad_h, pad_w = (-s % self.stride for s in size)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self.head(self.encoder(x))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., : size[0], : size[1]]


def local_pretrained_file(model_name: str) -> str:
    """Path of timm's pretrained weights for ``model_name`` if they are already on this machine
    (Hugging Face cache or torch hub cache); ConfigError otherwise. Never downloads."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is not None and cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            path = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(path, str):
                return path
    if cfg is not None and cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if path.is_file():
            return str(path)
    raise ConfigError(
        f"pretrained weights for {model_name} are not available locally (nothing is downloaded): "
        "put them in the Hugging Face or torch hub cache, pass model.net.weights=PATH, or set "
        "model.net.pretrained=false"
    )


def timm_segmenter(
    model_name: str,
    num_classes: int,
    pretrained: bool = False,
    weights: str | None = None,
    in_chans: int = 3,
    out_indices: Sequence[int] | None = None,
    head_channels: int | None = None,
    **timm_kwargs,
) -> EncoderHeadSegmenter:
    """A timm encoder (``features_only=True``; channels from its ``feature_info``) with an
    HRNetV2 head. ``weights`` (a local file) or ``pretrained`` (cached weights only) initialize
    the encoder; a missing file is a one-line ConfigError, never a download."""
    import timm

    kwargs = dict(timm_kwargs, features_only=True, in_chans=in_chans)
    if out_indices is not None:
        kwargs["out_indices"] = tuple(int(i) for i in out_indices)
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"model.net.weights={weights} is not a file: give a local weights file")
    if weights is not None or pretrained:
        kwargs["pretrained_cfg_overlay"] = {"file": weights or local_pretrained_file(model_name)}
    encoder = timm.create_model(model_name, pretrained=weights is not None or pretrained, **kwargs)
    head = HRNetV2Head(encoder.feature_info.channels(), num_classes, head_channels)
    return EncoderHeadSegmenter(encoder, head)


class NormalizedSegmenter(NormalizedNet):
    """A segmentation model that takes [0, 1] pixels: ``net(normalize(x))`` (noise is added in
    pixel space, so normalization lives inside the model)."""


def check_scales(scales: float | Sequence[float], name: str = "scale") -> tuple[float, ...]:
    """Scales as a tuple of positive floats (one or several for multi-scale inference)."""
    values = tuple(float(s) for s in (scales if isinstance(scales, Sequence) else [scales]))
    if not values or any(not 0 < s <= 4 for s in values):
        raise ConfigError(f"{name}={scales} must be a scale in (0, 4] or a list of them, e.g. 0.5")
    return values


class ScaledInference(nn.Module):
    """Runs ``model`` on the input resized by each scale (and mirrored if ``flip``) and returns
    logits ``[B, K, H, W]`` at the input's full resolution. With one view these are the model's
    upsampled logits; with several, the log of the averaged softmax probabilities. Holds no
    parameters of its own (wraps the module's model without copying it)."""

    def __init__(self, model: nn.Module, scales: float | Sequence[float] = 1.0, flip: bool = False):
        super().__init__()
        self.model, self.scales, self.flip = model, check_scales(scales), bool(flip)

    def _view(self, x: Tensor, scale: float, mirror: bool) -> Tensor:
        size = x.shape[-2:]
        if scale != 1.0:
            scaled = [max(1, round(s * scale)) for s in size]
            x = F.interpolate(x, size=scaled, mode="bilinear", align_corners=False)
        logits = self.model(x.flip(-1) if mirror else x)
        logits = logits.flip(-1) if mirror else logits
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        views = [(s, m) for s in self.scales for m in ((False, True) if self.flip else (False,))]
        if len(views) == 1:
            return self._view(x, *views[0])
        probs = sum(self._view(x, s, m).float().softmax(dim=1) for s, m in views)
        return torch.log(probs / len(views))
