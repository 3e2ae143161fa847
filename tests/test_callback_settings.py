"""Every certifier and attack takes its settings one way (``callbacks.certification.settings.
Configured``): its constructor states them (keys, types, defaults), so an unknown key or a value
of the wrong type is one line before anything is built, and a call is bound to that signature."""

from __future__ import annotations

import inspect

import pytest

from callbacks.attack import EmpiricalRobustness
from callbacks.certification.lipschitz import LipschitzCertification
from callbacks.certification.predict import PredictCertification
from callbacks.seg_attack import SegmentationAttack
from conftest import TINY
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.errors import ConfigError

# (group, option, the overrides that choose it with a model it fits)
OPTIONS = [
    ("certify", "cohen", []),
    ("certify", "predict", ["certify=predict"]),
    ("certify", "lipschitz", ["certify=lipschitz"]),
    ("certify", "distspt", ["+experiment=digits32_rotation"]),
    ("certify", "segcertify", ["+experiment=shapes_seg"]),
    ("certify", "center", ["+experiment=digits_autoencoder_tv"]),
    ("certify", "median", ["+experiment=shapes_box_median"]),
    ("attack", "smoothed_pgd", ["attack=smoothed_pgd"]),
    ("attack", "base", ["attack=base"]),
    ("attack", "seg_pgd", ["+experiment=shapes_seg", "attack=seg_pgd"]),
]


def one_line_error(make_cfg, *overrides: str) -> str:
    with pytest.raises(Exception) as info:
        build_run(make_cfg(*TINY, *overrides))
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError), repr(info.value)
    assert "\n" not in str(error), str(error)
    return str(error)


@pytest.mark.parametrize(("group", "option", "chosen"), OPTIONS, ids=[o for _, o, _ in OPTIONS])
def test_unknown_key_and_wrong_type_are_one_line_before_anything_is_built(
    make_cfg, tmp_path, group, option, chosen
):
    unknown = one_line_error(make_cfg, *chosen, f"+{group}.bogus=1")
    assert f"{group}.bogus is not a setting of {group}={option}" in unknown, unknown
    wrong = one_line_error(make_cfg, *chosen, f"{group}.num_examples=abc")
    assert f"{group}.num_examples=abc must be a whole number" in wrong, wrong
    assert not (tmp_path / "checkpoints").exists()


def test_a_callback_takes_only_the_selection_it_states():
    # Lipschitz neither samples under autocast nor takes noise; PREDICT does both.
    assert "bf16" not in inspect.signature(LipschitzCertification).parameters
    with pytest.raises(TypeError, match="bf16"):
        LipschitzCertification(0.25, "unused", bf16=True)
    with pytest.raises(TypeError, match="norm"):
        PredictCertification(0.25, "unused", norm="l1")
    assert PredictCertification(0.25, "unused", bf16=True, n=10).bf16


def test_an_attack_states_its_settings_and_certifier():
    smoothed = inspect.signature(EmpiricalRobustness).parameters
    assert smoothed["certifier"].default == "cohen" and smoothed["num_examples"].default == 200
    attack = EmpiricalRobustness("smoothed_pgd", 0.25, "unused", radii=[0.0, 0.1], n=50, m=2)
    assert (attack.certifier_name, attack.certifier, attack.split) == ("cohen", None, "test")
    assert attack.settings == {
        "attack": "smoothed_pgd", "steps": 20, "m": 2, "n": 50, "alpha": 0.001,
        "radii": [0.0, 0.1], "multiples": [1.0, 1.5, 2.0],
    }  # fmt: skip
    seg = SegmentationAttack(0.25, "unused", radii=[0.5, 0.0, 0.5])
    assert (seg.certifier_name, seg.split, seg.batch_size) == ("segcertify", "val", 16)
    assert seg.settings == {"attack": "seg_pgd", "steps": 100, "radii": [0.0, 0.5]}
