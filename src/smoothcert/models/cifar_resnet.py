"""The CIFAR ResNets of Cohen et al.'s randomized-smoothing code (``cifar_resnet20``,
``cifar_resnet110``), which SmoothAdv, consistency training and SmoothMix reuse.

Depth ``6n + 2``: a 3x3 convolution to 16 channels, three stages of ``n`` basic blocks at widths
16, 32 and 64 (the first block of stages 2 and 3 halves the resolution and projects its shortcut
with a 1x1 convolution and BatchNorm), global average pooling and a linear layer. Parameter names
follow those repositories' state dicts (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer2.0.downsample.0``, ``fc``), so their checkpoints load strictly. No normalization inside:
wrap it (``NormalizedClassifier``) as every smoothcert classifier is.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from smoothcert.errors import ConfigError, check_count

WIDTHS = (16, 32, 64)


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity (or 1x1-projected) shortcut, ReLU after the sum."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet-``depth`` for 32x32 images (``depth`` = 6n + 2: 20, 32, 44, 56, 110, ...).

    ResNet-110 has 1.7M parameters and about 0.25 GFLOPs per 32x32 image; ResNet-20 0.27M.
    """

    def __init__(self, depth: int = 110, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        depth = check_count(depth, "model.net.depth", minimum=8)
        if (depth - 2) % 6:
            raise ConfigError(
                f"model.net.depth={depth} is not 6n + 2: use 20, 32, 44, 56 or 110 (Cohen et al. "
                "release 110)"
            )
        blocks = (depth - 2) // 6
        self.conv1 = _conv3x3(check_count(in_channels, "model.net.in_channels"), WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        c_in = WIDTHS[0]
        for stage, width in enumerate(WIDTHS, start=1):
            stride = 1 if stage == 1 else 2
            layers = [BasicBlock(c_in if i == 0 else width, width, stride if i == 0 else 1)
                      for i in range(blocks)]  # fmt: skip
            self.add_module(f"layer{stage}", nn.Sequential(*layers))
            c_in = width
        self.fc = nn.Linear(WIDTHS[-1], check_count(num_classes, "model.net.num_classes"))
        for module in self.modules():  # He initialization (fan-out) as in the reference
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
