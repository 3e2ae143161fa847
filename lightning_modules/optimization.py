"""Optimizer and scheduler set-up shared by the LightningModules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def optimizers_config(
    params: Iterable[torch.nn.Parameter],
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    scheduler_factory: Callable[..., Any] | None,
) -> Any:
    """What ``configure_optimizers`` returns: the optimizer over ``params`` (Hydra partials from
    the config), with its scheduler stepped once per epoch when one is configured."""
    optimizer = optimizer_factory(params=params)
    if scheduler_factory is None:
        return optimizer
    scheduler = scheduler_factory(optimizer=optimizer)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
