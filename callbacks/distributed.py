"""Collecting per-rank results of sharded certification."""

from __future__ import annotations

import torch
from pytorch_lightning import Trainer


def gather_packed(trainer: Trainer, packed: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's 1-D ``packed`` tensor (any length, e.g. a record schema's ``pack``), on every
    rank, in rank order. Ranks first share their lengths, then all-gather their tensors padded to
    the longest, so shards of any size (an empty one included) travel in two collectives."""
    if trainer.world_size == 1:
        return [packed]
    device = trainer.strategy.root_device
    length = torch.tensor([packed.numel()], dtype=torch.int64, device=device)
    lengths = trainer.strategy.all_gather(length).reshape(-1).tolist()
    padded = torch.zeros(max(1, *lengths), dtype=packed.dtype, device=device)
    padded[: packed.numel()] = packed.to(device)
    gathered = trainer.strategy.all_gather(padded).reshape(len(lengths), -1).cpu()
    return [gathered[rank, :size] for rank, size in enumerate(lengths)]
