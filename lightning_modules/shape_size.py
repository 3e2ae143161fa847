"""A scalar regression target on the shapes: the size of the largest shape, read off the box
regressor as sqrt(area) of its box (in normalized units, so in [0, 1]), for median smoothing and
the expectation bound side by side."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_modules.box_regression import BoxRegressionModule


def box_size(boxes: Tensor) -> Tensor:
    """``[B, 1]``: sqrt(width * height) of boxes ``[B, 4]`` (0 for an empty box), in [0, 1] for
    boxes in normalized coordinates."""
    width = (boxes[:, 2] - boxes[:, 0]).clamp_min(0)
    height = (boxes[:, 3] - boxes[:, 1]).clamp_min(0)
    return torch.sqrt(width * height)[:, None]


class ShapeSizeModule(BoxRegressionModule):
    """The box regressor (trained as ``BoxRegressionModule``, so its checkpoints load here) whose
    base function for certification is the size ``box_size`` of its box: a real vector of one
    coordinate in [0, 1] (``output_kind`` "vector")."""

    output_kind = "vector"

    def structured_output(self, x: Tensor) -> Tensor:
        """The predicted size of the largest shape, ``[B, 1]`` in [0, 1]."""
        return box_size(self.model(x).float())

    def contract_fields(self) -> dict[str, Any]:
        return {**super().contract_fields(), "target_of": self.regression_target}

    @staticmethod
    def regression_target(target: Tensor) -> Tensor:
        """The ground-truth size from a dataset box target ``[4]``: ``[1]``."""
        return box_size(torch.as_tensor(target, dtype=torch.float32).reshape(1, 4))[0]
