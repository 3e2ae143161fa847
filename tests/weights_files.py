"""Files other code writes, made by the tests: a tiny CIFAR-10 in its own format, and randomly
initialised models saved as Cohen et al.'s code saves them."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

# Constants of locuslab/smoothing's datasets.py (written out here, not imported from smoothcert).
COHEN_CIFAR = ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])
COHEN_IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"] + [
    "dog", "frog", "horse", "ship", "truck"
]  # fmt: skip


def write_cifar10(root: Path, per_batch: int = 4, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/`` as the CIFAR-10 python archive unpacks: ``data_batch_1..5``
    and ``test_batch`` (pickled dicts: ``data`` uint8 [N, 3072] in channel-major order,
    ``labels`` a list of ints, ``batch_label``, ``filenames``) and ``batches.meta``
    (``label_names``), ``per_batch`` random images each. The original files are Python 2 pickles
    whose keys read as ``str`` under torchvision's ``encoding="latin1"``: so are these."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            "batch_label": f"{name} of a tiny test copy",
            "labels": rng.integers(0, 10, per_batch).tolist(),
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"num_cases_per_batch": per_batch, "label_names": CIFAR_CLASSES, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters (fresh ones are 0 and 1), so a test
    notices when they are not loaded; returns ``net`` in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(c, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(c, generator=generator))
    return net.eval()


def write_cohen_checkpoint(path: Path, arch: str, net: nn.Module, prefix: str = "1.") -> Path:
    """``net`` saved as locuslab/smoothing's train.py saves ``Sequential(NormalizeLayer, net)``:
    ``{'epoch', 'arch', 'state_dict', 'optimizer'}``, keys ``1.*`` (``1.module.*`` when the
    network was wrapped in DataParallel), no keys for the normalization layer (no buffers)."""
    state = {prefix + key: value for key, value in net.state_dict().items()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    checkpoint = {
        "epoch": 90,
        "arch": arch,
        "state_dict": state,
        "optimizer": optimizer.state_dict(),
    }
    torch.save(checkpoint, path)
    return path
