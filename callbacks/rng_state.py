"""Keeps the random number generators' states in every checkpoint, so resumed training continues
the same random stream (training noise, shuffling, augmentation) as an uninterrupted run."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from pytorch_lightning import Callback
from typing_extensions import override


def collect_rng_states() -> dict[str, Any]:
    """The states of torch's CPU (and CUDA) generators, numpy's and Python's, as tensors and plain
    Python values only (checkpoints still load with ``torch.load(weights_only=True)``)."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, [int(k) for k in keys], int(position), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restores what ``collect_rng_states`` returned; CUDA states only onto as many devices."""
    torch.set_rng_state(states["torch"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = states.get("torch.cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class RngStateInCheckpoint(Callback):
    """Saves the generators' states with every checkpoint and restores them when ``fit`` resumes
    from one (``python train.py ckpt_path=...``).

    Lightning restores weights, optimizer, scheduler and loop counters but not these states, so
    without this callback the resumed epochs draw other training noise and another shuffling
    order than an uninterrupted run. Our checkpoints are written at the end of an epoch (after
    validation); the next draw of an uninterrupted run is the next epoch's shuffling, and the
    resumed run makes that same draw first (Lightning's sanity check runs with isolated states),
    so both continue identically on one device. Not restored: the states inside persistent
    dataloader workers (``data.num_workers > 0``), and with several devices every rank restores
    rank 0's states (all ranks start from the same seed).
    """

    @override
    def state_dict(self) -> dict[str, Any]:
        return collect_rng_states()

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_rng_states(state_dict)
