"""Module modes shared by every layer that runs a model it does not own (the sampler, the
certifiers, the attacks, the regimes, the distances' feature networks): low enough that each can
import it without reaching up."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["eval_mode"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Puts ``model`` in eval mode (independent draws, no batch statistics), then restores it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
