"""Base classifiers: normalization as first layer, a small digits CNN, timm with a CIFAR stem."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from smoothcert.errors import ConfigError
from smoothcert.models.normalize import Normalize as Normalize  # re-exported: its old home
from smoothcert.models.normalize import NormalizedNet


class NormalizedClassifier(NormalizedNet):
    """A classifier that takes [0, 1] pixels: ``net(normalize(x))``, with ``net``'s ImageNet stem
    replaced by a CIFAR one if ``cifar_stem`` (see ``adapt_cifar_stem``).

    Noise is added in pixel space, so the normalization must live inside the model.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        cifar_stem: bool = False,
    ) -> None:
        super().__init__(net, mean, std)
        if cifar_stem:
            self.net = adapt_cifar_stem(net)


def adapt_cifar_stem(net: nn.Module) -> nn.Module:
    """Replaces a ResNet's ImageNet stem (7x7/2 conv + max-pool) by a 3x3/1 conv for 32x32 inputs.

    Works for timm's ResNet family (``conv1`` + ``maxpool``); raises ConfigError otherwise.
    """
    conv = getattr(net, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(net, "maxpool"):
        raise ConfigError(
            f"model.cifar_stem=true needs a ResNet-style timm model (conv1 + maxpool), got "
            f"{type(net).__name__}: set model.cifar_stem=false"
        )
    net.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 single-channel digits: three 3x3 convolutions (the last two strided)
    and a two-layer head; about 58k parameters and 0.2M multiply-adds per image at width 16, so
    certification with n = 10,000 runs at tens of thousands of samples per second on a CPU.

    ``stem_stride=2`` strides the first convolution too, for larger inputs (32x32 digits32:
    about 4x fewer multiply-adds than stride 1, which rotation smoothing's many samples need)."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, width: int = 16, stem_stride: int = 1
    ) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(
            *block(in_channels, width, stem_stride),
            *block(width, 2 * width, 2),
            *block(2 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * width, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
