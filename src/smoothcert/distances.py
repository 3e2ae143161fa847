"""Output distances for center smoothing, each with its relaxed-triangle constant gamma.

Center smoothing needs a distance d that is symmetric and satisfies d(a, c) <= gamma (d(a, b) +
d(b, c)); a (pseudo)metric has gamma = 1, squared distances (cosine, squared feature-space
distances) have gamma = 2. The certificate grows with gamma: eps_out = gamma (1 + 2 gamma) R.
Every subclass declares its ``gamma`` in its class body (a missing or invalid one is a TypeError
at class definition): a wrong gamma makes every certificate unsound, so it has no default.

Every distance works in two steps so that distance matrices can be computed in chunks:
``embed(outputs)`` turns a batch of outputs ``[N, ...]`` into a per-sample tensor ``[N, D]``, then
``pairwise(a, b)`` gives the ``[len(a), len(b)]`` matrix between embedded batches (fast, used to
rank the candidate centers) and ``paired(a, b)`` the ``[N]`` distances between rows ``a[i]`` and
``b[i]`` (computed directly from the differences, so correct to float32 rounding of the distance
itself: used for every radius the certificate rests on). Calling a distance on two output batches
gives their paired distances.

The squared-Euclidean distances (l2, cosine, feature) form ``pairwise`` from matrix products,
||u||^2 + ||v||^2 - 2 u.v. In float32 that cancels catastrophically when the outputs' norm is
large against their differences (outputs of norm 3,200 one apart: every distance is noise of size
about 2). So the rows are first moved to a common reference (the first row of ``b``: distances
are translation invariant) and the products are taken in float64: the rounding is then relative
to the outputs' spread around each other, not to their norm, and identical outputs are 0 apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothcert.errors import ConfigError, require
from smoothcert.modes import eval_mode


def squared_euclidean_matrix(a: Tensor, b: Tensor) -> Tensor:
    """``[len(a), len(b)]`` squared Euclidean distances by matrix products, without cancellation
    against the rows' norm: both sides are moved to ``b[0]`` and multiplied in float64 (float32
    result). The error is about 1e-16 D times the squared spread of the rows around ``b[0]``."""
    reference = b[:1].double()
    u, v = a.double() - reference, b.double() - reference
    squared = u.square().sum(1)[:, None] + v.square().sum(1)[None, :] - 2 * (u @ v.T)
    return squared.clamp_min_(0.0).float()


class Distance:
    """Base class; the default embedding is the flattened output in float32.

    A subclass must declare ``gamma`` (>= 1) in its class body, its relaxed-triangle constant
    d(a, c) <= gamma (d(a, b) + d(b, c)): 1 for a (pseudo)metric, 2 for a squared Euclidean
    distance. Inheriting it is not enough (a new ``paired`` can change it), so an undeclared gamma
    raises TypeError when the class is defined. ``pairwise`` defaults to ``paired`` on every pair
    (correct, not fast); ``modules()`` lists the networks the distance calls, which certifiers run
    in eval mode.
    """

    name = "distance"
    gamma: float

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "gamma" not in cls.__dict__:
            raise TypeError(
                f"Distance subclass {cls.__name__} must declare gamma in its class body: its "
                "relaxed-triangle constant, d(a, c) <= gamma (d(a, b) + d(b, c)); 1.0 for a "
                "(pseudo)metric, 2.0 for a squared Euclidean distance. Center smoothing's "
                "certificate eps_out = gamma (1 + 2 gamma) R is unsound with a gamma too small"
            )
        gamma = cls.__dict__["gamma"]
        if not isinstance(gamma, (int, float)) or not 1.0 <= float(gamma) < float("inf"):
            raise TypeError(f"{cls.__name__}.gamma={gamma!r} must be a finite number >= 1")

    def embed(self, outputs: Tensor) -> Tensor:
        return outputs.reshape(outputs.shape[0], -1).float()

    def modules(self) -> tuple[nn.Module, ...]:
        """The networks this distance evaluates (run in eval mode by the certifiers)."""
        return ()

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        rows = [self.paired(row.expand(len(b), *row.shape), b) for row in a]
        return torch.stack(rows) if rows else a.new_zeros(0, len(b))

    def paired(self, a: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """Distances between ``x[i]`` and ``y[i]`` (a batch of one is broadcast)."""
        ex, ey = self.embed(x), self.embed(y)
        if ex.shape[0] != ey.shape[0]:
            require(1 in (ex.shape[0], ey.shape[0]), f"batches of {len(ex)} and {len(ey)} differ")
            size = max(len(ex), len(ey))
            ex, ey = ex.expand(size, *ex.shape[1:]), ey.expand(size, *ey.shape[1:])
        return self.paired(ex, ey)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gamma={self.gamma})"


class L2Distance(Distance):
    """Euclidean distance between flattened outputs."""

    name = "l2"
    gamma = 1.0

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return squared_euclidean_matrix(a, b).sqrt_()

    def paired(self, a: Tensor, b: Tensor) -> Tensor:
        return (a - b).norm(dim=1)


class L1Distance(Distance):
    """Sum of absolute differences between flattened outputs."""

    name = "l1"
    gamma = 1.0

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cdist(a, b, p=1.0)

    def paired(self, a: Tensor, b: Tensor) -> Tensor:
        return (a - b).abs().sum(dim=1)


class TotalVariationDistance(L1Distance):
    """TV(a - b) for images ``[N, C, H, W]`` or ``[N, H, W]`` (the paper's Section 5.3).

    TV(z) = sum over i < H-1, j < W-1 of ||z[i, j] - z[i+1, j]||_1 + ||z[i, j] - z[i, j+1]||_1,
    channels combined by the l1 norm. TV is a seminorm, so TV(a - b) is a pseudometric; as it is
    linear in z before the l1 norm, the embedding is the vector of neighbour differences and the
    distance is l1 between embeddings.
    """

    name = "tv"
    gamma = 1.0

    def embed(self, outputs: Tensor) -> Tensor:
        z = outputs.float()
        if z.dim() == 3:
            z = z.unsqueeze(1)
        require(z.dim() == 4, f"total variation needs images [N, C, H, W], got {tuple(z.shape)}")
        corner = z[:, :, :-1, :-1]
        down, right = corner - z[:, :, 1:, :-1], corner - z[:, :, :-1, 1:]
        return torch.cat([down.flatten(1), right.flatten(1)], dim=1)


class CosineDistance(Distance):
    """1 - cos(a, b) = ||a/|a| - b/|b|||^2 / 2: a squared distance, relaxed triangle with gamma 2.

    An all-zero output embeds to the zero vector (distance 1/2 to every unit vector, 0 to itself),
    which keeps the formula a squared Euclidean distance and so keeps gamma = 2 valid.
    """

    name = "cosine"
    gamma = 2.0

    def embed(self, outputs: Tensor) -> Tensor:
        return F.normalize(super().embed(outputs), dim=1)

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return squared_euclidean_matrix(a, b) / 2

    def paired(self, a: Tensor, b: Tensor) -> Tensor:
        return (a - b).square().sum(dim=1) / 2


class FeatureDistance(Distance):
    """sum_i w_i (phi(a)_i - phi(b)_i)^2 over a user-supplied feature network phi (LPIPS-like).

    A weighted squared Euclidean distance in feature space: symmetric, relaxed triangle with
    gamma = 2 (the paper's Section 5.2). ``weights`` (non-negative, one per feature) default to 1.
    """

    name = "feature"
    gamma = 2.0

    def __init__(self, network: nn.Module, weights: Tensor | None = None) -> None:
        self.network = network
        if weights is not None:
            require(bool((torch.as_tensor(weights) >= 0).all()), "feature weights must be >= 0")
            weights = torch.as_tensor(weights, dtype=torch.float32).sqrt()
        self.root_weights = weights

    def modules(self) -> tuple[nn.Module, ...]:
        return (self.network,)

    def embed(self, outputs: Tensor) -> Tensor:
        """Features of each output on its own: the network runs in eval mode (then restored), so
        BatchNorm or dropout neither couple the outputs of a batch nor change its statistics."""
        with eval_mode(self.network), torch.inference_mode():
            features = self.network(outputs.float()).reshape(outputs.shape[0], -1).float()
        if self.root_weights is not None:
            features = features * self.root_weights.to(features.device)
        return features

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return squared_euclidean_matrix(a, b)

    def paired(self, a: Tensor, b: Tensor) -> Tensor:
        return (a - b).square().sum(dim=1)


def _jaccard(intersection: Tensor, size_a: Tensor, size_b: Tensor) -> Tensor:
    """1 - |A n B| / |A u B|, with two empty sets at distance 0."""
    union = size_a + size_b - intersection
    return torch.where(union > 0, 1 - intersection / union.clamp_min(1e-12), 0.0)


class BoxJaccardDistance(Distance):
    """1 - IoU of axis-aligned boxes ``[N, 4]`` = (x1, y1, x2, y2); a metric on sets.

    A box with x2 <= x1 or y2 <= y1 is the empty set ("no box"): at distance 1 from any non-empty
    box and 0 from another empty one, as the paper treats a missing detection.
    """

    name = "jaccard_box"
    gamma = 1.0

    def embed(self, outputs: Tensor) -> Tensor:
        shape = tuple(outputs.shape)
        require(len(shape) == 2 and shape[1] == 4, f"boxes must be [N, 4], got {shape}")
        return outputs.float()

    @staticmethod
    def _area(box: Tensor) -> Tensor:
        return (box[..., 2] - box[..., 0]).clamp_min(0) * (box[..., 3] - box[..., 1]).clamp_min(0)

    def _distance(self, a: Tensor, b: Tensor) -> Tensor:
        width = torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])
        height = torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])
        intersection = width.clamp_min(0) * height.clamp_min(0)
        area_a, area_b = self._area(a), self._area(b)
        intersection = torch.where((area_a > 0) & (area_b > 0), intersection, 0.0)
        return _jaccard(intersection, area_a, area_b)

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return self._distance(a[:, None, :], b[None, :, :])

    def paired(self, a: Tensor, b: Tensor) -> Tensor:
        return self._distance(a, b)


class LabelJaccardDistance(Distance):
    """Mean over classes of the Jaccard distance between the per-class pixel sets of two label maps.

    Label maps are ``[N, H, W]`` integers in ``0..num_classes-1``. A class absent from both maps
    contributes 0, so the mean of per-class metrics is itself a metric (gamma = 1).
    """

    name = "jaccard_labels"
    gamma = 1.0

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)
        require(self.num_classes >= 1, f"num_classes must be >= 1, got {num_classes}")

    def embed(self, outputs: Tensor) -> Tensor:
        labels = outputs.reshape(outputs.shape[0], -1)
        require(not labels.is_floating_point(), "label-map Jaccard needs integer label maps")
        outside = (labels < 0) | (labels >= self.num_classes)
        require(not bool(outside.any()), f"labels must lie in 0..{self.num_classes - 1}")
        return labels

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        total = torch.zeros(len(a), len(b), device=a.device)
        for c in range(self.num_classes):
            in_a, in_b = (a == c).float(), (b == c).float()
            intersection = in_a @ in_b.T
            total += _jaccard(intersection, in_a.sum(1)[:, None], in_b.sum(1)[None, :])
        return total / self.num_classes

    def paired(self, a: Tensor, b: Tensor) -> Tensor:
        total = torch.zeros(len(a), device=a.device)
        for c in range(self.num_classes):
            in_a, in_b = (a == c).float(), (b == c).float()
            total += _jaccard((in_a * in_b).sum(1), in_a.sum(1), in_b.sum(1))
        return total / self.num_classes


DISTANCES = {
    "l2": L2Distance,
    "l1": L1Distance,
    "tv": TotalVariationDistance,
    "cosine": CosineDistance,
    "feature": FeatureDistance,
    "jaccard_box": BoxJaccardDistance,
    "jaccard_labels": LabelJaccardDistance,
}


def build_distance(
    name: str | Distance,
    num_classes: int | None = None,
    feature_network: nn.Module | None = None,
    feature_weights: Tensor | None = None,
    setting: str = "distance",
) -> Distance:
    """The distance called ``name`` (a ``Distance`` passes through); one-line errors otherwise."""
    if isinstance(name, Distance):
        return name
    if name not in DISTANCES:
        known = ", ".join(DISTANCES)
        raise ConfigError(f"{setting}={name!r} is not a known distance; use one of {known}")
    if name == "jaccard_labels":
        if num_classes is None:
            raise ConfigError(f"{setting}=jaccard_labels needs the number of classes of the model")
        return LabelJaccardDistance(num_classes)
    if name == "feature":
        if feature_network is None:
            raise ConfigError(
                f"{setting}=feature needs a feature network: set certify.feature_network "
                "(a _target_ building an nn.Module)"
            )
        return FeatureDistance(feature_network, feature_weights)
    return DISTANCES[name]()
