"""Diffusion denoised smoothing (Carlini et al. 2023): the timestep rule, the [-1, 1] scaling,
the one-shot formula, loading a local diffusers DDPM, and the composition with a classifier."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest
import torch

from conftest import TINY, compose_config
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.errors import ConfigError
from smoothcert.models.denoisers import FrozenClassifier
from smoothcert.models.diffusion import (
    DiffusionDenoiser,
    load_diffusion_denoiser,
    timestep_for_sigma,
)
from smoothcert.records import read_records

diffusers = pytest.importorskip("diffusers")
DDPMScheduler, UNet2DModel = diffusers.DDPMScheduler, diffusers.UNet2DModel


def tiny_unet(channels: int = 1, out_channels: int | None = None, seed: int = 0) -> UNet2DModel:
    """third_wave.md's tiny random UNet (about 42k parameters at 3 channels)."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8,
        in_channels=channels,
        out_channels=out_channels or channels,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ).eval()


def save_pipeline(folder: Path, unet: UNet2DModel, **scheduler: object) -> Path:
    """A pipeline folder as diffusers writes it: unet/ and scheduler/."""
    unet.save_pretrained(folder / "unet")
    DDPMScheduler(**scheduler).save_pretrained(folder / "scheduler")
    return folder


def linear_abar(t: int, steps: int = 1000) -> float:
    """abar_t of DDPM's linear schedule (beta 1e-4 .. 0.02), computed by hand in float64; the
    float32 rounding of diffusers' table is applied last, as diffusers stores it."""
    betas = [1e-4 + (0.02 - 1e-4) * i / (steps - 1) for i in range(steps)]
    return float(torch.tensor(math.prod(1 - b for b in betas[: t + 1]), dtype=torch.float32))


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Nothing here may reach the network: a download attempt fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize(
    "schedule,expected",
    [
        ({}, {0.12: 70, 0.25: 145, 0.5: 259, 1.0: 396}),  # diffusers' default: linear, 1000
        (
            {"num_train_timesteps": 4000, "beta_schedule": "squaredcos_cap_v2"},
            {0.12: 573, 0.25: 1158, 0.5: 1984, 1.0: 2809},  # improved-diffusion's CIFAR model
        ),
    ],
)
def test_the_timestep_is_the_first_whose_noise_reaches_twice_sigma(schedule, expected):
    abar = DDPMScheduler(**schedule).alphas_cumprod
    found = {sigma: timestep_for_sigma(abar, sigma) for sigma in expected}
    assert found == expected  # the reference repository's timesteps (third_wave.md section 3)
    for sigma, t in found.items():
        ratio = (1 - abar.double()) / abar.double()
        assert ratio[t] >= 4 * sigma**2 > ratio[t - 1]


def test_a_sigma_beyond_the_schedule_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"^sigma=100.0 is noisier") as info:
        timestep_for_sigma(DDPMScheduler().alphas_cumprod, 100.0)
    assert "\n" not in str(info.value)


class Recorder(torch.nn.Module):
    """A stand-in UNet that keeps its input x_t and predicts zero noise."""

    def forward(self, x_t, t):
        self.x_t, self.t = x_t, t
        return type("Output", (), {"sample": torch.zeros_like(x_t)})()


@pytest.mark.parametrize("sigma", [0.12, 0.25, 0.5])
def test_the_noisy_input_has_the_ddpm_marginal_of_its_timestep(sigma):
    """x_t = sqrt(abar_t) (2 (x + delta) - 1) holds the DDPM's noise sqrt(1 - abar_t) eps at t:
    fails if the timestep is matched to sigma instead of 2 sigma, or if x is not mapped to
    [-1, 1] (either gives the model half or twice the noise it assumes)."""
    abar = DDPMScheduler().alphas_cumprod
    recorder = Recorder()
    denoiser = DiffusionDenoiser(recorder, abar, sigma)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 8, 8, generator=generator).expand(4000, 1, 8, 8)
    denoiser(x + sigma * torch.randn(x.shape, generator=generator))
    a = float(abar[denoiser.timestep])
    assert torch.all(recorder.t == denoiser.timestep)
    residual = recorder.x_t - math.sqrt(a) * (2 * x - 1)  # what remains is the noise
    assert residual.mean().abs() < 0.01
    assert residual.std().item() == pytest.approx(math.sqrt(1 - a), rel=0.02)


def test_one_shot_denoising_matches_the_formula_computed_by_hand(tmp_path):
    folder = save_pipeline(tmp_path / "ddpm", tiny_unet())
    denoiser = load_diffusion_denoiser(str(folder), sigma=0.25, channels=1)
    assert denoiser.timestep == 145
    y = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    a = linear_abar(145)
    x_t = math.sqrt(a) * (2 * y - 1)
    with torch.no_grad():
        eps = tiny_unet()(x_t, torch.full((3,), 145)).sample
        expected = ((x_t - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1) / 2 + 0.5
        assert torch.allclose(denoiser(y), expected, atol=1e-6)


@pytest.mark.parametrize(
    "prediction,out_channels,variance",
    [
        ("epsilon", 1, "fixed_small"),
        ("epsilon", 2, "learned_range"),  # learned variance: the first C channels are the noise
        ("sample", 1, "fixed_small"),
        ("v_prediction", 1, "fixed_small"),
    ],
)
def test_one_shot_denoising_is_diffusers_predicted_original_sample(
    tmp_path, prediction, out_channels, variance
):
    """The library as the oracle: DDPMScheduler.step's pred_original_sample (clipped to [-1, 1])
    from the same x_t and model output."""
    unet = tiny_unet(out_channels=out_channels)
    schedule = {"prediction_type": prediction, "variance_type": variance}
    folder = save_pipeline(tmp_path / "ddpm", unet, **schedule)
    denoiser = load_diffusion_denoiser(str(folder), sigma=0.5, channels=1)
    y = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    t = denoiser.timestep
    scheduler = DDPMScheduler(**schedule)
    x_t = scheduler.alphas_cumprod[t].sqrt() * (2 * y - 1)
    with torch.no_grad():
        output = unet(x_t, t).sample
        step = scheduler.step(output, t, x_t, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(2 * denoiser(y) - 1, step.pred_original_sample, atol=1e-5)


@pytest.mark.parametrize("layout", ["pipeline", "unet_folder"])
def test_a_saved_model_loads_back_exactly_frozen_and_offline(tmp_path, layout):
    unet = tiny_unet(channels=3)
    if layout == "pipeline":
        folder = save_pipeline(tmp_path / "ddpm", unet)
    else:
        folder = tmp_path / "ddpm"
        unet.save_pretrained(folder)
        DDPMScheduler().save_pretrained(folder)
    denoiser = load_diffusion_denoiser(str(folder), sigma=1.0, channels=3)
    assert denoiser.timestep == 396
    loaded = denoiser.unet.state_dict()
    assert loaded.keys() == unet.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in unet.state_dict().items())
    assert not any(p.requires_grad for p in denoiser.parameters())
    assert not denoiser.train().training and not denoiser.unet.training
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    denoiser(x).sum().backward()  # inputs get gradients (attacks), weights do not
    assert x.grad is not None and all(p.grad is None for p in denoiser.parameters())


def broken(tmp_path: Path, what: str) -> str:
    folder = save_pipeline(tmp_path / "ddpm", tiny_unet())
    if what == "no_weights":
        (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    elif what == "no_scheduler":
        (folder / "scheduler" / "scheduler_config.json").unlink()
    elif what == "no_unet":
        (folder / "unet" / "config.json").unlink()
    elif what == "bad_config":
        (folder / "unet" / "config.json").write_text("{not json")
    elif what == "six_outputs":
        save_pipeline(folder, tiny_unet(out_channels=3))
    return {"missing_dir": str(tmp_path / "nowhere"), "unset": ""}.get(what, str(folder))


@pytest.mark.parametrize(
    "what,channels,message",
    [
        ("unset", 1, "model.pretrained_dir is not set"),
        ("missing_dir", 1, "is not a directory"),
        ("no_unet", 1, "has no UNet"),
        ("no_weights", 1, "has no UNet weights"),
        ("no_scheduler", 1, "has no scheduler_config.json"),
        ("bad_config", 1, "does not load as a diffusers UNet2DModel"),
        ("six_outputs", 1, "3 output channels for 1 input channels"),
        ("fine", 3, "takes 1-channel images but data has 3 channels"),
    ],
)
def test_bad_model_folders_are_one_line_errors_naming_the_setting(
    tmp_path, what, channels, message
):
    with pytest.raises(ConfigError) as info:
        load_diffusion_denoiser(broken(tmp_path, what), sigma=0.25, channels=channels)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("model.pretrained_dir")


def diffusion_cfg(out: Path, *overrides: str):
    return compose_config(["+experiment=digits_diffusion_denoiser", *TINY, *overrides], out)


def test_a_missing_model_folder_fails_before_the_classifier_is_read(tmp_path):
    cfg = diffusion_cfg(tmp_path, f"model.pretrained_dir={tmp_path / 'nowhere'}")
    with pytest.raises(Exception) as info:  # classifier_ckpt is unset: its error would come next
        build_run(cfg)
    error = config_error_in(info.value)
    assert isinstance(error, ConfigError) and "model.pretrained_dir=" in str(error)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_end_to_end_certifies_the_composition_trains_nothing_and_certify_py_repeats_it(tmp_path):
    clean = tmp_path / "clean"
    run = build_run(compose_config(["+experiment=digits_clean", *TINY, "certify=none"], clean))
    run.trainer.fit(run.module, datamodule=run.datamodule)
    ckpt = clean / "checkpoints" / "last.ckpt"
    folder = save_pipeline(tmp_path / "ddpm", tiny_unet())
    out = tmp_path / "diffusion"
    cfg_overrides = [
        f"model.pretrained_dir={folder}",
        "certify.n0=20",
        "certify.n=200",
        "certify.num_examples=3",
    ]
    cfg = diffusion_cfg(out, f"classifier_ckpt={ckpt}", *cfg_overrides)
    run = build_run(cfg)
    module = run.module
    before = {k: v.clone() for k, v in module.state_dict().items()}
    run.trainer.fit(module, datamodule=run.datamodule)
    assert isinstance(module.model.classifier, FrozenClassifier)
    assert isinstance(module.model.denoiser, DiffusionDenoiser)
    after = module.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # nothing trained
    metadata, records = read_records(out / "certify.tsv")
    assert len(records) == 3 and metadata["sigma"] == "0.25"
    assert metadata["normalization"].startswith("mean=[0.3053]")
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["smoothcert"]
    assert saved["task"] == "denoised_classification" and saved["diffusion_timestep"] == 145
    # certify.py rebuilds the module from the checkpoint's config and certifies the same records
    again = tmp_path / "again"
    cfg = compose_config(
        ["+experiment=digits_diffusion_denoiser", *TINY, f"classifier_ckpt={ckpt}", *cfg_overrides]
        + [f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"],
        again,
        config_name="certify_checkpoint",
    )
    run = build_run(cfg, fitting=False)
    run.trainer.test(run.module, datamodule=run.datamodule, ckpt_path=cfg.ckpt_path)
    _, repeated = read_records(again / "certify.tsv")
    assert [(r.idx, r.predict, r.radius) for r in repeated] == [
        (r.idx, r.predict, r.radius) for r in records
    ]
