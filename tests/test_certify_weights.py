"""certify.py weights=PATH: models trained elsewhere (issue 21, "Certify a model you already have").

The acceptance test writes a tiny CIFAR-10 in CIFAR-10's own format and a randomly initialised
cifar_resnet110 as Cohen et al.'s code saves it, certifies it with certify.py, and checks the
records against the same model certified in process (Smooth.certify, the same seeds)."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import timm
import torch
import torchvision
from torchvision.transforms import ToTensor
from weights_files import (
    COHEN_CIFAR,
    COHEN_IMAGENET,
    randomize,
    write_cifar10,
    write_cohen_checkpoint,
)

import smoothcert
from conftest import run_script
from lightning_modules.run.checkpoints import (
    certifier_for_checkpoint,
    load_external_weights,
    read_certify_source,
)
from smoothcert import ConfigError, Smooth, example_generator
from smoothcert.data.cifar import CIFAR10Files
from smoothcert.models import CifarResNet, NormalizedClassifier
from smoothcert.models.loading import read_weights


def rows(path: Path) -> list[list[str]]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return [line.split("\t") for line in lines[1:]]


@pytest.mark.slow
def test_certify_py_certifies_a_cohen_cifar_resnet110_checkpoint(tmp_path):
    data = write_cifar10(tmp_path / "data", per_batch=3)
    net = randomize(CifarResNet(110), seed=11)
    weights = write_cohen_checkpoint(tmp_path / "checkpoint.pth.tar", "cifar_resnet110", net)
    out = tmp_path / "run"
    result = run_script(
        "certify.py",
        f"weights={weights}",
        "model=cifar_resnet110",
        "data=cifar10",
        f"paths.data_dir={data}",
        "certify.num_examples=2",
        "certify.n=100",
        "certify.n0=20",
        "certify.batch_size=60",
        "logger=none",
        f"hydra.run.dir={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    header = (out / "certify.tsv").read_text()
    for line in (
        f"# checkpoint: cohen checkpoint (arch cifar_resnet110): {weights}",
        "# inputs: pixels in [0, 1], normalized inside the model",
        "# normalization: mean=[0.4914, 0.4822, 0.4465] std=[0.2023, 0.1994, 0.201]",
        "# train_sigma: None",  # not stated by the file
        "# n: 100",
        "# n0: 20",
    ):
        assert line + "\n" in header
    # The same model certified in process: same classes and radii, example by example.
    model = NormalizedClassifier(net, *COHEN_CIFAR).eval()
    test = CIFAR10Files(str(data), train=False, transform=ToTensor())
    written = rows(out / "certify.tsv")
    assert [int(row[0]) for row in written] == [0, 1]
    for idx, label, predict, radius, correct, _ in written:
        x, y = test[int(idx)]
        smooth = Smooth(model, 10, 0.25)
        want = smooth.certify(x, 20, 100, 0.001, 50, generator=example_generator(0, int(idx)))
        assert (int(label), int(predict), int(correct)) == (y, want[0], int(want[0] == y))
        assert float(radius) == pytest.approx(want[1], abs=1e-12)


def test_a_timm_model_by_name_takes_a_state_dict(make_cfg, tmp_path):
    """What certify.py does with `weights=PATH model=timm model.net.model_name=...`: the model
    config's normalization applies (the file states none), and the weights are the file's."""
    torch.manual_seed(0)
    net = randomize(timm.create_model("test_resnet", num_classes=10), seed=2)
    torch.save(net.state_dict(), tmp_path / "net.pth")
    cfg = make_cfg("model=timm", "model.net.model_name=test_resnet", "data=cifar10")
    module = hydra.utils.instantiate(cfg.model, _convert_="object").eval()
    said = load_external_weights(module, read_weights(tmp_path / "net.pth"))
    assert "normalized inside the model with model.mean/model.std's mean=[0.4914" in said
    assert module.external_weights == f"state_dict checkpoint: {tmp_path / 'net.pth'}"
    reference = NormalizedClassifier(net, list(cfg.data.mean), list(cfg.data.std)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(module.model(x), reference(x))


def cohen_file(tmp_path: Path, arch: str = "cifar_resnet20") -> Path:
    depth = int(arch.removeprefix("cifar_resnet"))
    return write_cohen_checkpoint(tmp_path / f"{arch}.tar", arch, CifarResNet(depth))


def test_the_normalization_the_file_states_is_checked(make_cfg, tmp_path):
    path = cohen_file(tmp_path)
    cfg = make_cfg("model=cifar_resnet20", "data=cifar10", "model.std=[0.247,0.243,0.261]")
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    with pytest.raises(ConfigError, match=r"set model.mean, model.std to mean=\[0.4914"):
        load_external_weights(module, read_weights(path))
    cfg = make_cfg("model=cifar_resnet110", "data=cifar10")
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    with pytest.raises(ConfigError, match="fit the.*it is a cifar_resnet20: use model=cifar_r"):
        load_external_weights(module, read_weights(path))  # a ResNet-20 file


def test_certify_py_says_which_setting_takes_which_file(make_cfg, tmp_path):
    path = cohen_file(tmp_path)
    base = ("model=cifar_resnet20", "data=cifar10")
    cfg = make_cfg(*base, config_name="certify_checkpoint")
    with pytest.raises(ConfigError, match="nothing to certify: pass ckpt_path="):
        read_certify_source(cfg)
    cfg = make_cfg(*base, f"ckpt_path={path}", config_name="certify_checkpoint")
    with pytest.raises(ConfigError, match="not written by smoothcert's train.py: for a state"):
        read_certify_source(cfg)
    cfg = make_cfg(*base, f"weights={path}", config_name="certify_checkpoint")
    meta, weights = read_certify_source(cfg)
    assert meta["task"] == "classification" and weights.arch == "cifar_resnet20"


def test_the_checkpoint_task_chooses_the_certifier(tmp_path):
    for task in ("segmentation", "classification"):
        torch.save({"smoothcert": {"task": task}, "state_dict": {}}, tmp_path / f"{task}.ckpt")
    seg = f"ckpt_path={tmp_path / 'segmentation.ckpt'}"
    assert certifier_for_checkpoint([seg, "certify.n=10"]) == ["certify=segcertify"]
    assert certifier_for_checkpoint([seg, "certify=center"]) == []  # chosen: kept
    assert certifier_for_checkpoint([seg, "+experiment=shapes_seg"]) == []  # the experiment's
    assert certifier_for_checkpoint([f"ckpt_path={tmp_path / 'classification.ckpt'}"]) == []
    assert certifier_for_checkpoint([f"weights={cohen_file(tmp_path)}"]) == []


def test_load_from_checkpoint_rebuilds_a_smoothcert_module():
    """Lightning's ``load_from_checkpoint`` works on train.py's checkpoints (here one written
    before the core moved), and its model is the one ``smoothcert.load`` returns."""
    from lightning_modules.classification import ClassificationModule

    path = Path(__file__).parent / "fixtures" / "pre_move" / "digits_last.ckpt"
    module = ClassificationModule.load_from_checkpoint(path).eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(module.model(x), smoothcert.load(path)(x))
    assert module.train_sigma == 0.25


@pytest.mark.parametrize(
    "model,data,net_type,normalization",
    [
        ("cifar_resnet20", "cifar10", CifarResNet, COHEN_CIFAR),
        ("cifar_resnet110", "cifar10", CifarResNet, COHEN_CIFAR),
        ("resnet50", "imagenet", torchvision.models.ResNet, COHEN_IMAGENET),
    ],
)
def test_the_released_architectures_normalize_as_their_repositories(
    make_cfg, model, data, net_type, normalization
):
    cfg = make_cfg(f"model={model}", f"data={data}")
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    assert isinstance(module.model.net, net_type)
    normalize = module.model.normalize
    got = [*normalize.mean.flatten().tolist(), *normalize.std.flatten().tolist()]
    assert got == pytest.approx([*normalization[0], *normalization[1]])
    if model != "resnet50":
        assert (
            sum(p.numel() for p in module.model.net.parameters())
            == {
                "cifar_resnet20": 272_474,  # ResNet-20: 0.27M, ResNet-110: 1.7M (He et al. 2016)
                "cifar_resnet110": 1_730_714,
            }[model]
        )
