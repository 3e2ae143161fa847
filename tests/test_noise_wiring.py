"""The noise= group reaches the model, the training regime and the Cohen certifier alike."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY
from lightning_modules.run.checkpoints import apply_checkpoint
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.noise import GaussianNoise, LaplaceNoise, Noise, UniformNoise
from smoothcert.records import read_records
from smoothcert.records.tsv import read_table
from smoothcert.regimes.smoothadv import SmoothAdv

CERTIFY = ["certify.n=200", "certify.n0=20", "certify.num_examples=4"]


NOISES = [
    ("gaussian", GaussianNoise, "l2"),
    ("laplace", LaplaceNoise, "l1"),
    ("uniform", UniformNoise, "l1"),
]


@pytest.mark.parametrize("regime", ["gaussian", "consistency", "smoothadv"])
@pytest.mark.parametrize(("name", "cls", "norm"), NOISES)
def test_noise_choice_reaches_model_regime_and_certifier(make_cfg, name, cls, norm, regime):
    run = build_run(make_cfg(*TINY, f"noise={name}", f"regime={regime}"))
    certifier = run.callbacks[-1]
    for noise in (run.module.noise, run.module.objective.noise, certifier.noise):
        assert type(noise) is cls and noise.sigma == 0.25
    assert certifier.norm == norm
    assert certifier.objective == ("cert/acr" if norm == "l2" else f"cert/{norm}/acr")


def test_certify_norm_picks_a_supported_norm(make_cfg):
    certifier = build_run(make_cfg(*TINY, "noise=uniform", "certify.norm=linf")).callbacks[-1]
    assert certifier.norm == "linf" and certifier.objective == "cert/linf/acr"


def test_smoothadv_draws_from_its_noise():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 4, 4)
    gaussian = SmoothAdv(GaussianNoise(0.5), m=2).draw_noise(x)
    torch.manual_seed(0)
    torch.rand(3, 1, 4, 4)
    assert torch.equal(gaussian, 0.5 * torch.randn(2, 3, 1, 4, 4))  # the stream it always drew
    laplace = SmoothAdv(LaplaceNoise(0.5), m=64).draw_noise(torch.zeros(8, 1, 8, 8))
    assert isinstance(SmoothAdv(LaplaceNoise(0.5)).noise, Noise)
    assert laplace.shape == (64, 8, 1, 8, 8)
    # Laplace: E|z| = lambda = sigma / sqrt(2), while a Gaussian's is sigma * sqrt(2 / pi).
    assert laplace.abs().mean().item() == pytest.approx(0.5 / 2**0.5, rel=0.05)


def test_laplace_debug_run_certifies_l1(make_cfg, tmp_path):
    run = build_run(make_cfg(*TINY, "noise=laplace", *CERTIFY))
    run.trainer.fit(run.module, datamodule=run.datamodule)
    metadata, records = read_records(tmp_path / "certify.tsv")
    assert metadata["noise"] == "laplace" and metadata["norm"] == "l1"
    assert float(metadata["noise_scale"]) == pytest.approx(0.25 / 2**0.5)
    assert [r.idx for r in records] == list(range(4))
    summary = run.callbacks[-1].summary
    assert {"cert/l1/acr", "cert/l1/acc@0.50", "cert/l1/abstain"} <= set(summary)
    assert not any(key.startswith("cert/acc") or key == "cert/acr" for key in summary)
    curve = (tmp_path / "certified_accuracy.tsv").read_text().splitlines()[0]
    assert curve.split("\t")[0] == "radius"


def test_certify_sigma_keeps_the_noise_and_changes_its_level(make_cfg):
    run = build_run(make_cfg(*TINY, "noise=laplace", "certify.sigma=0.5"))
    certifier = run.callbacks[-1]
    assert type(certifier.noise) is LaplaceNoise and certifier.noise.sigma == 0.5
    assert run.module.noise.sigma == 0.25


def test_checkpoint_records_the_noise_and_certify_py_restores_it(make_cfg):
    stored = build_run(make_cfg(*TINY, "noise=laplace")).callbacks[0].config
    assert stored["noise"]["_target_"] == "smoothcert.noise.LaplaceNoise"
    meta = {"task": "classification", "train_sigma": 0.25, "config": {"noise": stored["noise"]}}
    cfg = make_cfg(*TINY)
    apply_checkpoint(cfg, meta, [])
    assert type(build_run(cfg).callbacks[-1].noise) is LaplaceNoise
    cfg = make_cfg(*TINY, "noise=uniform")
    apply_checkpoint(cfg, meta, ["noise=uniform"])  # the command line wins
    assert type(build_run(cfg).callbacks[-1].noise) is UniformNoise


SEG = ["+experiment=shapes_seg", "certify.n0=4", "certify.n=20", "certify.num_examples=2"]


def test_segcertify_takes_the_noise_and_norm(make_cfg):
    certifier = build_run(make_cfg(*TINY, *SEG, "noise=uniform", "certify.norm=linf")).callbacks[-1]
    assert type(certifier.noise) is UniformNoise and certifier.norm == "linf"
    certifier = build_run(make_cfg(*TINY, *SEG, "noise=laplace")).callbacks[-1]
    assert type(certifier.noise) is LaplaceNoise and certifier.norm == "l1"


@pytest.mark.slow  # trains and certifies a segmentation model
def test_laplace_segcertify_run_states_its_noise_and_l1_radius(make_cfg, tmp_path):
    run = build_run(make_cfg(*TINY, *SEG, "noise=laplace"))
    run.trainer.fit(run.module, datamodule=run.datamodule)
    metadata, _ = read_table(tmp_path / "segcertify.tsv", [], "segcertify")
    assert metadata["noise"] == "laplace" and metadata["norm"] == "l1"
    taus = json.loads(metadata["tau"])
    expected = [LaplaceNoise(0.25).radius(tau, "l1") for tau in taus]
    assert json.loads(metadata["radius"]) == pytest.approx(expected)
    summary = run.callbacks[-1].summary
    assert summary["cert/l1/radius"] == pytest.approx(expected[0])
    assert "cert/radius" not in summary
    assert (tmp_path / "certified_pixel_accuracy.tsv").exists()


@pytest.mark.parametrize("name", ["laplace", "uniform"])
def test_center_smoothing_refuses_other_noises_in_one_line(make_cfg, name):
    with pytest.raises(Exception) as raised:  # noqa: PT011 (Hydra wraps it; the cause is checked)
        build_run(make_cfg(*TINY, "+experiment=shapes_box_center", f"noise={name}"))
    error = config_error_in(raised.value)
    assert error is not None and "\n" not in str(error)
    assert str(error).startswith("certify.noise: center smoothing needs the Gaussian")
    assert f"noise={name} is not supported" in str(error)
