"""Bad settings of transformation smoothing: one line, before training."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from callbacks.certification.cohen import CohenCertification
from conftest import TINY
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise, RayleighNoise
from smoothcert.records import CohenRecord
from smoothcert.transforms import Gamma, Translation

BAD = [
    (["perturbation=brightness", "regime=consistency"], "perturbation=brightness is not used in"),
    (["perturbation=translation", "sigma=0"], "gaussian noise with sigma=0.0 cannot certify"),
    (["perturbation=translation", "sigma=-1"], "sigma=-1.0 must be >= 0"),
    (["perturbation=gamma", "noise=laplace"], "perturbation=gamma draws its parameters from"),
    (["perturbation=brightness", "certify.sigma=0.5"], "certify.sigma=0.5 differs from"),
    (["perturbation=brightness_contrast", "perturbation.contrast=-1"], "contrast=-1 must be"),
    (
        ["perturbation=brightness_contrast", "perturbation.contrast=0.1"]
        + ["perturbation.contrast_factor=0.1"],
        "both give the contrast range",
    ),
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


GAMMA = ["perturbation=gamma", "noise=rayleigh"]
IN_RANGE, NUMBERS = "must be a number in (0, inf)", "must be a list of numbers or null"
BAD_GAMMAS = [
    ("certify.gammas=[0.5,0]", IN_RANGE),
    ("certify.gammas=[-1]", IN_RANGE),
    ("certify.gammas=[2,inf]", IN_RANGE),
    ("certify.gammas=[nan]", IN_RANGE),
    ("certify.gammas=[]", IN_RANGE),
    ("certify.gammas=[0.5,abc]", NUMBERS),  # the generic type check of every setting
    ("certify.gammas=abc", NUMBERS),
    ("certify.gammas=[true]", NUMBERS),
    ("certify.gammas=-2", NUMBERS),
]


@pytest.mark.parametrize(("override", "message"), BAD_GAMMAS, ids=[o for o, _ in BAD_GAMMAS])
def test_gamma_outside_zero_to_infinity_is_one_line(make_cfg, override, message):
    with pytest.raises(Exception) as info:
        build_run(make_cfg(*TINY, *GAMMA, override))
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError), repr(info.value)
    assert "certify.gammas=" in str(error) and message in str(error), str(error)
    assert "\n" not in str(error)


def test_gammas_need_perturbation_gamma(make_cfg):
    with pytest.raises(Exception) as info:
        build_run(make_cfg(*TINY, "perturbation=brightness", "certify.gammas=[0.5,2]"))
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError) and "needs perturbation=gamma" in str(error)


@pytest.mark.parametrize("noise", ["rayleigh", "gaussian"])
def test_certified_accuracy_at_gamma_factors(tmp_path, noise):
    """certify.gammas reports the fraction right with low < gamma < high, the range recovered
    from each record's |ln gamma| radius: Rayleigh p_A = 0.9 certifies (0.390, 1.823), so 0.4
    and 1.8 but not 0.38 or 1.85; log-normal sigma 0.5 certifies |ln gamma| < 0.5 Phi^-1(0.9)."""
    gamma = Gamma(RayleighNoise(0.5) if noise == "rayleigh" else GaussianNoise(0.5))
    low, high = (float(v) for v in gamma.certified_range(0.9))
    gammas = [low * 0.97, low * 1.03, 1.0, high * 0.97, high * 1.03]
    callback = CohenCertification(
        0.5, str(tmp_path), perturbation=gamma, num_examples=1, gammas=gammas
    )
    radius = float(gamma.radius(0.9))
    record = dict(idx=0, label=1, predict=1, time=0.0)
    callback.records = [
        CohenRecord(radius=radius, correct=1, **record),  # certified over (low, high)
        CohenRecord(radius=radius, correct=0, **{**record, "predict": 2}),  # wrong: never counts
        CohenRecord(radius=0.0, correct=1, **record),  # abstained or p_A <= 1/2: nothing
    ]
    trainer = SimpleNamespace(loggers=[], logger=None, is_global_zero=True, global_step=0)
    callback.report(trainer, SimpleNamespace())
    got = [callback.summary[f"cert/gamma/acc@gamma={g:g}"] for g in gammas]
    assert got == pytest.approx([0.0, 1 / 3, 1 / 3, 1 / 3, 0.0])
    ends = gamma.range_from_radius([radius, 0.0, math.inf])
    assert np.allclose(ends[0], [low, 1.0, 0.0]) and np.allclose(ends[1], [high, 1.0, math.inf])
