"""Classifiers from the weights you have, ready for ``Smooth``: ``smoothcert.load(path, ...)``.

Every model this returns takes pixels in [0, 1] and normalizes inside (noise is added in pixel
space). Formats, detected from the file:

- ``smoothcert``: a ``.ckpt`` written by ``train.py`` (its architecture, normalization and
  weights; classification and segmentation);
- ``cohen``: ``{'arch', 'state_dict', ...}`` of locuslab/smoothing, smoothing-adversarial,
  smoothing-consistency and SmoothMix (``cifar_resnet20``, ``cifar_resnet110``, ``resnet50``). Their
  models are ``Sequential(NormalizeLayer, net)`` with the repositories' CIFAR-10 / ImageNet
  constants; the layer keeps no state, so the constants are restored from the architecture's
  dataset. Keys carry ``1.`` or ``1.module.`` (DataParallel); both, and ``module.``, are accepted;
- ``state_dict``: a plain state dict (or ``{'state_dict': ...}``) of the network; the caller gives
  the architecture and says how inputs are normalized;
- ``torchscript``: a ``torch.jit`` archive holding the network; normalization as for a state dict.

A network that normalizes itself is stated as ``mean=[0, ...], std=[1, ...]``.
"""

from __future__ import annotations

import importlib
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError, require
from smoothcert.models.cifar_resnet import CifarResNet
from smoothcert.models.classifiers import NormalizedClassifier

CIFAR10_COHEN = ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])  # the repos' values, kept
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
# Cohen-format architectures: (dataset of their NormalizeLayer constants, (mean, std), classes).
COHEN_ARCHITECTURES = {
    "cifar_resnet20": ("cifar10", CIFAR10_COHEN, 10),
    "cifar_resnet110": ("cifar10", CIFAR10_COHEN, 10),
    "resnet50": ("imagenet", IMAGENET, 1000),
}
# Where checkpoints written by other code keep the state dict (MACER: "net").
STATE_KEYS = ("state_dict", "model_state_dict", "net", "model")
# Prefixes a network's keys may carry in files written by other code, tried in this order.
PREFIXES = ("", "1.module.", "1.", "module.", "model.net.", "net.", "model.module.", "model.")


@dataclass
class Weights:
    """What a weights file holds: its ``format``, the network's ``state`` (keys as written) or
    TorchScript ``module``, the Cohen ``arch``, and the normalization the file itself states
    (``mean``/``std``; None when the file does not say)."""

    path: str
    format: str
    state: dict[str, Tensor] = field(default_factory=dict)
    module: nn.Module | None = None
    arch: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """E.g. ``cohen checkpoint (arch cifar_resnet110)``, for logs and record headers."""
        arch = f" (arch {self.arch})" if self.arch else ""
        kind = "archive" if self.format == "torchscript" else "checkpoint"
        return f"{self.format} {kind}{arch}: {self.path}"


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    names = zipfile.ZipFile(path).namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in value.items())
    )


def read_weights(path: str | Path, setting: str = "weights") -> Weights:
    """Reads the file at ``path`` (on the CPU, ``weights_only``: no code from the file runs) and
    detects its format. One-line ConfigError naming ``setting`` if it is none of the four."""
    file = Path(str(path))
    require(file.is_file(), f"{setting}={path} is not a file: pass the path of a weights file")
    if _is_torchscript(file):
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice: it still loads
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(file), "cpu")
        return Weights(str(path), "torchscript", module=module)
    try:
        content = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as error:  # a pickled nn.Module, or not a torch file at all
        raise ConfigError(
            f"{setting}={path} could not be read with torch.load(weights_only=True) "
            f"({type(error).__name__}): save the network's state_dict (torch.save("
            "model.state_dict(), PATH)) or a TorchScript archive (torch.jit.save)"
        ) from None
    if isinstance(content, Mapping) and isinstance(content.get("smoothcert"), Mapping):
        meta = dict(content["smoothcert"])
        norm = meta.get("normalization") or {}
        return Weights(
            str(path), "smoothcert", dict(content["state_dict"]), mean=norm.get("mean"),
            std=norm.get("std"), meta={**meta, "hparams": content.get("hyper_parameters", {})},
        )  # fmt: skip
    if isinstance(content, Mapping) and isinstance(content.get("arch"), str):
        return _cohen(str(path), content, setting)
    if isinstance(content, Mapping):  # {'state_dict': ..., 'epoch': ...} and the like
        content = next((content[k] for k in STATE_KEYS if _is_state_dict(content.get(k))), content)
    require(
        _is_state_dict(content),
        f"{setting}={path} holds neither a state dict, a Cohen-format checkpoint ({{'arch', "
        "'state_dict'}), a smoothcert checkpoint nor a TorchScript archive",
    )
    weights = Weights(str(path), "state_dict", dict(content))
    _take_normalization(weights, ("normalize.", "model.normalize."))
    return weights


def _cohen(path: str, content: Mapping[str, Any], setting: str) -> Weights:
    arch = content["arch"]
    require(
        arch in COHEN_ARCHITECTURES,
        f"{setting}={path} is a Cohen-format checkpoint of arch {arch!r}: smoothcert builds "
        f"{', '.join(COHEN_ARCHITECTURES)}; load other architectures as a plain state dict",
    )
    require(
        _is_state_dict(content.get("state_dict")),
        f"{setting}={path} has arch {arch!r} but no state_dict of tensors",
    )
    mean, std = COHEN_ARCHITECTURES[arch][1]
    weights = Weights(path, "cohen", dict(content["state_dict"]), arch=arch, mean=mean, std=std)
    # NormalizeLayer keeps its constants out of the state dict; a variant that registered them as
    # buffers (keys "0.*") states them itself, and those are what the network was trained with.
    _take_normalization(weights, ("0.",))
    return weights


def _take_normalization(weights: Weights, prefixes: Sequence[str]) -> None:
    """Moves a normalization layer's mean and std (``<prefix>mean``/``means``, ``std``/``sds``)
    out of ``weights.state`` into ``weights.mean``/``std``."""
    for prefix in prefixes:
        own = {k[len(prefix) :]: k for k in weights.state if k.startswith(prefix)}
        mean = next((own[k] for k in ("mean", "means") if k in own), None)
        std = next((own[k] for k in ("std", "sds", "stds") if k in own), None)
        if mean and std and len(own) == 2:
            weights.mean = weights.state.pop(mean).flatten().tolist()
            weights.std = weights.state.pop(std).flatten().tolist()
            return


def _strip(state: Mapping[str, Tensor], expected: set[str]) -> dict[str, Tensor] | None:
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            stripped = {k[len(prefix) :]: v for k, v in state.items()}
            if set(stripped) == expected:
                return stripped
    return None


def load_network(net: nn.Module, weights: Weights, setting: str = "weights") -> None:
    """Loads ``weights.state`` into ``net`` strictly, after removing the first of ``PREFIXES``
    under which the keys are exactly ``net``'s. One-line ConfigError on any mismatch."""
    state = weights.state
    if weights.format == "smoothcert":
        state = {k: v for k, v in state.items() if k.startswith("model.net.")}
    expected = set(net.state_dict())
    stripped = _strip(state, expected)
    fix = "choose the architecture it was saved from (model=..., model.net.*)"
    if weights.arch:
        fix = f"it is a {weights.arch}: use model={weights.arch}"
    if stripped is None:
        keys = sorted(state)
        found = sum(any(k == e or k.endswith("." + e) for k in keys) for e in expected)
        raise ConfigError(
            f"{setting}={weights.path} does not fit the model's network "
            f"({type(net).__name__}: expects e.g. {sorted(expected)[0]!r}, the file has e.g. "
            f"{keys[0] if keys else 'nothing'!r}; {found} of its {len(expected)} keys found, "
            f"the file has {len(keys)}): {fix}"
        )
    own = net.state_dict()
    for key, value in stripped.items():
        require(
            value.shape == own[key].shape,
            f"{setting}={weights.path}: {key} has shape {tuple(value.shape)} but the model's has "
            f"{tuple(own[key].shape)}: check the number of classes (data.num_classes) and the "
            "architecture's settings",
        )
    net.load_state_dict(stripped)


def check_normalization(
    weights: Weights, mean: Sequence[float], std: Sequence[float], setting: str = "weights"
) -> None:
    """One-line ConfigError unless the normalization the file states (if it states one) is
    ``mean``/``std``: inputs are [0, 1] pixels, normalized inside the model exactly once."""
    if weights.mean is None or weights.std is None:
        return
    fix = "set model.mean, model.std to" if setting == "weights" else "pass"
    ours, theirs = [*weights.mean, *weights.std], [*mean, *std]
    same = len(weights.mean) == len(mean) and len(ours) == len(theirs)
    same = same and all(abs(a - b) <= 1e-6 for a, b in zip(ours, theirs, strict=True))
    require(
        same,
        f"{setting}={weights.path} normalizes with mean={_short(weights.mean)} "
        f"std={_short(weights.std)} but the model is set to mean={_short(mean)} std={_short(std)}: "
        f"{fix} mean={_short(weights.mean)} std={_short(weights.std)} (the file's own; inputs stay "
        "[0, 1] pixels)",
    )


def _short(values: Sequence[float]) -> str:
    return "[" + ",".join(f"{float(v):g}" for v in values) + "]"


def load_into(model: nn.Module, weights: Weights, setting: str = "weights") -> None:
    """Puts ``weights`` into ``model``, a normalizing wrapper with ``normalize`` (mean and std
    buffers) and ``net`` (``NormalizedClassifier``, ``NormalizedSegmenter``): loads the network
    (a TorchScript archive replaces ``net``), then checks the file's normalization against the
    wrapper's (an architecture that does not fit is the first thing to fix)."""
    if weights.module is not None:
        model.net = weights.module
    else:
        load_network(model.net, weights, setting)
    norm = model.normalize
    check_normalization(weights, norm.mean.flatten().tolist(), norm.std.flatten().tolist(), setting)


def build_architecture(arch: str, num_classes: int | None = None) -> nn.Module:
    """A randomly initialised network of Cohen et al.'s ``arch`` (see ``COHEN_ARCHITECTURES``)."""
    require(arch in COHEN_ARCHITECTURES, f"arch={arch!r} is not one of {list(COHEN_ARCHITECTURES)}")
    classes = num_classes or COHEN_ARCHITECTURES[arch][2]
    if arch == "resnet50":
        from torchvision.models import resnet50

        return resnet50(weights=None, num_classes=classes)
    return CifarResNet(depth=int(arch.removeprefix("cifar_resnet")), num_classes=classes)


def _instantiate(node: Any) -> Any:
    """A stored config node (``_target_`` and arguments, nested) built without Hydra."""
    if isinstance(node, list):
        return [_instantiate(v) for v in node]
    if not isinstance(node, Mapping):
        return node
    args = {k: _instantiate(v) for k, v in node.items() if not k.startswith("_")}
    if "_target_" not in node:
        return args
    module, _, name = str(node["_target_"]).rpartition(".")
    return getattr(importlib.import_module(module), name)(**args)


def _smoothcert_model(weights: Weights, net: nn.Module | None) -> nn.Module:
    from smoothcert.models.segmenters import NormalizedSegmenter

    task = weights.meta.get("task")
    wrappers = {"classification": NormalizedClassifier, "segmentation": NormalizedSegmenter}
    require(
        task in wrappers,
        f"{weights.path} is a smoothcert {task} checkpoint: smoothcert.load reads classification "
        "and segmentation ones; certify the others with `python certify.py ckpt_path=PATH`",
    )
    if net is None:
        stored = ((weights.meta.get("config") or {}).get("model") or {}).get("net")
        require(bool(stored), f"{weights.path} does not store its network: pass net=...")
        try:
            net = _instantiate(stored)
        except (ImportError, AttributeError, TypeError) as error:  # e.g. code since moved
            raise ConfigError(
                f"{weights.path}: its network {stored.get('_target_')} could not be built "
                f"({type(error).__name__}: {error}): pass net=... (randomly initialised)"
            ) from None
    mean, std = weights.mean, weights.std
    if task == "segmentation":
        return NormalizedSegmenter(net, mean, std)
    cifar_stem = bool(weights.meta["hparams"].get("cifar_stem", False))
    return NormalizedClassifier(net, mean, std, cifar_stem=cifar_stem)


def load(
    path: str | Path,
    net: nn.Module | None = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_classes: int | None = None,
) -> nn.Module:
    """The model stored at ``path``, ready for ``Smooth``: takes [0, 1] pixels, normalizes inside
    (``model.normalize``), in eval mode, on the CPU.

    Args:
        path: a smoothcert ``.ckpt``, a Cohen-format checkpoint, a state dict or a TorchScript
            archive (see the module docstring).
        net: the architecture, randomly initialised, for a state dict (required) or to override
            the one a smoothcert checkpoint stores; Cohen files name theirs (``arch``).
        mean, std: the per-channel normalization the network was trained with: required for a
            state dict or TorchScript file (``[0]*C, [1]*C`` if it normalizes itself; a state dict
            of a ``NormalizedClassifier`` states its own); checked against the file otherwise.
        num_classes: a Cohen architecture's classes (default: 10 on CIFAR, 1000 on ImageNet).

    Raises:
        ConfigError: one line, if the file is unreadable or does not fit what is given.
    """
    weights = read_weights(path, "path")
    if weights.format == "smoothcert":
        model = _smoothcert_model(weights, net)
        own = {k[len("model.") :]: v for k, v in weights.state.items() if k.startswith("model.")}
        load_network(model, Weights(str(path), "state_dict", own), "path")
        return model.eval()
    if weights.format == "cohen" and net is None:
        net = build_architecture(str(weights.arch), num_classes)
    if weights.module is not None and net is None:
        net = nn.Identity()  # replaced by the archive
    require(
        net is not None,
        f"{path} is a plain state dict: pass the architecture as net=... (randomly initialised)",
    )
    if mean is None or std is None:
        require(
            weights.mean is not None,
            f"{path} does not say how its network normalizes inputs: pass mean=... and std=... "
            "(mean=[0, ...], std=[1, ...] if it normalizes itself)",
        )
        mean, std = weights.mean, weights.std
    model = NormalizedClassifier(net, mean, std)
    load_into(model, weights, "path")
    return model.eval()
