"""A toy structured-output model and data for the center-smoothing callback, and a DDP runner.

``ToyStructured`` maps 1x4x4 inputs through a fixed linear map to an image (``output_kind``
"image"), a thresholded label map ("label_map", 2 classes) or a box ("box"); one trainable
scalar lets ``Trainer.fit`` run. Run as a script to certify on two CPU processes (gloo):

    python tests/center/toy.py OUT_DIR KIND DEVICES [key=value ...]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: callbacks/ is importable from the repository
    sys.path.insert(0, str(ROOT))

from callbacks.certification.center import CenterCertification  # noqa: E402
from lightning_modules.base import Contract  # noqa: E402
from lightning_modules.run.runner import close_process_group  # noqa: E402
from smoothcert.noise import GaussianNoise  # noqa: E402

# Fast settings: delta 0.2 lets n = 100 pass the mass check; m = 1000 certifies eps_in <= sigma.
FAST = {"n": 1000, "m": 2000, "delta": 0.2, "batch_size": 64, "num_images": 2, "num_examples": 2}


class ToyData(pl.LightningDataModule):
    """``dataset(split)`` of ``size`` random 1x4x4 images in [0, 1] (seeded per split)."""

    def __init__(self, size: int = 8, scale: float = 1.0) -> None:
        super().__init__()
        self.splits = {}
        for number, split in enumerate(("train", "val", "test")):
            generator = torch.Generator().manual_seed(number)
            x = torch.rand(size, 1, 4, 4, generator=generator) * scale
            self.splits[split] = TensorDataset(x, torch.zeros(size, dtype=torch.long))

    def dataset(self, split: str) -> TensorDataset:
        return self.splits[split]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["train"], batch_size=4)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=4)


class ToyStructured(pl.LightningModule):
    """f(x) = a fixed linear map of x (times a trainable scalar), read as ``kind`` output."""

    def __init__(
        self, kind: str = "image", train_sigma: float | list[float] = 0.25, num_classes: int = 2
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.output_kind = kind
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("weight", torch.randn(16, 16, generator=generator) / 4)
        self.gain = nn.Parameter(torch.ones(()))

    def structured_output(self, x: Tensor) -> Tensor:
        y = (x.flatten(1) @ self.weight) * self.gain
        if self.output_kind == "label_map":
            return (y > 0).long().reshape(-1, 4, 4)
        if self.output_kind == "box":
            centre = 0.5 + 0.1 * torch.tanh(y[:, :2])
            half = 0.2 + 0.05 * torch.sigmoid(y[:, 2:4])
            return torch.cat([centre - half, centre + half], dim=1)
        return y.reshape(-1, 1, 4, 4)

    def contract(self) -> Contract:
        """What the certifiers read: the structured output, its kind, classes for label maps."""
        classes = self.hparams.num_classes if self.output_kind == "label_map" else None
        output, noise = self.structured_output, GaussianNoise(0.25)  # its noise is not read
        return Contract("toy", self.output_kind, output, (), noise, classes, output)

    def training_step(self, batch, batch_idx) -> Tensor:
        return (self.gain - 1).square() + 0 * batch[0].sum()

    def test_step(self, batch, batch_idx) -> None:
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def trainer(devices: int = 1, **kwargs) -> pl.Trainer:
    options = {
        "accelerator": "cpu",
        "devices": devices,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **kwargs,
    }
    if devices > 1:
        options["strategy"] = "ddp"
    return pl.Trainer(**options)


def certify(
    out: Path, kind: str = "image", devices: int = 1, train_sigma=0.25, **settings
) -> CenterCertification:
    """Certifies the toy model (trained at ``train_sigma``) on its test split with
    ``trainer.test`` (as certify.py does), at sigma 0.25 unless ``settings`` say otherwise."""
    callback = CenterCertification(output_dir=str(out), **{"sigma": 0.25, **FAST, **settings})
    module = ToyStructured(kind, train_sigma)
    trainer(devices, callbacks=[callback]).test(module, datamodule=ToyData())
    return callback


if __name__ == "__main__":
    out, kind, devices = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    pairs = (arg.split("=", 1) for arg in sys.argv[4:])
    certify(out, kind, devices, **{key: ast.literal_eval(value) for key, value in pairs})
    close_process_group()  # an open gloo group can abort the process at exit
