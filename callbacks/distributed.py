"""Collecting per-rank results of sharded certification."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pytorch_lightning import Trainer


def gather_rows(trainer: Trainer, rows: Sequence[Sequence[float]], width: int, total: int):
    """Every rank's ``rows`` (lists of ``width`` floats, first field a non-negative index), on
    every rank. Shards of ``total`` items differ by at most one row, so each rank pads to
    ``ceil(total / world_size)`` rows with index -1 before an all-gather; float64 keeps indices
    and radii exact."""
    world = trainer.world_size
    if world == 1:
        return [list(row) for row in rows]
    length = max(1, -(-total // world))
    if len(rows) > length:
        raise ValueError(f"a rank holds {len(rows)} rows, more than its share {length}")
    table = torch.full((length, width), -1.0, dtype=torch.float64)
    if rows:
        table[: len(rows)] = torch.tensor([list(r) for r in rows], dtype=torch.float64)
    gathered = trainer.strategy.all_gather(table.to(trainer.strategy.root_device)).cpu()
    return [row for row in gathered.reshape(-1, width).tolist() if row[0] >= 0]
