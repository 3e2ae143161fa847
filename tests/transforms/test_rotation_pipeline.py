"""perturbation=rotation with certify=distspt through the configs, the checks and train.py."""

from __future__ import annotations

import pytest

from conftest import TINY, run_script
from lightning_modules.runner import build_run, config_error_in
from smoothcert.errors import ConfigError

FAST = [
    "certify.n0=2",
    "certify.n0_eps=4",
    "certify.n_gamma=4",
    "certify.n_eps=16",
    "certify.n_error=4",
    "certify.refinements=0",
    "certify.num_examples=2",
    "certify.batch_size=64",
    "trainer.max_epochs=1",  # the experiment sets 40, over debug=default
]


def test_the_experiment_builds_a_distspt_callback_on_the_rotation(make_cfg) -> None:
    from callbacks.certification.distspt import DistSPTCertification
    from smoothcert.transforms import Rotation

    run = build_run(make_cfg(*TINY, "+experiment=digits32_rotation"))
    (callback,) = [c for c in run.trainer.callbacks if isinstance(c, DistSPTCertification)]
    assert isinstance(callback.rotation, Rotation) and callback.sigma == 30.0
    assert callback.settings["units"] == "degrees"
    assert run.module.objective.perturbation is callback.rotation or isinstance(
        run.module.objective.perturbation, Rotation
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["perturbation=additive"],
            "certify=distspt certifies rotations: set perturbation=rotation",
        ),
        (["certify.gamma=[10.0,-10.0]"], "is empty"),
        (["certify.gamma=[-100.0,100.0]"], "spans 200 > 180 degrees"),
        (["sigma=0"], "sigma"),
        (["certify.error_bound=0"], "certify.error_bound=0"),
    ],
)
def test_bad_rotation_settings_are_one_line(make_cfg, overrides, message) -> None:
    with pytest.raises(Exception) as info:
        build_run(make_cfg(*TINY, "+experiment=digits32_rotation", *overrides))
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError), repr(info.value)
    assert message in str(error) and "\n" not in str(error), str(error)


@pytest.mark.slow
def test_train_then_distspt_writes_degrees_records_and_a_plot(tmp_path) -> None:
    run = run_script(
        "train.py", *TINY, "+experiment=digits32_rotation", *FAST, f"hydra.run.dir={tmp_path}"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    text = (tmp_path / "distspt.tsv").read_text()
    assert "# units: degrees" in text and "# certifier: distspt" in text
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert rows[0].split("\t")[:4] == ["idx", "label", "predict", "radius"] and len(rows) == 3
    assert (tmp_path / "certified_accuracy.png").stat().st_size > 0
    assert "certified (rotation, degrees)" in run.stdout + run.stderr


def test_basespt_through_cohen_is_labelled_not_a_certificate(make_cfg) -> None:
    from callbacks.certification.cohen import CohenCertification

    cfg = make_cfg(*TINY, "+experiment=digits32_rotation", "certify=cohen", "certify.radii=[0,10]")
    run = build_run(cfg)
    (callback,) = [c for c in run.trainer.callbacks if isinstance(c, CohenCertification)]
    assert callback.settings["units"] == "degrees (heuristic: not a certificate)"
    assert "not a certificate" in callback.perturbation.axis_label
