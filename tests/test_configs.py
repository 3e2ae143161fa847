"""Every config composes; experiments instantiate; sigma has one source of truth."""

from __future__ import annotations

import re

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONF
from lightning_modules.run.runner import config_error_in
from smoothcert.errors import ConfigError

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
GROUPS = ["data", "model", "noise", "regime", "certify", "trainer", "logger", "callbacks", "debug"]


def test_the_readme_lists_exactly_the_experiments_there_are():
    """Every experiment file is in the README's table, and every name there is a file."""
    readme = (CONF.parent / "README.md").read_text()
    table = readme.split("## Experiments", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for row in table.splitlines():
        if row.startswith("| `"):
            listed |= set(re.findall(r"`([a-z0-9_]+)`", row.split("|")[1]))
    assert listed == set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_resolves(make_cfg, name):
    cfg = make_cfg(f"+experiment={name}")
    container = OmegaConf.to_container(cfg, resolve=True)
    assert "${" not in str(container)
    assert cfg.task_name == name
    # The experiment's sigma feeds the smoothing noise and the certifier; the module records the
    # noise it was really trained with (digits_clean trains without noise on purpose).
    assert cfg.noise.sigma == cfg.sigma
    if "sigma" in cfg.certify:
        assert cfg.certify.sigma == cfg.sigma
    assert "train_sigma" not in cfg.model  # the training level is the regime's noise's
    if "noise" in cfg.get("regime", {}):
        assert cfg.regime.noise.sigma == (0.0 if name == "digits_clean" else cfg.sigma)


@pytest.mark.parametrize(
    "group,option", [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
)
def test_every_group_option_composes(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=True)


def test_sigma_override_changes_everything(make_cfg):
    cfg = make_cfg("sigma=0.5")
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    assert module.objective.noise.sigma == 0.5
    assert module.noise.sigma == 0.5
    assert module.train_sigma == 0.5 and "train_sigma" not in module.hparams
    assert cfg.certify.sigma == 0.5


def test_digits_experiment_instantiates(make_cfg):
    cfg = make_cfg("+experiment=digits_cohen")
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="object")
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    x, _ = datamodule.dataset("test")[0]
    assert tuple(x.shape) == (1, 8, 8)
    assert module(x[None]).shape == (1, 10)
    callback = hydra.utils.instantiate(cfg.certify)
    assert (callback.n0, callback.n, callback.alpha) == (100, 100_000, 0.001)


def test_cifar10_experiment_builds_resnet18_with_cifar_stem(make_cfg, tmp_path):
    cfg = make_cfg("+experiment=cifar10_cohen")
    assert (cfg.certify.n0, cfg.certify.n, cfg.certify.alpha) == (100, 100_000, 0.001)
    assert cfg.certify.num_examples == 500 and cfg.sigma == 0.25
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    net = module.model.net
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)
    assert module(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_timm_model_by_name(make_cfg):
    cfg = make_cfg("model=timm", "model.net.model_name=resnet18")
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    assert type(module.model.net).__name__ == "ResNet"
    # Normalization is the model's first layer, with the dataset's statistics as buffers.
    assert torch.allclose(module.model.normalize.mean.flatten(), torch.tensor(list(cfg.data.mean)))


def test_missing_cifar10_is_a_one_line_error(make_cfg, tmp_path):
    cfg = make_cfg("+experiment=cifar10_cohen", f"paths.data_dir={tmp_path / 'nowhere'}")
    with pytest.raises(Exception) as info:
        hydra.utils.instantiate(cfg.data)
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError)
    message = str(error)
    assert "\n" not in message
    assert str(tmp_path / "nowhere") in message and "data.download=true" in message


def test_missing_imagenet_says_how_to_get_it(make_cfg, tmp_path):
    cfg = make_cfg("data=imagenet", "model=timm", f"paths.data_dir={tmp_path}")
    with pytest.raises(Exception) as info:
        hydra.utils.instantiate(cfg.data)
    message = str(config_error_in(info.value))
    assert "image-net.org" in message and str(tmp_path / "train") in message
