"""Monte-Carlo sampling of a base classifier under any smoothing noise, counting on the device."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from smoothcert.noise import NoiseStream


def sample_class_counts(
    model: nn.Module,
    x: Tensor,
    num: int,
    num_classes: int,
    batch_size: int,
    stream: NoiseStream,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[Tensor, Tensor]:
    """Counts the base classifier's predictions on ``num`` noisy copies of one example.

    Args:
        model: base classifier mapping ``[B, C, H, W]`` in [0, 1] pixel space to logits ``[B, K]``.
        x: one example ``[C, H, W]`` on the model's device.
        num: number of noise samples.
        num_classes: K, the length of the returned count vector.
        batch_size: noisy copies per forward pass.
        stream: where the noise comes from (its next ``num`` samples are consumed).
        autocast_dtype: run the forward pass under autocast to this dtype (e.g. bfloat16 on GPU).
        channels_last: feed the batch in channels_last memory format.

    Returns:
        ``(counts, all_finite)``: int64 counts ``[K]`` and a bool scalar that is False if any
        logit was NaN or infinite, both on the model's device. Nothing is copied to the host, so
        the loop never waits for the device.
    """
    device = x.device
    counts = torch.zeros(num_classes, dtype=torch.long, device=device)
    all_finite = torch.ones((), dtype=torch.bool, device=device)
    ones = torch.ones(min(batch_size, num), dtype=torch.long, device=device)
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    remaining = num
    with torch.inference_mode(), autocast:
        while remaining > 0:
            this_batch = min(batch_size, remaining)
            batch = stream.take(this_batch).add_(x)
            if channels_last and batch.dim() == 4:
                batch = batch.contiguous(memory_format=torch.channels_last)
            logits = model(batch)
            if logits.dim() != 2 or logits.shape[1] != num_classes:
                raise ValueError(
                    f"the base classifier returned logits of shape {tuple(logits.shape)}, expected "
                    f"[batch, {num_classes}]: check num_classes against the model's output"
                )
            all_finite &= torch.isfinite(logits).all()
            counts.scatter_add_(0, logits.argmax(dim=1), ones[:this_batch])
            remaining -= this_batch
    return counts, all_finite
