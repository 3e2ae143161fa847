"""Every bad setting is refused before training, as one line that names the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF, TINY, run_script
from lightning_modules.run.config_checks import _matches, check_config, check_launcher
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.errors import ConfigError

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))

# (overrides, what the one line must say): one case per class of mistake.
BAD = [
    # a certifier that does not fit the model (it used to train a full run, then fail)
    (["model=autoencoder"], "certify=cohen certifies classification"),
    (["+experiment=shapes_seg", "certify=cohen"], "certify.tau is not a setting of certify=cohen"),
    # a checkpoint monitor the model does not log
    (["model=autoencoder", "certify=none"], "callbacks.best_checkpoint.monitor=val/acc is a"),
    # a list where one number is expected
    (["sigma=[0.25,0.5]"], "sigma=[0.25,0.5] (read by certify.sigma) must be a single value"),
    # a regime the model would silently ignore (it trains on x + noise itself)
    (
        ["+experiment=digits_autoencoder_tv", "regime=consistency"],
        "regime=consistency is not used by model=autoencoder",
    ),
    # a noise center smoothing has no certificate for
    (["+experiment=shapes_box_center", "noise=laplace"], "certify.noise: center smoothing needs"),
    # a value of the wrong type, in any group
    (["certify.alpha=abc"], "certify.alpha=abc must be a number"),
    (["certify.n=true"], "certify.n=true must be a whole number"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs=abc"),
    (["data.batch_size=1.5"], "data.batch_size=1.5 must be a whole number"),
    (["model.optimizer.lr=abc"], "model.optimizer.lr=abc must be a number"),
    (["certify.radii=[0.5,abc]"], "certify.radii=[0.5,abc] must be a list of numbers"),
    (
        ["certify.batch_size=abc"],
        "certify.batch_size=abc must be a whole number or one of 'auto', e.g. "
        "certify.batch_size=auto",
    ),
    # certify.batch_size=auto is Cohen's only: the other certifiers take a number
    (["+experiment=shapes_seg", "certify.batch_size=auto"], "certify.batch_size=auto must be a"),
    (
        ["+experiment=digits_autoencoder_tv", "certify.batch_size=auto"],
        "certify.batch_size=auto must be a whole number, e.g. certify.batch_size=1000",
    ),
    (["seed=abc"], "seed=abc (read by"),
    # values out of range
    (["certify.radii=[-0.5,0.5]"], "certify.radii=[-0.5, 0.5] has a negative radius"),
    (["data.batch_size=0"], "data.batch_size=0 must be an integer >= 1"),
    (["certify.batch_size=0"], "certify.batch_size=0 must be an integer >= 1 or auto"),
    (["certify.batch_size=2.5"], "certify.batch_size=2.5 must be a whole number or one of 'auto'"),
    (["model.optimizer.lr=-1"], "Invalid learning rate: -1"),
    (["trainer.devices=0"], "trainer: `Trainer(devices=0)`"),
    # nothing to train before a certification that runs at the end of training
    (["trainer.max_epochs=0"], "trainer.max_epochs=0 trains nothing"),
    # keys one certifier's experiment sets that another certifier does not take
    (
        ["+experiment=digits_autoencoder_tv", "certify=cohen"],
        "certify.distance is not a setting of certify=cohen",
    ),
    (["+certify.sigmaa=0.5"], "certify.sigmaa is not a setting of certify=cohen"),
    # certify.weights=best with no checkpoint that has a monitor
    (["certify.weights=best", "callbacks=none"], "certify.weights=best needs a checkpoint"),
    # a (noise, norm) pair with no certificate
    (
        ["noise=laplace", "certify.norm=linf"],
        "certify.norm=linf: laplace noise certifies no linf radius: supported (noise, norm) pairs "
        "are gaussian: l2, l1, linf; laplace: l1; uniform: l1, linf",
    ),
    # a SLURM job whose processes do not match the trainer's
    (["hydra/launcher=slurm", "hydra.launcher.nodes=2"], "hydra.launcher.nodes=2 but trainer"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_setting_is_one_line_before_anything_is_built(make_cfg, tmp_path, overrides, message):
    with pytest.raises(Exception) as info:
        build_run(make_cfg(*TINY, *overrides))
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError), repr(info.value)
    assert message in str(error) and "\n" not in str(error), str(error)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_passes_the_checks(make_cfg, name):
    check_config(make_cfg(f"+experiment={name}"))


@pytest.mark.parametrize("certifier", ["cohen", "segcertify", "center", "none"])
def test_max_epochs_zero_is_only_refused_when_fitting(make_cfg, certifier):
    experiment = {"cohen": [], "segcertify": ["+experiment=shapes_seg"], "none": []}.get(
        certifier, ["+experiment=digits_autoencoder_tv"]
    )
    cfg = make_cfg(*TINY, *experiment, f"certify={certifier}", "trainer.max_epochs=0")
    if certifier == "none":
        build_run(cfg)  # nothing certifies at the end of training: training nothing is allowed
    else:
        with pytest.raises(ConfigError, match="certify.py"):
            build_run(cfg)
    build_run(cfg, fitting=False)  # certify.py trains nothing by design


def compose_with_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("launcher", ["slurm", "submitit_slurm"])
def test_the_slurm_launcher_matches_the_trainer(launcher):
    bad = compose_with_hydra(f"hydra/launcher={launcher}", "hydra.launcher.tasks_per_node=4")
    with pytest.raises(ConfigError, match="tasks_per_node=4 but trainer.devices=1"):
        check_launcher(bad.hydra.launcher, bad.trainer)
    basic = compose_with_hydra("trainer.devices=4")  # the local launcher: nothing to match
    check_launcher(basic.hydra.launcher, basic.trainer)


def test_the_documented_multi_node_slurm_command_passes_the_check():
    text = (CONF / "hydra" / "launcher" / "slurm.yaml").read_text()
    command = text.split("One job on several GPUs", 1)[1]
    lines = [ln.lstrip("#").strip().rstrip("\\").strip() for ln in command.splitlines()[2:4]]
    overrides = [o for o in " ".join(lines).split() if "=" in o and o != "-m"]
    assert "trainer.num_nodes=2" in overrides, overrides
    cfg = compose_with_hydra(*overrides)
    check_launcher(cfg.hydra.launcher, cfg.trainer)
    mismatched = compose_with_hydra(*overrides, "trainer.devices=2")
    with pytest.raises(ConfigError, match="tasks_per_node=4 but trainer.devices=2"):
        check_launcher(mismatched.hydra.launcher, mismatched.trainer)


@pytest.mark.parametrize(
    ("value", "hint", "fits"),
    [
        (0.5, float, True),
        (1, float, True),
        (True, float, False),
        ("abc", float, False),
        ([0.25, 0.5], float, False),
        (3.0, int, True),
        (2.5, int, False),
        (None, int | None, True),
        ("x", int | None, False),
        ([0.1, 0.2], list[float], True),
        ([0.1, "a"], list[float], False),
        ((0.1, 0.2), tuple[float, float], True),
        ((0.1,), tuple[float, float], False),
        ("best", Literal["last", "best"], True),
        ("worst", Literal["last", "best"], False),
        ("abc", Path, True),
        (7, str, False),
        ({"a": 1}, dict[str, int], True),
        ("abc", float | Path, True),
        ("abc", float | int, False),
    ],
)
def test_value_matches_its_type_hint(value, hint, fits):
    assert _matches(value, hint) is fits


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=autoencoder"], "certify=cohen certifies classification"),
        (["certify.alpha=abc"], "certify.alpha=abc must be a number"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0 trains nothing"),
    ],
)
def test_train_py_prints_one_line_and_trains_nothing(tmp_path, overrides, message):
    result = run_script("train.py", *TINY, *overrides, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("smoothcert: error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "checkpoints").exists()
    assert lines[-1] in (tmp_path / "train.log").read_text()
