"""Bad settings of transformation smoothing: one line, before training."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from callbacks.certification.cohen import CohenCertification
from conftest import TINY
from lightning_modules.runner import build_run, config_error_in
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise
from smoothcert.transforms import Translation

BAD = [
    (["perturbation=brightness", "regime=consistency"], "perturbation=brightness is not used in"),
    (["perturbation=translation", "sigma=0"], "gaussian noise with sigma=0.0 cannot certify"),
    (["perturbation=translation", "sigma=-1"], "sigma=-1.0 must be >= 0"),
    (["perturbation=gamma", "noise=laplace"], "perturbation=gamma draws its parameters from"),
    (["perturbation=brightness", "certify.sigma=0.5"], "certify.sigma=0.5 differs from"),
    (["perturbation=brightness_contrast", "perturbation.contrast=-1"], "contrast=-1 must be"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_transformation_setting_is_one_line(make_cfg, tmp_path, overrides, message):
    with pytest.raises(Exception) as info:
        build_run(make_cfg(*TINY, *overrides))
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError), repr(info.value)
    assert message in str(error) and "\n" not in str(error), str(error)


@pytest.mark.parametrize("name", ["brightness", "brightness_contrast", "gamma", "translation"])
def test_every_transformation_builds(make_cfg, name):
    noise = ["noise=rayleigh"] if name == "gamma" else []
    build_run(make_cfg(*TINY, f"perturbation={name}", *noise))


def test_translation_of_examples_that_are_not_images_is_refused_in_setup(tmp_path):
    callback = CohenCertification(
        2.0, str(tmp_path), perturbation=Translation(GaussianNoise(2.0)), num_examples=1
    )
    dataset = [(torch.zeros(10), 0)]
    trainer = SimpleNamespace(datamodule=SimpleNamespace(dataset=lambda split: dataset))
    module = SimpleNamespace(task="classification", hparams={})
    with pytest.raises(ConfigError, match="transforms images"):
        callback.check_selection(trainer, module)
