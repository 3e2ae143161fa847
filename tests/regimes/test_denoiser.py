"""Denoised smoothing: the classifier stays bit-identical; access modes; bad checkpoints."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch

from conftest import TINY, compose_config
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.errors import ConfigError
from smoothcert.models.denoisers import DnCNN, FrozenClassifier, UNet
from smoothcert.records import read_records


def fit(cfg):
    run = build_run(cfg)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    return run


@pytest.fixture(scope="module")
def clean_ckpt(tmp_path_factory) -> Path:
    """A digits classifier written by train.py's code path, trained without noise (tiny)."""
    out = tmp_path_factory.mktemp("clean")
    fit(compose_config(["+experiment=digits_clean", *TINY, "certify=none"], out))
    return out / "checkpoints" / "last.ckpt"


def denoiser_cfg(out: Path, ckpt: Path, *overrides: str):
    return compose_config(
        ["+experiment=digits_denoiser", *TINY, f"classifier_ckpt={ckpt}", *overrides], out
    )


def classifier_state(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    return {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["stability", "mse+stability"])
def test_training_leaves_every_classifier_parameter_and_buffer_bit_identical(
    clean_ckpt, tmp_path, objective
):
    cfg = denoiser_cfg(
        tmp_path, clean_ckpt, f"model.objective={objective}", "trainer.max_epochs=2", "certify=none"
    )
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    denoiser_before = {k: v.clone() for k, v in module.model.denoiser.state_dict().items()}
    run = build_run(cfg)
    run.trainer.fit(module, datamodule=run.datamodule)
    frozen = module.model.classifier
    assert isinstance(frozen, FrozenClassifier) and not frozen.training
    assert not any(m.training for m in frozen.modules())
    expected = classifier_state(clean_ckpt)
    state = frozen.classifier.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():  # weights, BatchNorm statistics and batch counters
        assert torch.equal(state[key].cpu(), value), key
    assert not any(p.requires_grad for p in frozen.parameters())
    changed = module.model.denoiser.state_dict()
    assert any(not torch.equal(changed[k], v) for k, v in denoiser_before.items())
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["smoothcert"]["task"] == "denoised_classification"
    assert saved["smoothcert"]["normalization"]["mean"] == [0.3053]


@pytest.mark.slow
def test_query_access_never_runs_the_target_while_training(clean_ckpt, tmp_path):
    cfg = denoiser_cfg(
        tmp_path,
        clean_ckpt,
        "model.objective=stability",
        "model.access=query",
        f"surrogate_ckpt={clean_ckpt}",
    )
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    calls = {"target": 0, "surrogate": 0}
    module.model.classifier.register_forward_hook(lambda *a: calls.__setitem__("target", 1))
    module.surrogate.register_forward_hook(lambda *a: calls.__setitem__("surrogate", 1))
    loss = module.training_step((torch.rand(8, 1, 8, 8), torch.zeros(8).long()), 0)
    loss.backward()
    assert calls == {"target": 0, "surrogate": 1}
    assert all(p.grad is None for p in module.surrogate.parameters())
    assert any(p.grad is not None for p in module.model.denoiser.parameters())


@pytest.mark.slow
def test_full_access_differentiates_through_the_frozen_classifier(clean_ckpt, tmp_path):
    cfg = denoiser_cfg(tmp_path, clean_ckpt, "model.objective=stability")
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    assert module.surrogate is None
    module.training_step((torch.rand(8, 1, 8, 8), torch.zeros(8).long()), 0).backward()
    assert all(p.grad is None for p in module.model.classifier.parameters())
    assert all(p.grad is not None for p in module.model.denoiser.parameters())


def edited_checkpoint(clean_ckpt: Path, tmp_path: Path, edit) -> Path:
    checkpoint = torch.load(clean_ckpt, weights_only=True)
    edit(checkpoint)
    path = tmp_path / "edited.ckpt"
    torch.save(checkpoint, path)
    return path


def set_meta(key, value):
    return lambda c: c["smoothcert"].__setitem__(key, value)


def set_mean(c):
    c["smoothcert"]["normalization"] = {"mean": [0.5] * 3, "std": [0.25] * 3}


@pytest.mark.slow
@pytest.mark.parametrize(
    "make,overrides,message",
    [
        (lambda ckpt, tmp: None, [], "classifier_ckpt is not set"),
        (lambda ckpt, tmp: tmp / "nowhere.ckpt", [], "is not a file"),
        (lambda ckpt, tmp: tmp / "garbage.ckpt", [], "could not be read as a checkpoint"),
        (lambda c, t: edited_checkpoint(c, t, set_meta("num_classes", 5)), [], "has 5 classes"),
        (lambda c, t: edited_checkpoint(c, t, set_mean), [], "takes 3-channel inputs"),
        (lambda c, t: edited_checkpoint(c, t, set_meta("dataset", "mnist")), [], "trained on"),
        (lambda c, t: edited_checkpoint(c, t, set_meta("task", "x")), [], "not a classification"),
        (lambda c, t: c, ["model.classifier_net.width=8"], "does not fit"),
        (lambda c, t: c, ["model.objective=denoise"], "model.objective='denoise'"),
        (lambda c, t: c, ["model.access=blind"], "model.access='blind'"),
        (lambda c, t: c, ["model.stability_weight=-1"], "model.stability_weight"),
        (lambda c, t: c, ["model.objective=stability", "model.access=query"], "surrogate_ckpt"),
    ],
)
def test_bad_settings_are_one_line_errors_before_training(
    clean_ckpt, tmp_path, make, overrides, message
):
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    ckpt = make(clean_ckpt, tmp_path)
    cfg = denoiser_cfg(tmp_path, ckpt if ckpt is not None else "null", *overrides)
    with pytest.raises(Exception) as info:
        fit(cfg)
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError), info.value
    assert message in str(error) and "\n" not in str(error)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("denoiser", [DnCNN(1, depth=4, width=8), UNet(1, depth=2, width=8)])
@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 1, 7, 9)])
def test_denoisers_keep_the_input_shape(denoiser, shape):
    x = torch.rand(shape)
    assert denoiser(x).shape == x.shape


@pytest.mark.slow
def test_end_to_end_certifies_the_composition_and_certify_py_reproduces_it(clean_ckpt, tmp_path):
    fit(denoiser_cfg(tmp_path, clean_ckpt, "model.objective=mse+stability"))
    metadata, records = read_records(tmp_path / "certify.tsv")
    assert len(records) == 6 and metadata["sigma"] == "0.25"
    assert metadata["normalization"].startswith("mean=[0.3053]")
    again = tmp_path / "again"
    cfg = compose_config(
        [
            "+experiment=digits_denoiser",
            *TINY,
            f"classifier_ckpt={clean_ckpt}",
            "model.objective=mse+stability",
            f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}",
        ],
        again,
        config_name="certify_checkpoint",
    )
    run = build_run(cfg, fitting=False)
    run.trainer.test(run.module, datamodule=run.datamodule, ckpt_path=cfg.ckpt_path)
    _, repeated = read_records(again / "certify.tsv")
    assert [(r.idx, r.predict, r.radius) for r in repeated] == [
        (r.idx, r.predict, r.radius) for r in records
    ]
    # Stab+MSE as in the paper: a stability run that starts from this denoiser's weights.
    trained = tmp_path / "checkpoints" / "last.ckpt"
    cfg = denoiser_cfg(tmp_path, clean_ckpt, "model.objective=stability")
    cfg.model.denoiser_init_ckpt = str(trained)
    module = hydra.utils.instantiate(cfg.model, _convert_="object")
    saved = torch.load(trained, weights_only=True)["state_dict"]
    for key, value in module.model.denoiser.state_dict().items():
        assert torch.equal(value, saved[f"model.denoiser.{key}"]), key
    cfg.model.denoiser_init_ckpt = str(clean_ckpt)
    with pytest.raises(Exception) as info:
        hydra.utils.instantiate(cfg.model, _convert_="object")
    assert "is not a denoised_classification checkpoint" in str(config_error_in(info.value))
