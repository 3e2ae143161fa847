"""The Lipschitz-margin certificate: a deterministic l2 radius ``margin / (2 L)`` from the gap
between the top two logits and an upper bound L on the l2 Lipschitz constant of the logit map.

L is the product of per-layer constants of a chain of layers (traced with torch.fx):

- the input normalization ``(x - mean) / std``: ``max 1 / std``;
- ``Conv2d`` (with a directly following eval-mode ``BatchNorm2d`` folded in, the per-channel affine
  map it is in eval mode): the spectral norm of the *strided circular* convolution on the
  zero-padded input size, ``max_f ||K^(f)||_2`` over the 2-D DFT of the polyphase kernel (Sedghi
  et al. 2019 for stride 1). The layer's own operator is that circular convolution restricted to
  zero-padded inputs (an isometric embedding) and cropped (a contraction), so this is an upper
  bound up to float rounding, never an estimate from below;
- ``Linear``: the exact spectral norm (SVD, float64);
- ``BatchNorm`` alone (eval mode): ``max |gamma| / sqrt(var + eps)``;
- average pooling (``AvgPool``, ``AdaptiveAvgPool``): the same linear map on every channel, so
  the exact spectral norm of its one-channel matrix (SVD);
- ``ReLU``, ``LeakyReLU`` (slope <= 1), non-overlapping ``MaxPool2d``, ``Flatten``, ``Dropout``
  (eval), ``Identity``: 1.

Anything else (residual additions, attention, other activations) is refused with a ConfigError
naming the layer. The product is multiplied by ``1 + slack`` (1e-4): the model itself runs in
float32, whose rounding the exact float64 norms do not see (a dense layer's bound is attained).
``spectral_norm`` (power iteration, an estimate from below) is kept to check the bounds' tightness.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from smoothcert.errors import ConfigError
from smoothcert.models.classifiers import Normalize

__all__ = [
    "LipschitzBound",
    "conv_upper_bound",
    "lipschitz_bound",
    "lipschitz_radius",
    "pool_norm",
    "spectral_norm",
]

ONE_LIPSCHITZ = (nn.ReLU, nn.Flatten, nn.Dropout, nn.Identity)
LINEAR_POOLS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AvgPool1d, nn.AdaptiveAvgPool1d)
LEAVES = (Normalize, nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.LeakyReLU)
LEAVES += ONE_LIPSCHITZ + LINEAR_POOLS + (nn.MaxPool2d,)
SUPPORTED = (
    "Normalize, Conv2d, Linear, BatchNorm (eval), ReLU, LeakyReLU (slope <= 1), AvgPool, "
    "AdaptiveAvgPool, non-overlapping MaxPool2d, Flatten, Dropout, Identity in a chain"
)
ONE_LIPSCHITZ_FUNCTIONS = {torch.flatten, F.relu, torch.relu}


def spectral_norm(
    forward: Callable[[Tensor], Tensor],
    transpose: Callable[[Tensor], Tensor],
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    iterations: int = 20_000,
    tol: float = 1e-7,
) -> float:
    """The largest singular value of the linear map ``forward`` on inputs of ``shape`` (without
    the batch dimension), by power iteration on ``M = transpose(forward(.))``, in float64, from a
    random start. Stops when the eigen-residual ``||M v - rho v|| <= tol * rho`` (rho the Rayleigh
    quotient of the unit vector v). An estimate from below: callers add a slack."""
    v = torch.randn((1, *shape), generator=generator, dtype=torch.float64)
    v = v / v.norm()
    rho = 0.0
    for _ in range(iterations):
        w = transpose(forward(v))
        rho = float((w * v).sum())
        if rho <= 0.0:
            return 0.0
        residual = float((w - rho * v).norm())
        v = w / w.norm()
        if residual <= tol * rho:
            break
    return rho**0.5


def _conv_operator(conv: nn.Conv2d, scale: Tensor | None, shape: tuple[int, ...]):
    """``x -> scale * conv(x)`` without bias, and its transpose, on inputs of ``shape``."""
    weight = conv.weight.detach().double()
    if scale is not None:
        weight = weight * scale.double().view(-1, 1, 1, 1)
    options = {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation}
    options["groups"] = conv.groups
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ConfigError(
            f"certify=lipschitz: Conv2d with padding={conv.padding!r} mode={conv.padding_mode} is "
            "not supported (zero padding given as numbers only)"
        )
    # conv_transpose2d's output misses the last rows/columns the strided conv never read: with
    # in + 2p - d(k-1) - 1 = (out-1) s + r (0 <= r < s), its size is in - r, so output_padding r
    # (always < stride, as conv_transpose2d requires). Computed from the sizes, not by calling
    # conv_transpose2d without it, which fails when in - r <= 0 (a stride larger than the kernel
    # on a small input, e.g. k=2, stride 3, padding 1 on width 2).
    extra = tuple(
        (size + 2 * pad - dil * (k - 1) - 1) % step
        for size, pad, dil, k, step in zip(
            shape[1:],
            nn.modules.utils._pair(conv.padding),
            nn.modules.utils._pair(conv.dilation),
            weight.shape[2:],
            nn.modules.utils._pair(conv.stride),
            strict=True,
        )
    )

    def forward(x: Tensor) -> Tensor:
        return F.conv2d(x, weight, **options)

    def transpose(y: Tensor) -> Tensor:
        return F.conv_transpose2d(y, weight, output_padding=extra, **options)

    return forward, transpose


def conv_upper_bound(conv: nn.Conv2d, scale: Tensor | None, shape: tuple[int, ...]) -> float:
    """An upper bound on the l2 operator norm of ``x -> scale * conv(x)`` (no bias) on inputs of
    ``shape`` (C, H, W): the norm of the circular convolution on ``(H + 2 p_h) x (W + 2 p_w)``
    images (rounded up to a multiple of the stride), the largest singular value of the DFT of its
    polyphase kernel over all frequencies. Groups become a block-diagonal dense kernel and
    dilation a kernel with zeros between its taps."""
    weight = conv.weight.detach().double()
    if scale is not None:
        weight = weight * scale.double().view(-1, 1, 1, 1)
    c_out, c_in_group, kh, kw = weight.shape
    groups = conv.groups
    dense = weight.new_zeros(c_out, c_in_group * groups, kh, kw)
    per_group = c_out // groups
    for g in range(groups):
        rows, cols = (
            slice(g * per_group, (g + 1) * per_group),
            slice(g * c_in_group, (g + 1) * c_in_group),
        )
        dense[rows, cols] = weight[rows]
    dh, dw = nn.modules.utils._pair(conv.dilation)
    spread = dense.new_zeros(c_out, dense.shape[1], dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    spread[:, :, ::dh, ::dw] = dense
    ph, pw = nn.modules.utils._pair(conv.padding)
    sh, sw = nn.modules.utils._pair(conv.stride)
    # A strided circular convolution on N x N (N a multiple of the stride) is a plain one on the
    # N/s x N/s polyphase components of its input (x[s j + r] for each offset r: a permutation):
    # kernel K_r[m] = K[s m + r], with c_in s^2 input channels.
    kh_pad = -(-spread.shape[2] // sh) * sh
    kw_pad = -(-spread.shape[3] // sw) * sw
    spread = F.pad(spread, (0, kw_pad - spread.shape[3], 0, kh_pad - spread.shape[2]))
    c_in = spread.shape[1]
    phases = spread.view(c_out, c_in, kh_pad // sh, sh, kw_pad // sw, sw)
    phases = phases.permute(0, 1, 3, 5, 2, 4).reshape(c_out, c_in * sh * sw, kh_pad // sh, -1)
    grid = [max(shape[1] + 2 * ph, kh_pad), max(shape[2] + 2 * pw, kw_pad)]
    grid = (-(-grid[0] // sh), -(-grid[1] // sw))  # N / s, N the padded size rounded up to s
    spectrum = torch.fft.fft2(phases, s=grid).permute(2, 3, 0, 1)  # [h, w, c_out, c_in s^2]
    return float(torch.linalg.matrix_norm(spectrum, ord=2).max())


def pool_norm(pool: nn.Module, shape: tuple[int, ...]) -> float:
    """The exact l2 operator norm of an average pooling on inputs of ``shape``: it acts alike and
    separately on every channel, so the norm of its one-channel matrix."""
    spatial = tuple(shape[1:])
    count = int(torch.tensor(spatial).prod())
    basis = torch.eye(count, dtype=torch.float64).view(count, 1, *spatial)
    with torch.inference_mode(False), torch.no_grad():
        matrix = pool(basis).flatten(1)
    return float(torch.linalg.matrix_norm(matrix, ord=2))


def _bn_scale(bn: nn.modules.batchnorm._BatchNorm) -> Tensor:
    """The per-channel factor of an eval-mode BatchNorm: ``gamma / sqrt(running_var + eps)``."""
    if bn.running_var is None:
        raise ConfigError("certify=lipschitz: BatchNorm without running statistics is unsupported")
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)
    return gamma / torch.sqrt(bn.running_var + bn.eps)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAVES) or super().is_leaf_module(m, qualname)


@dataclass(frozen=True)
class LipschitzBound:
    """``constant``: an upper bound on the l2 Lipschitz constant of the model (inputs to logits),
    the product of ``layers`` (``(name, constant)`` per layer or folded conv + BatchNorm)."""

    constant: float
    layers: tuple[tuple[str, float], ...]


def lipschitz_bound(
    model: nn.Module,
    input_shape: tuple[int, ...],
    seed: int = 0,
    slack: float = 1e-4,
    estimate: bool = True,
) -> LipschitzBound:
    """An upper bound on ``max ||model(x) - model(y)||_2 / ||x - y||_2`` for inputs of
    ``input_shape`` (one example, no batch dimension), the model taken in eval mode (BatchNorm as
    the affine map it is then). Raises a one-line ConfigError for a layer it cannot bound.
    ``estimate=False`` only checks that every layer is supported (no power iteration; the
    constant returned is then meaningless)."""
    try:
        graph = _Tracer().trace(model)
    except Exception as error:  # noqa: BLE001 (any tracing failure means: not a plain chain)
        raise ConfigError(
            f"certify=lipschitz cannot trace {type(model).__name__} ({type(error).__name__}): "
            f"it bounds chains of {SUPPORTED}"
        ) from error
    module = fx.GraphModule(model, graph)
    was_training = model.training
    model.eval()
    try:
        tensors = itertools.chain(model.parameters(), model.buffers())
        example = torch.zeros((1, *input_shape), device=next(tensors, torch.zeros(0)).device)
        ShapeProp(module).propagate(example)
        return _bound_chain(module, seed, slack, estimate)
    finally:
        model.train(was_training)


def _bound_chain(module: fx.GraphModule, seed: int, slack: float, estimate: bool) -> LipschitzBound:
    nodes = [n for n in module.graph.nodes if n.op not in ("placeholder", "output")]
    modules = dict(module.named_modules())
    generator = torch.Generator().manual_seed(seed)
    layers: list[tuple[str, float]] = []
    previous = None
    skip = set()
    for i, node in enumerate(nodes):
        inputs = [a for a in node.all_input_nodes]
        if len(inputs) != 1 or (previous is not None and inputs[0] is not previous):
            what = node.target if node.op != "call_module" else type(modules[node.target]).__name__
            raise ConfigError(
                f"certify=lipschitz: {node.name} ({what}) is not part of a chain of layers "
                f"(e.g. a residual addition): it bounds chains of {SUPPORTED}"
            )
        previous = node
        if node.name in skip:
            continue
        shape = tuple(inputs[0].meta["tensor_meta"].shape[1:])
        if node.op == "call_function" and node.target in ONE_LIPSCHITZ_FUNCTIONS:
            layers.append((node.name, 1.0))
            continue
        if node.op != "call_module":
            name = getattr(node.target, "__name__", node.target)
            if node.target in (operator.add, torch.add):
                name = "a residual addition"
            raise ConfigError(f"certify=lipschitz cannot bound {name}: it bounds {SUPPORTED}")
        layer = modules[node.target]
        nxt = nodes[i + 1] if i + 1 < len(nodes) else None
        following = modules.get(nxt.target) if nxt is not None and nxt.op == "call_module" else None
        constant = _layer_constant(layer, following, shape, generator, estimate)
        layers.append((node.target, constant))
        if isinstance(layer, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
            layers[-1] = (f"{node.target}+{nxt.target}", layers[-1][1])
            skip.add(nxt.name)
    product = 1.0
    for _, value in layers:
        product *= value
    return LipschitzBound(product * (1 + slack), tuple(layers))


def _layer_constant(
    layer: nn.Module, following: nn.Module | None, shape: tuple[int, ...], generator, estimate
) -> float:
    """The l2 Lipschitz constant of one layer (a Conv2d with the BatchNorm2d after it folded);
    1.0 for conv, linear and pooling layers if not ``estimate`` (a check of support only)."""
    if not estimate and isinstance(layer, (nn.Conv2d, nn.Linear, *LINEAR_POOLS)):
        return 1.0
    if isinstance(layer, Normalize):
        return float((1 / layer.std).max())
    if isinstance(layer, nn.Conv2d):
        scale = _bn_scale(following) if isinstance(following, nn.BatchNorm2d) else None
        _conv_operator(layer, scale, shape)  # refuses padding modes it cannot bound
        return conv_upper_bound(layer, scale, shape)
    if isinstance(layer, nn.Linear):
        return float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord=2))
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        return float(_bn_scale(layer).abs().max())
    if isinstance(layer, LINEAR_POOLS):
        return pool_norm(layer, shape)
    if isinstance(layer, nn.LeakyReLU) and abs(layer.negative_slope) <= 1:
        return 1.0
    if isinstance(layer, nn.MaxPool2d):
        kernel, stride = (
            nn.modules.utils._pair(layer.kernel_size),
            nn.modules.utils._pair(layer.stride or layer.kernel_size),
        )
        if all(s >= k for s, k in zip(stride, kernel, strict=True)) and layer.dilation in (
            1,
            (1, 1),
        ):
            return 1.0
        raise ConfigError(
            f"certify=lipschitz: MaxPool2d(kernel_size={layer.kernel_size}, stride={layer.stride}) "
            "overlaps its windows (not 1-Lipschitz in l2): only stride >= kernel_size is supported"
        )
    if isinstance(layer, ONE_LIPSCHITZ):
        return 1.0
    raise ConfigError(
        f"certify=lipschitz cannot bound {type(layer).__name__}: it bounds {SUPPORTED}"
    )


def lipschitz_radius(logits: Tensor, constant: float) -> tuple[Tensor, Tensor]:
    """The prediction (argmax) and certified l2 radius ``(top1 - top2) / (2 L)`` for logits
    ``[B, K]``: every logit moves by at most ``L ||delta||``, so the gap closes at most twice as
    fast and the argmax cannot change for ``||delta|| < radius``."""
    top2 = logits.float().topk(2, dim=1)
    margin = top2.values[:, 0] - top2.values[:, 1]
    return top2.indices[:, 0], margin / (2 * constant)
