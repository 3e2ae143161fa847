"""The shipped Optuna sweeper config composes over the real config (only where the optional
plugin, ``pip install -e ".[optuna]"``, is installed) and maximizes sigma's objective."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optional [optuna] extra")


def test_the_optuna_sweeper_config_composes_and_searches_sigma():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", ["hydra/sweeper=optuna_sigma"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweeper.direction == "maximize" and sweeper.n_trials >= 1
    assert sweeper.params.sigma == "interval(0.12, 1.0)"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
