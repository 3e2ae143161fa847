"""certify.topk, attack= and certify=lipschitz: bad settings are one line, before training."""

from __future__ import annotations

import pytest

from conftest import TINY
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.errors import ConfigError

BAD = [
    (["certify.topk=[0]"], "certify.topk=[0]: each k must be an integer in 1..10"),
    (["certify.topk=[1,11]"], "certify.topk=[1, 11]: each k must be an integer in 1..10"),
    (["certify.topk=[3]", "noise=laplace"], "certify.topk=[3] certifies l2 radii under Gaussian"),
    (["model=autoencoder", "certify=lipschitz"], "certify=lipschitz certifies classification"),
    (["attack=smoothed_pgd", "attack.radii=[-0.5]"], "an attack epsilon must be >= 0"),
    (["attack=smoothed_pgd", "attack.m=0"], "attack.m=0 must be an integer >= 1"),
    (
        ["model=autoencoder", "certify=none", "attack=smoothed_pgd"],
        "attack=smoothed_pgd attacks classifiers, but the model is a reconstruction model",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_setting_is_one_line_before_training(make_cfg, tmp_path, overrides, message):
    with pytest.raises(Exception) as info:
        build_run(make_cfg(*TINY, *overrides))
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError), repr(info.value)
    assert message in str(error) and "\n" not in str(error), str(error)
    assert not (tmp_path / "checkpoints").exists()


def test_an_attack_without_cohen_certification_fails_in_setup(make_cfg):
    run = build_run(make_cfg(*TINY, "certify=none", "attack=smoothed_pgd"))
    (attack,) = [c for c in run.callbacks if type(c).__name__ == "EmpiricalRobustness"]
    with pytest.raises(ConfigError, match="attack=smoothed_pgd attacks at multiples of Cohen"):
        attack.prepare(run.trainer, run.module)  # what setup runs after the selection checks
