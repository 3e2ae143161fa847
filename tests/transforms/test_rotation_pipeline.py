"""perturbation=rotation with certify=distspt through the configs, the checks and train.py."""

from __future__ import annotations

import os

import pytest

from conftest import TINY, run_script
from lightning_modules.run.runner import build_run, config_error_in
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


class _RecordingLogger:
    """Stands in for a Lightning logger: keeps every scalar key it is given."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def log_metrics(self, metrics, step=None) -> None:
        self.keys.extend(metrics)

    def save(self) -> None:
        pass


@pytest.mark.parametrize("perturbation", ["rotation", "brightness"])
def test_a_heuristic_never_writes_under_cert(tmp_path, monkeypatch, caplog, perturbation) -> None:
    """BaseSPT (certify=cohen over rotations) is not a certificate: its logged scalars, summary
    file, objective, curve, plot title and summary line say heuristic/estimated, never cert/ or
    certified. Brightness (a certificate) keeps cert/ and "certified"."""
    import json
    import logging
    from types import SimpleNamespace

    import callbacks.reporting
    from callbacks.certification.cohen import CohenCertification
    from smoothcert.noise import GaussianNoise
    from smoothcert.records import CohenRecord
    from smoothcert.records.in_range import InRangeRecord
    from smoothcert.transforms import Brightness, Rotation

    sound = perturbation == "brightness"
    sigma = 0.5 if sound else 30.0
    built = (Brightness if sound else Rotation)(GaussianNoise(sigma))
    callback = CohenCertification(sigma, str(tmp_path), perturbation=built, num_examples=2)
    records = [
        CohenRecord(idx=0, label=1, predict=1, radius=12.0, correct=1, time=0.0),
        CohenRecord(idx=1, label=2, predict=-1, radius=0.0, correct=0, time=0.0),
    ]
    in_range = [  # brightness writes in_range.tsv beside certify.tsv
        InRangeRecord(0, 1, 1, 12.0, -0.1, 0.2, 0.1),
        InRangeRecord(1, 2, -1, 0.0, 0.0, 0.0, 0.0),
    ]
    callback.keep({"cohen": records, "in_range": in_range})
    titles = []
    plot = callbacks.reporting.plot_curves

    def plot_and_keep_title(path, curves, title, *args, **kwargs):
        titles.append(title)
        return plot(path, curves, title, *args, **kwargs)

    monkeypatch.setattr(callbacks.reporting, "plot_curves", plot_and_keep_title)
    logger = _RecordingLogger()
    trainer = SimpleNamespace(loggers=[logger], logger=logger, is_global_zero=True, global_step=0)
    with caplog.at_level(logging.INFO):
        callback.report(trainer, SimpleNamespace())
    summary = json.loads(callback.write_summary().read_text())
    keys = [*logger.keys, *summary["summary"], summary["objective"], callback.objective]
    said = ("certified", "estimated")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(said)]
    assert logger.keys and lines and titles
    if not sound:  # the check first: no heuristic under cert/
        assert not any(k.startswith("cert/") for k in keys), keys
    assert summary["certificate"] is sound
    if sound:
        assert all(k.startswith("cert/brightness/") for k in keys), keys
        assert lines[0].startswith("certified: ") and "certified_accuracy.tsv" in os.listdir(
            tmp_path
        )
        return
    assert all(k.startswith("heuristic/rotation/") for k in keys), keys
    assert "heuristic/rotation/acr" in keys and not any("cert/" in k for k in keys)
    assert not any("cert/" in line for line in lines), lines
    assert lines[0].startswith("estimated (heuristic, not a certificate): "), lines
    assert "estimated" in titles[0] and "heuristic" in titles[0], titles
    assert "estimated_accuracy.tsv" in os.listdir(tmp_path)
    assert "certified_accuracy.tsv" not in os.listdir(tmp_path)


def test_the_reporting_layer_refuses_a_heuristic_under_cert(tmp_path) -> None:
    """The guard every logged curve passes through: a heuristic (sound=False) with a cert/ key
    is a programming error, refused before anything is written or logged."""
    from types import SimpleNamespace

    from callbacks.reporting import report_curve

    trainer = SimpleNamespace(loggers=[], global_step=0)
    args = (trainer, tmp_path, "estimated_accuracy", "radius", "estimated_accuracy", [0.0], [1.0])
    with pytest.raises(ValueError, match="heuristic may not log under cert/"):
        report_curve(*args, "t", {"cert/rotation/acr": 1.0}, sound=False)
    report_curve(*args, "t", {"heuristic/rotation/acr": 1.0}, sound=False)
    report_curve(*args, "t", {"cert/acr": 1.0})


@pytest.mark.parametrize("sound", [True, False])
def test_record_tables_of_a_heuristic_are_not_under_cert(tmp_path, monkeypatch, sound) -> None:
    """The per-example wandb table of a heuristic run (BaseSPT) goes under heuristic/records/,
    a certificate's under cert/records/."""
    from types import SimpleNamespace

    import callbacks.reporting

    class FakeWandbLogger:
        def __init__(self) -> None:
            self.logged: dict = {}
            self.experiment = SimpleNamespace(
                id="x", log=self.logged.update, log_artifact=lambda artifact: None
            )

    monkeypatch.setattr(callbacks.reporting, "WandbLogger", FakeWandbLogger)
    tsv = tmp_path / "certify.tsv"
    columns = "idx\tlabel\tpredict\tradius\tcorrect\ttime"
    tsv.write_text(f"# sigma: 30\n{columns}\n0\t1\t1\t2.5\t1\t0.1\n")
    logger = FakeWandbLogger()
    trainer = SimpleNamespace(loggers=[logger], global_step=0)
    callbacks.reporting.log_records(trainer, [tsv], sound=sound)
    tables = [key for key in logger.logged if "records/" in key]
    assert tables == ["cert/records/certify" if sound else "heuristic/records/certify"]
