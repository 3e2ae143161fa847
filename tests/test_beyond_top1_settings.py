"""certify.topk, attack= and certify=lipschitz: bad settings are one line, before training."""

from __future__ import annotations

import pytest

from conftest import TINY
from lightning_modules.runner import build_run, config_error_in
from smoothcert.errors import ConfigError

BAD = [
    (["certify.topk=[0]"], "certify.topk=[0]: each k must be an integer in 1..10"),
    (["certify.topk=[1,11]"], "certify.topk=[1, 11]: each k must be an integer in 1..10"),
    (["certify.topk=[3]", "noise=laplace"], "certify.topk=[3] certifies l2 radii under Gaussian"),
    (["model=autoencoder", "certify=lipschitz"], "certify=lipschitz certifies classification"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_setting_is_one_line_before_training(make_cfg, tmp_path, overrides, message):
    with pytest.raises(Exception) as info:
        build_run(make_cfg(*TINY, *overrides))
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError), repr(info.value)
    assert message in str(error) and "\n" not in str(error), str(error)
    assert not (tmp_path / "checkpoints").exists()
