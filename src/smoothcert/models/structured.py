"""Base models with structured outputs for center smoothing: an autoencoder and a box regressor.

Both take ``[0, 1]`` pixels after the module's ``Normalize`` layer (see ``NormalizedNet``), so the
networks here never see raw pixels: the LightningModules wrap them, as for the classifiers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smoothcert.errors import check_count, require
from smoothcert.models.normalize import NormalizedNet as NormalizedNet  # re-exported


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def _deconv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    """A transposed convolution that doubles the resolution exactly (kernel 4, stride 2, pad 1)."""
    return [
        nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class ConvAutoencoder(nn.Module):
    """Dimensionality reduction as in Kumar and Goldstein's Section 5.3: a convolutional encoder
    down to ``latent_dim`` numbers and a decoder of transposed convolutions back to the image,
    with batch norm between the layers and a sigmoid, so reconstructions lie in [0, 1].

    Encoder: 3x3 conv (stride 1), two strided 3x3 convs (resolution / 4), linear to the latent.
    Decoder: linear, two transposed convs (resolution x 4), 3x3 conv to ``in_channels``, sigmoid.
    At the defaults (8x8 digits, width 16, latent 32) about 35k parameters, 0.25M multiply-adds.

    Args:
        in_channels: image channels (1 for digits).
        image_size: height = width of the images; a multiple of 4.
        latent_dim: size of the bottleneck.
        width: channels of the first layer (doubled once on the way down).
    """

    def __init__(
        self, in_channels: int = 1, image_size: int = 8, latent_dim: int = 32, width: int = 16
    ) -> None:
        super().__init__()
        in_channels = check_count(in_channels, "model.net.in_channels")
        width = check_count(width, "model.net.width")
        latent_dim = check_count(latent_dim, "model.net.latent_dim")
        require(
            int(image_size) >= 4 and int(image_size) % 4 == 0,
            f"model.net.image_size={image_size} must be a positive multiple of 4",
        )
        side = int(image_size) // 4
        bottom = (2 * width, side, side)
        self.encoder = nn.Sequential(
            *_conv_bn_relu(in_channels, width, 1),
            *_conv_bn_relu(width, 2 * width, 2),
            *_conv_bn_relu(2 * width, 2 * width, 2),
            nn.Flatten(),
            nn.Linear(2 * width * side * side, latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 2 * width * side * side, bias=False),
            nn.Unflatten(1, bottom),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            *_deconv_bn_relu(2 * width, width),
            *_deconv_bn_relu(width, width),
            nn.Conv2d(width, in_channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def encode(self, x: Tensor) -> Tensor:
        """The latent code ``[B, latent_dim]`` of normalized images."""
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


class AddCoordinates(nn.Module):
    """Appends two channels holding each pixel's x and y position in [-1, 1] (CoordConv): with
    them a convolution followed by global pooling can measure where things are."""

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        ys = torch.linspace(-1, 1, height, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1, 1, width, device=x.device, dtype=x.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        coordinates = torch.stack([grid_x, grid_y]).expand(batch, 2, height, width)
        return torch.cat([x, coordinates], dim=1)


def sort_box_corners(raw: Tensor) -> Tensor:
    """``[B, 4]`` numbers -> boxes ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``:
    columns 0 and 2 sorted as the x pair, 1 and 3 as the y pair (differentiable: min and max)."""
    xs = torch.sort(raw[:, 0::2], dim=1).values
    ys = torch.sort(raw[:, 1::2], dim=1).values
    return torch.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], dim=1)


class BoxRegressor(nn.Module):
    """A small CNN that regresses one box ``(x1, y1, x2, y2)`` in normalized [0, 1] coordinates.

    Coordinate channels and a 3x3 conv, ``depth`` strided 3x3 convs (stride ``2**depth``, channels
    doubling), three dilated 3x3 convs (dilation 1, 2, 4) for context, and a 1x1 conv to four
    heatmaps, one per box edge. Each edge is the expectation of the cell centres' x (left, right)
    or y (top, bottom) coordinate under its heatmap's spatial softmax (soft-argmax, as in DSNT),
    so every coordinate lies strictly inside (0, 1); ``sort_box_corners`` then orders them.
    Global pooling followed by a linear layer learned only a near-constant box within a CPU
    budget on the shapes data (mean IoU 0.23 against 0.5 for these heads after 2000 steps).
    The output is never an empty box except when two coordinates tie exactly.

    Args:
        in_channels: image channels.
        width: channels of the first layer.
        depth: number of stride-2 convolutions (the heatmaps have 1 / 2**depth the resolution).
    """

    def __init__(self, in_channels: int = 3, width: int = 16, depth: int = 2) -> None:
        super().__init__()
        in_channels = check_count(in_channels, "model.net.in_channels")
        width, depth = check_count(width, "model.net.width"), check_count(depth, "model.net.depth")
        layers: list[nn.Module] = [AddCoordinates(), *_conv_bn_relu(in_channels + 2, width, 1)]
        channels = width
        for _ in range(depth):
            layers += _conv_bn_relu(channels, 2 * channels, 2)
            channels *= 2
        for dilation in (1, 2, 4):
            layers += [
                nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.heatmaps = nn.Conv2d(channels, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        heat = self.heatmaps(self.features(x)).float()  # [B, 4, h, w]: left, top, right, bottom
        batch, _, height, width = heat.shape
        weights = heat.flatten(2).softmax(dim=-1).view(batch, 4, height, width)
        xs = (torch.arange(width, device=x.device, dtype=heat.dtype) + 0.5) / width
        ys = (torch.arange(height, device=x.device, dtype=heat.dtype) + 0.5) / height
        expected_x = (weights.sum(dim=2) * xs).sum(dim=-1)  # [B, 4]
        expected_y = (weights.sum(dim=3) * ys).sum(dim=-1)
        edges = torch.stack(
            [expected_x[:, 0], expected_y[:, 1], expected_x[:, 2], expected_y[:, 3]], dim=1
        )
        return sort_box_corners(edges)
