"""A PointNet part segmenter (Qi et al., 2017) in plain PyTorch, sized for CPUs.

There is no maintained pip package with PointNet++ that builds without CUDA (the common PyTorch
ports, e.g. yanx27/Pointnet_Pointnet2_pytorch, are repositories, not packages; torch-points3d is
archived; PyG's PointNet++ layers need torch-cluster for their sampling); so the base model here is
PointNet, written out. Paper 003 uses PointNet++ (MSG); PointNet is its simpler predecessor with
the same input, output and category-as-input contract.

Contract: ``model(x)`` with ``x [B, C, N]``: ``xyz`` (3 channels), the unit normals (3, if
``normals``) and a one-hot category code (``num_categories`` channels, the same on every point;
ShapeNet-part's protocol gives the category to the segmenter) -> part logits ``[B, num_parts, N]``.
With ``part_groups`` (the global part ids of each category) the logits of parts outside the
cloud's category are set to ``-1e4`` (finite, so the samplers' NaN/inf checks hold): the
prediction is the argmax over the category's parts, as the ShapeNet-part evaluation restricts it,
and training sees the same restriction. Only ``xyz`` is ever noised (``perturbation=xyz``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError

OUTSIDE = -1.0e4  # the logit of a part outside the cloud's category


def _mlp(widths: Sequence[int]) -> nn.Sequential:
    """Shared per-point layers: 1x1 convolutions, batch norm and ReLU between ``widths``."""
    layers: list[nn.Module] = []
    for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Conv1d(w_in, w_out, 1), nn.BatchNorm1d(w_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class TNet(nn.Module):
    """PointNet's input transform: a k x k matrix per cloud from its points (identity at start)."""

    def __init__(self, k: int = 3, width: int = 64) -> None:
        super().__init__()
        self.k = k
        self.features = _mlp([k, width, 2 * width])
        self.head = nn.Linear(2 * width, k * k)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, points: Tensor) -> Tensor:
        pooled = self.features(points).amax(dim=2)
        eye = torch.eye(self.k, device=points.device, dtype=pooled.dtype)
        return self.head(pooled).view(-1, self.k, self.k) + eye


class PointNetPartSegmenter(nn.Module):
    """PointNet for part segmentation: shared per-point MLP (``local``), a max-pooled global
    feature (``global_width``), then per point ``[local features, global feature, category]`` ->
    ``head`` -> ``num_parts`` logits. The global feature and the category enter the head's first
    layer through their own weights, computed once per cloud (the same sum as concatenating them
    to every point, at a fraction of the cost). ``input_transform``: PointNet's 3x3 T-Net on xyz
    (and the normals), off by default on CPUs."""

    def __init__(
        self,
        num_parts: int,
        num_categories: int,
        normals: bool = True,
        part_groups: Sequence[Sequence[int]] | None = None,
        local: Sequence[int] = (64, 128, 128),
        global_width: int = 512,
        head: Sequence[int] = (256, 128),
        input_transform: bool = False,
    ) -> None:
        super().__init__()
        self.num_parts, self.num_categories = int(num_parts), int(num_categories)
        self.normals = bool(normals)
        self.in_features = 6 if self.normals else 3
        self.transform = TNet(3) if input_transform else None
        self.local = nn.ModuleList()
        widths = [self.in_features, *local]
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            self.local.append(_mlp([w_in, w_out]))
        self.lift = _mlp([widths[-1], global_width])
        concat = sum(local)
        self.head_local = nn.Conv1d(concat, head[0], 1)
        self.head_cloud = nn.Linear(global_width + self.num_categories, head[0], bias=False)
        rest: list[nn.Module] = [nn.BatchNorm1d(head[0]), nn.ReLU(inplace=True)]
        if len(head) > 1:
            rest.append(_mlp(head))
        rest.append(nn.Conv1d(head[-1], self.num_parts, 1))
        self.head = nn.Sequential(*rest)
        allowed = torch.ones(self.num_categories, self.num_parts, dtype=torch.bool)
        if part_groups is not None:
            if len(part_groups) != self.num_categories:
                raise ConfigError(
                    f"model.net.part_groups has {len(part_groups)} groups for "
                    f"{self.num_categories} categories"
                )
            allowed.zero_()
            for category, parts in enumerate(part_groups):
                allowed[category, list(parts)] = True
        self.register_buffer("allowed", allowed)

    @property
    def channels(self) -> int:
        """The input channels the model expects: xyz, normals (if used), the category code."""
        return self.in_features + self.num_categories

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ConfigError(
                f"PointNet expects clouds [B, {self.channels}, N] (xyz, "
                f"{'normals, ' if self.normals else ''}{self.num_categories} category channels), "
                f"got {tuple(x.shape)}: match data.normals and the category count"
            )
        features, code = x[:, : self.in_features], x[:, self.in_features :].mean(dim=2)
        if self.transform is not None:
            matrix = self.transform(features[:, :3])
            parts = [torch.bmm(matrix.transpose(1, 2), features[:, i : i + 3]) for i in (0, 3)]
            features = torch.cat(parts[: self.in_features // 3], dim=1)
        kept = []
        for layer in self.local:
            features = layer(features)
            kept.append(features)
        cloud = self.lift(features).amax(dim=2)
        hidden = self.head_local(torch.cat(kept, dim=1))
        hidden = hidden + self.head_cloud(torch.cat([cloud, code], dim=1))[:, :, None]
        logits = self.head(hidden)
        category = code.argmax(dim=1)
        outside = ~self.allowed[category]  # [B, num_parts]
        return logits.masked_fill(outside[:, :, None], OUTSIDE)
