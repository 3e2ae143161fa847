"""Resuming training (``python train.py ckpt_path=...``) and refusing top-level keys nothing
reads (``+sigmaa=0.3``)."""

from __future__ import annotations

import os

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from conftest import CONF, ROOT, TINY, run_script
from lightning_modules.run.config_checks import check_added_keys
from lightning_modules.run.resume import resume_checkpoint
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.errors import ConfigError

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def added_keys_error(make_cfg, *overrides: str) -> ConfigError | None:
    cfg = make_cfg(*overrides)
    hydra_cfg = HydraConfig.get()
    try:
        check_added_keys(cfg, hydra_cfg.overrides.task, hydra_cfg.runtime.choices.keys())
    except ConfigError as error:
        return error
    return None


@pytest.mark.parametrize(
    ("override", "closest"), [("+sigmaa=0.3", "sigma"), ("+ckpt=x.ckpt", "ckpt_path")]
)
def test_an_unknown_top_level_key_is_refused_naming_the_close_ones(make_cfg, override, closest):
    with pytest.raises(Exception) as info:
        build_run(make_cfg(*TINY, override))
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError), repr(info.value)
    key = override.split("=")[0]
    assert str(error).startswith(f"{key} is not a setting anything reads (did you mean {closest}?")
    assert "\n" not in str(error)


def test_a_key_far_from_every_setting_lists_them(make_cfg):
    error = added_keys_error(make_cfg, "+zzz=1")
    assert error is not None and "known: attack, callbacks, certify, ckpt_path" in str(error)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=denoiser", "+classifier_ckpt=some.ckpt"],  # read by ${oc.select:classifier_ckpt}
        ["+experiment=digits_cohen"],  # a config group
        ["sigma=0.5", "ckpt_path=x.ckpt", "data.batch_size=8"],  # existing keys: no +
    ],
)
def test_keys_something_reads_pass(make_cfg, overrides):
    assert added_keys_error(make_cfg, *overrides) is None


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_passes(make_cfg, name):
    assert added_keys_error(make_cfg, f"+experiment={name}", "debug=default") is None


def fake_checkpoint(path, epochs_completed: int, config: dict | None = None) -> None:
    progress = {"current": {"completed": epochs_completed}}
    loops = {"fit_loop": {"epoch_progress": progress}}
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"loops": loops, "optimizer_states": [], "state_dict": {}}
    if config is not None:
        checkpoint["smoothcert"] = {"config": config}
    torch.save(checkpoint, path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sigma=0.5"], "was trained with sigma=0.25, this run has sigma=0.5: repeat"),
        (["model.net.width=8"], "was trained with model.net.width=16, this run has model.net.w"),
        (["regime=consistency"], "was trained with model.objective._target_=smoothcert.regimes"),
        (["trainer.max_epochs=80", "data.batch_size=32"], None),  # may change on resuming
    ],
)
def test_a_resume_must_repeat_the_original_run_s_settings(make_cfg, tmp_path, overrides, message):
    original = OmegaConf.to_container(make_cfg(), resolve=True)
    config = {key: original[key] for key in ("model", "data", "sigma", "noise")}
    fake_checkpoint(tmp_path / "run.ckpt", 1, config)
    cfg = make_cfg(f"ckpt_path={tmp_path / 'run.ckpt'}", *overrides)
    if message is None:  # a longer run is allowed, but the saved scheduler state wins: say so
        with pytest.warns(UserWarning, match=r"scheduler.T_max=40; this run's model.sched"):
            assert resume_checkpoint(cfg) == str(tmp_path / "run.ckpt")
        return
    with pytest.raises(ConfigError, match=message):
        resume_checkpoint(cfg)


def test_ckpt_path_last_is_the_run_directory_s_own(make_cfg, tmp_path):
    assert resume_checkpoint(make_cfg()) is None  # a fresh run
    with pytest.raises(ConfigError, match=r"^ckpt_path=last: this run's directory .* hydra.run"):
        resume_checkpoint(make_cfg("ckpt_path=last"))
    fake_checkpoint(tmp_path / "checkpoints" / "last.ckpt", epochs_completed=1)
    found = resume_checkpoint(make_cfg("ckpt_path=last"))
    assert found == str(tmp_path / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, r"^ckpt_path=\S+ is not a file: give a checkpoint train.py wrote"),
        (lambda p: p.write_text("not a checkpoint"), r"^ckpt_path=\S+ cannot be read as a"),
        (lambda p: torch.save({"state_dict": {}}, p), r"^ckpt_path=\S+ holds no training state"),
        (lambda p: fake_checkpoint(p, 40), r"has trained 40 epochs and trainer.max_epochs=40"),
    ],
)
def test_a_checkpoint_that_cannot_resume_is_one_line(make_cfg, tmp_path, make, message):
    path = tmp_path / "some.ckpt"
    if make is not None:
        make(path)
    with pytest.raises(ConfigError, match=message) as info:
        resume_checkpoint(make_cfg(f"ckpt_path={path}", "trainer.max_epochs=40"))
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    """Two epochs straight, against two epochs SIGKILLed when the second starts and resumed from
    the first's last.ckpt with ``ckpt_path=last``: the same weights and optimizer state, bit for
    bit (one CPU process, no dataloader workers; the generators' states travel in the
    checkpoint, callbacks/rng_state.py)."""
    common = [*TINY, "certify=none", "trainer.max_epochs=2"]
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    result = run_script("train.py", *common, f"hydra.run.dir={straight}")
    assert result.returncode == 0, result.stderr[-3000:]
    kill = "+callbacks.kill._target_=resume_helpers.KillAtEpoch"
    result = run_script("train.py", *common, f"hydra.run.dir={killed}", kill, env=env)
    assert result.returncode == -9, result.stderr[-3000:]  # SIGKILL, at the start of epoch 1
    last = killed / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0
    result = run_script("train.py", *common, f"hydra.run.dir={killed}", "ckpt_path=last")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming training from {last}" in result.stdout + result.stderr

    expected = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = torch.load(last, weights_only=True)
    assert resumed["epoch"] == expected["epoch"] == 1
    assert expected["state_dict"].keys() == resumed["state_dict"].keys()
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][name]), name
    for a, b in zip(
        expected["optimizer_states"][0]["state"].values(),
        resumed["optimizer_states"][0]["state"].values(),
        strict=True,
    ):
        assert all(torch.equal(a[k], b[k]) for k in a)
