"""Each training regime end to end through the real config (debug size), and bad settings."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY, run_script, table_rows
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.errors import ConfigError
from smoothcert.records import read_records
from smoothcert.regimes import ConsistencyRegularization, GaussianAugmentation


def fit(cfg):
    run = build_run(cfg)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    return run


@pytest.mark.slow
@pytest.mark.parametrize(
    "experiment,objective,train_sigma",
    [
        ("digits_consistency", ConsistencyRegularization, 0.25),
        ("digits_clean", GaussianAugmentation, 0.0),
    ],
)
def test_regime_trains_and_certifies(make_cfg, tmp_path, experiment, objective, train_sigma):
    run = fit(make_cfg(f"+experiment={experiment}", *TINY))
    assert isinstance(run.module.objective, objective)
    assert run.module.objective.noise.sigma == train_sigma
    metadata, records = read_records(tmp_path / "certify.tsv")
    assert len(records) == 6 and metadata["sigma"] == "0.25"
    assert float(metadata["train_sigma"]) == train_sigma
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["smoothcert"]["train_sigma"] == train_sigma


@pytest.mark.slow
def test_macer_trains_and_certifies(make_cfg, tmp_path):
    run = fit(make_cfg("regime=macer", "regime.k=2", *TINY))
    assert run.module.objective.option == "macer" and run.module.objective.k == 2
    assert len(read_records(tmp_path / "certify.tsv")[1]) == 6


@pytest.mark.slow
def test_smoothadv_through_train_py(tmp_path):
    result = run_script(
        "train.py",
        "+experiment=digits_smoothadv",
        *TINY,
        f"hydra.run.dir={tmp_path}",
        env={"OMP_NUM_THREADS": "1"},  # see conftest.one_torch_thread
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(table_rows(tmp_path / "certify.tsv")) == 6


@pytest.mark.parametrize(
    "overrides,setting",
    [
        (["regime=consistency", "regime.m=0"], "regime.m=0"),
        (["regime=consistency", "regime.lbd=-1"], "regime.lbd=-1.0"),
        (["regime=consistency", "regime.eta=-1"], "regime.eta=-1.0"),
        (["regime=smoothadv", "regime.epsilon=-0.5"], "regime.epsilon=-0.5"),
        (["regime=smoothadv", "regime.steps=0"], "regime.steps=0"),
        (["regime=smoothadv", "regime.m=0"], "regime.m=0"),
        (["regime=macer", "regime.k=0"], "regime.k=0"),
        (["regime=macer", "regime.gamma=-1"], "regime.gamma=-1.0"),
        (["regime=macer", "noise=rayleigh"], "regime=macer trains on the noise's radius: rayleigh"),
        (["regime=macer", "sigma=[0.25,0.5]", "certify=none"], "regime=macer trains on the noise"),
        (["regime=stability", "regime.lbd=-1"], "regime.lbd=-1.0"),
        (["+experiment=shapes_seg", "regime=macer"], "regime=macer trains class_logits models"),
        (["+experiment=shapes_seg", "regime=stability"], "regime=stability trains class_logits"),
    ],
)
def test_bad_regime_settings_fail_before_training(make_cfg, tmp_path, overrides, setting):
    with pytest.raises(Exception) as info:
        fit(make_cfg(*TINY, *overrides))
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError), info.value
    assert setting in str(error) and "\n" not in str(error)
    assert not (tmp_path / "checkpoints").exists()
