"""``smoothcert.load``: each weights format, saved from a randomly initialised model to a temporary
directory, gives back the same function and the same certificate as the model certified in
process (``Smooth.certify`` with the same seed)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import timm
import torch
from torch import nn
from torchvision.models import resnet50
from weights_files import COHEN_CIFAR, COHEN_IMAGENET, randomize, write_cohen_checkpoint

import smoothcert
from smoothcert import ConfigError, Smooth, example_generator
from smoothcert.models import CifarResNet, DigitsCNN, NormalizedClassifier
from smoothcert.models.segmenters import NormalizedSegmenter

ROOT = Path(__file__).resolve().parents[2]
SIGMA, N0, N, ALPHA = 0.25, 20, 60, 0.01


def same_model(
    reference: nn.Module, loaded: nn.Module, shape: tuple[int, ...], count: int = 3
) -> None:
    """Equal logits on ``count`` [0, 1] images, and the same certificate for each of them."""
    reference.eval()
    xs = torch.rand((count, *shape), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(loaded(xs), reference(xs), rtol=1e-5, atol=1e-5)
    num_classes = reference(xs[:1]).shape[1]
    for index, x in enumerate(xs):
        want, got = (
            Smooth(model, num_classes, SIGMA).certify(
                x, N0, N, ALPHA, batch_size=40, generator=example_generator(7, index)
            )
            for model in (reference, loaded)
        )
        assert got == want


def cifar_reference(depth: int = 20) -> tuple[nn.Module, nn.Module]:
    net = randomize(CifarResNet(depth), seed=depth)
    return net, NormalizedClassifier(net, *COHEN_CIFAR)


@pytest.mark.parametrize("prefix", ["1.", "1.module.", "module."])
def test_cohen_cifar_checkpoint(tmp_path, prefix):
    net, reference = cifar_reference()
    path = write_cohen_checkpoint(tmp_path / "checkpoint.pth.tar", "cifar_resnet20", net, prefix)
    loaded = smoothcert.load(path)
    assert loaded.normalize.std.flatten().tolist() == pytest.approx(COHEN_CIFAR[1])
    same_model(reference, loaded, (3, 32, 32))


def test_cohen_imagenet_resnet50_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = randomize(resnet50(weights=None), seed=3)
    path = write_cohen_checkpoint(tmp_path / "checkpoint.pth.tar", "resnet50", net, "1.module.")
    # Small inputs keep this quick; the network is the same at any input size.
    reference = NormalizedClassifier(net, *COHEN_IMAGENET)
    same_model(reference, smoothcert.load(path), (3, 32, 32), count=1)


def test_cohen_checkpoint_states_its_normalization_and_it_is_checked(tmp_path):
    net, _ = cifar_reference()
    path = write_cohen_checkpoint(tmp_path / "c.pth.tar", "cifar_resnet20", net)
    with pytest.raises(ConfigError, match=r"normalizes with mean=\[0.4914,0.4822,0.4465\]"):
        smoothcert.load(path, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    smoothcert.load(path, mean=COHEN_CIFAR[0], std=COHEN_CIFAR[1])  # the same: accepted
    torch.save({"arch": "cifar_densenet40", "state_dict": net.state_dict()}, tmp_path / "d.tar")
    with pytest.raises(ConfigError, match="smoothcert builds cifar_resnet20, cifar_resnet110"):
        smoothcert.load(tmp_path / "d.tar")
    # A ResNet-20 file is not a ResNet-110: refused in one line, not loaded loosely.
    torch.save({"arch": "cifar_resnet110", "state_dict": net.state_dict()}, tmp_path / "e.tar")
    with pytest.raises(ConfigError, match="does not fit the model's network"):
        smoothcert.load(tmp_path / "e.tar")


def test_plain_state_dict_with_the_normalization_stated(tmp_path):
    net = randomize(DigitsCNN(), seed=1)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    mean, std = [0.3], [0.4]
    with pytest.raises(ConfigError, match="pass the architecture as net="):
        smoothcert.load(tmp_path / "net.pt", mean=mean, std=std)
    with pytest.raises(ConfigError, match="does not say how its network normalizes"):
        smoothcert.load(tmp_path / "net.pt", DigitsCNN())
    loaded = smoothcert.load(tmp_path / "net.pt", DigitsCNN(), mean=mean, std=std)
    same_model(NormalizedClassifier(net, mean, std), loaded, (1, 8, 8))


def test_state_dict_of_a_normalizing_classifier_brings_its_normalization(tmp_path):
    net = randomize(DigitsCNN(), seed=2)
    reference = NormalizedClassifier(net, [0.2], [0.3])
    torch.save({"state_dict": reference.state_dict(), "epoch": 3}, tmp_path / "model.pth")
    same_model(reference, smoothcert.load(tmp_path / "model.pth", DigitsCNN()), (1, 8, 8))


def test_timm_model_by_name_plus_weights(tmp_path):
    torch.manual_seed(0)
    net = randomize(timm.create_model("test_resnet", num_classes=10), seed=4)
    torch.save(net.state_dict(), tmp_path / "timm.pth")
    fresh = timm.create_model("test_resnet", num_classes=10)
    loaded = smoothcert.load(tmp_path / "timm.pth", fresh, mean=[0.5] * 3, std=[0.25] * 3)
    same_model(NormalizedClassifier(net, [0.5] * 3, [0.25] * 3), loaded, (3, 32, 32))


@pytest.mark.parametrize("inside", [False, True])
def test_torchscript_archive(tmp_path, inside):
    net = randomize(DigitsCNN(), seed=3)
    reference = NormalizedClassifier(net, [0.3], [0.4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        scripted = torch.jit.trace(reference if inside else net, torch.rand(2, 1, 8, 8))
    scripted.save(str(tmp_path / "model.pt"))
    # A network that normalizes itself is stated as mean 0, std 1.
    mean, std = ([0.0], [1.0]) if inside else ([0.3], [0.4])
    with pytest.raises(ConfigError, match="does not say how its network normalizes"):
        smoothcert.load(tmp_path / "model.pt")
    same_model(reference, smoothcert.load(tmp_path / "model.pt", mean=mean, std=std), (1, 8, 8))


def test_smoothcert_checkpoint_rebuilds_its_architecture():
    path = ROOT / "tests" / "fixtures" / "pre_move" / "digits_last.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    reference = NormalizedClassifier(DigitsCNN(), [0.0], [1.0])
    state = {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if "model." in k}
    reference.load_state_dict(state)
    assert reference.normalize.mean.item() == pytest.approx(0.3053)
    same_model(reference, smoothcert.load(path), (1, 8, 8))


def test_unreadable_files_are_one_line_errors(tmp_path):
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="could not be read with torch.load"):
        smoothcert.load(tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match="is not a file"):
        smoothcert.load(tmp_path / "missing.pt")


def test_smoothcert_segmentation_checkpoint(tmp_path):
    """A train.py checkpoint of a segmenter: the stored config's network, normalization and
    weights (a 1x1 convolution stands in for the segmenter)."""
    net = nn.Conv2d(3, 5, 1)
    reference = NormalizedSegmenter(net, [0.4, 0.5, 0.6], [0.2, 0.3, 0.4])
    stored = {"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 5, "kernel_size": 1}
    meta = {
        "task": "segmentation",
        "normalization": {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.4]},
        "config": {"model": {"net": stored}},
    }
    state = {f"model.{k}": v for k, v in reference.state_dict().items()}
    torch.save({"smoothcert": meta, "state_dict": state}, tmp_path / "seg.ckpt")
    loaded = smoothcert.load(tmp_path / "seg.ckpt")
    assert isinstance(loaded, NormalizedSegmenter) and not loaded.training
    x = torch.rand(2, 3, 6, 6)
    torch.testing.assert_close(loaded(x), reference(x))
