"""CC-Cert: the Chernoff-Cramer bound in log space against a case where P(Y >= a) and the exact
bound are known, overflow-free where the reference's float32 computation gives NaN, and the
certifier end to end on a brightness classifier."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from smoothcert.certifiers.cccert import (
    CCCert,
    cc_cert_estimate,
    chernoff_bound,
    era,
    pca,
    t_grid,
)
from smoothcert.errors import ConfigError
from smoothcert.models import DigitsCNN
from smoothcert.models.classifiers import NormalizedClassifier
from smoothcert.noise import GaussianNoise, RayleighNoise
from smoothcert.transforms import Brightness, BrightnessContrast, Gamma, Rotation
from tests.transforms.test_brightness import MeanAbove


def kl(a: float, q: float) -> float:
    return a * math.log(a / q) + (1 - a) * math.log((1 - a) / (1 - q))


@pytest.mark.parametrize(("q", "a"), [(0.05, 0.3), (0.2, 0.5), (0.01, 0.9)])
def test_bernoulli_bound_is_the_kl_bound_and_above_the_truth(q: float, a: float) -> None:
    """Y in {0, 1} with P(Y = 1) = q: P(Y >= a) = q, and the Chernoff-Cramer bound is
    exp(-KL(a || q)), reached at t = ln(a (1 - q) / (q (1 - a)))."""
    y = np.zeros(1000)
    y[: round(q * 1000)] = 1.0  # the exact distribution, in proportion
    t_star = math.log(a * (1 - q) / (q * (1 - a)))
    fine = np.linspace(1e-4, 2 * t_star, 2001)
    bound = float(chernoff_bound(y, a, fine))
    assert bound == pytest.approx(math.exp(-kl(a, q)), rel=1e-5)
    assert bound >= q


def test_large_t_does_not_overflow() -> None:
    y = np.random.default_rng(0).uniform(0, 1, 1000)
    t = t_grid(1e-4, 1e4, 500)
    with np.errstate(over="ignore"):
        naive = np.exp(t[:, None] * y.astype(np.float32)[None, :].astype(np.float32)).mean(1)
    assert not np.all(np.isfinite(naive))  # the float32 reference computation overflows
    bound = float(chernoff_bound(y, 0.95, t))
    assert np.isfinite(bound) and 0.05 <= bound <= 1.0


def test_the_estimate_over_random_samples_is_probabilistic() -> None:
    """Y ~ U[0, 1], a = 0.8: P(Y >= a) = 0.2. The estimate (10 groups of 100, over delta) is
    above 0.2 in almost every trial; it is a heuristic, so we check the rate, not every trial."""
    rng = np.random.default_rng(1)
    t = t_grid(1e-4, 50, 100)
    below = sum(
        cc_cert_estimate(rng.uniform(0, 1, 1000), 0.8, 10, 0.9, t) < 0.2 for _ in range(300)
    )
    assert below <= 3
    with pytest.raises(Exception, match="delta"):
        cc_cert_estimate(np.zeros(10), 0.1, 1, 0.0)


def test_cccert_on_a_brightness_classifier() -> None:
    """[mean(x) > t] under brightness U[-0.4, 0.4]: an image with mean 0.5 + gap. With gap above
    0.4 no transformation in the range changes the answer (estimate tiny, ERA 1); with gap 0.1
    about (0.4 - 0.1) / 0.8 of the range does (estimate above that)."""
    model = MeanAbove(0.5)
    brightness = Brightness(GaussianNoise(0.1))
    cert = CCCert(
        model, brightness, [-0.4], [0.4], nsamples=100, nbounds=10, t=t_grid(1e-4, 1e3, 200)
    )
    far = cert.certify(torch.full((1, 4, 4), 0.95), 1, torch.Generator().manual_seed(0))
    near = cert.certify(torch.full((1, 4, 4), 0.6), 1, torch.Generator().manual_seed(0))
    assert far.correct and far.grid_correct and far.probability == far.resolution == 1e-3
    assert near.correct and not near.grid_correct and near.probability >= 0.3 / 0.8
    assert pca([far, near], 2e-3) == 0.5 and era([far, near]) == 0.5
    with pytest.raises(ConfigError, match="1000 samples per example cannot resolve"):
        pca([far, near], 1e-4)  # below what 1,000 samples resolve


def test_ranges_are_in_the_transformations_units_whatever_the_noise() -> None:
    """One user range, one parameter set and one set of images: gamma in [0.5, 2] under Rayleigh
    and under log-normal smoothing (the draws of the latter are exponentiated, the former's are
    not), and contrast k in [-0.2, 0.2] whatever sigma_k (the draws of k are rescaled by it)."""
    x = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(0))
    model = MeanAbove(0.5)
    for pair, low, high in [
        ((Gamma(RayleighNoise(0.5)), Gamma(GaussianNoise(0.3))), [0.5], [2.0]),
        (
            (
                BrightnessContrast(GaussianNoise(0.5), sigma_k=0.05),
                BrightnessContrast(GaussianNoise(0.2), sigma_k=0.4),
            ),
            [-0.2, -0.3],
            [0.2, 0.3],
        ),
    ]:
        certs = [CCCert(model, p, low, high, nsamples=50, nbounds=2, clip=False) for p in pair]
        params = [c.sample_parameters(torch.Generator().manual_seed(1)) for c in certs]
        assert torch.equal(params[0], params[1])
        assert params[0][:, 0].min() >= low[0] and params[0][:, 0].max() <= high[0]
        images = [c.transformed(x, q) for c, q in zip(certs, params, strict=True)]
        assert torch.allclose(images[0], images[1])
    gamma = CCCert(model, Gamma(GaussianNoise(0.3)), [2.0], [2.0], nsamples=1, nbounds=1)
    assert torch.allclose(gamma.transformed(x, torch.tensor([[2.0]])), x.pow(2)[None])


def test_clipping_is_an_option_on_by_default() -> None:
    x = torch.tensor([[[0.1, 0.9]]])
    brightness = Brightness(GaussianNoise(0.1))
    shift = torch.tensor([[0.3]])
    clipped = CCCert(MeanAbove(0.5), brightness, [-0.4], [0.4]).transformed(x, shift)
    raw = CCCert(MeanAbove(0.5), brightness, [-0.4], [0.4], clip=False).transformed(x, shift)
    assert torch.allclose(clipped, torch.tensor([[[[0.4, 1.0]]]]))
    assert torch.allclose(raw, torch.tensor([[[[0.4, 1.2]]]]))


class CornerLit(nn.Module):
    """Class 1 when the top-left pixel is above 0.5, else class 0 (logits +-(pixel - 0.5))."""

    def forward(self, x: Tensor) -> Tensor:
        s = x[:, 0, 0, 0].double() - 0.5
        return torch.stack([-s, s], 1).float()


def test_identity_puts_the_clean_image_through_the_pipeline() -> None:
    """Rotation's vignette zeroes the corner at every angle, 0 included. Compared with the raw
    image (corner 1) every rotated copy changes the answer; compared with the pipeline at angle 0
    (``identity=[0]``) none does."""
    rotation = Rotation(GaussianNoise(1.0))
    x, t = torch.ones(1, 16, 16), t_grid(1e-4, 1e3, 200)
    raw = CCCert(CornerLit(), rotation, [-10], [10], nsamples=20, nbounds=5, t=t)
    same = CCCert(CornerLit(), rotation, [-10], [10], nsamples=20, nbounds=5, t=t, identity=[0])
    moved = raw.certify(x, 1, torch.Generator().manual_seed(0))
    kept = same.certify(x, 0, torch.Generator().manual_seed(0))
    assert moved.predict == 1 and moved.probability == 1.0
    assert kept.predict == 0 and kept.correct and kept.probability == 1 / 100  # "< 1/100"
    with pytest.raises(Exception, match="identity value"):
        CCCert(CornerLit(), rotation, [-10], [10], identity=[0, 0])


def _table_script():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "cccert_table.py"
    spec = importlib.util.spec_from_file_location("cccert_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_script_loads_the_checkpoints_net_and_rotation_pipeline(tmp_path) -> None:
    """The benchmark rebuilds the net with the checkpoint's own settings (a strided stem here:
    the default net gives other outputs) and rotates through the pipeline the run trained with,
    or the bare rotation for a run without one."""
    script = _table_script()
    settings = {"num_classes": 10, "in_channels": 1, "width": 16, "stem_stride": 2}
    model = NormalizedClassifier(DigitsCNN(**settings), [0.1], [0.3]).eval()
    trained = {"_target_": "smoothcert.transforms.Rotation", "blur_sigma": 1.0, "edge": 3.0}
    config = {"net": {"_target_": "smoothcert.models.DigitsCNN", **settings}}
    config["objective"] = {"perturbation": trained}
    hparams = {"num_classes": 10, "dataset": "digits32", "mean": [0.1], "std": [0.3]}
    state = {
        "hyper_parameters": hparams,
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "smoothcert": {"config": {"model": config}},
    }
    torch.save(state, tmp_path / "run.ckpt")
    loaded, dataset, perturbation = script.load(str(tmp_path / "run.ckpt"))
    x = torch.rand(3, 1, 32, 32)
    assert dataset == "digits32" and torch.allclose(loaded(x), model(x))
    own = script.transformation("rotation", perturbation, bare=False).pipeline
    assert (own.vignette, own.blur_sigma, own.edge) == (True, 1.0, 3.0)
    for settings, bare in [(perturbation, True), ({}, False)]:
        plain = script.transformation("rotation", settings, bare).pipeline
        assert (plain.vignette, plain.blur_sigma) == (False, 0.0)


class Recording(nn.Module):
    """MeanAbove(0.5) that records each forward's batch size and autocast state."""

    def __init__(self, logits: float | None = None) -> None:
        super().__init__()
        self.calls: list[tuple[int, bool]] = []
        self.logits = logits

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append((x.shape[0], torch.is_autocast_enabled("cpu")))
        out = MeanAbove(0.5)(x)
        return out if self.logits is None else torch.full_like(out, self.logits)


def test_cccert_samples_through_the_sampler() -> None:
    """Batched (the estimate is the same at any batch size), autocast when asked, NaN logits
    refused, and any callable as the model (eval mode via the independence probe)."""
    brightness, x = Brightness(GaussianNoise(0.1)), torch.full((1, 4, 4), 0.8)
    settings = {"nsamples": 50, "nbounds": 4, "t": t_grid(1e-4, 1e3, 50)}
    whole, batched = Recording(), Recording()
    results = [
        CCCert(model, brightness, [-0.4], [0.4], batch_size=size, **settings).certify(
            x, 1, torch.Generator().manual_seed(0)
        )
        for model, size in ((whole, 1000), (batched, 64))
    ]
    assert results[0] == results[1] and 0 < results[0].probability < 1
    assert [size for size, _ in batched.calls[-5:]] == [64, 64, 64, 8, 20]  # 200 moved, 20 grid
    autocast = Recording()
    cert = CCCert(autocast, brightness, [-0.4], [0.4], autocast_dtype=torch.bfloat16, **settings)
    cert.certify(x, 1, torch.Generator().manual_seed(0))
    assert autocast.calls[-1] == (20, True)
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        CCCert(Recording(math.nan), brightness, [-0.4], [0.4], **settings).certify(
            x, 1, torch.Generator().manual_seed(0)
        )
    function = CCCert(lambda z: MeanAbove(0.5)(z), brightness, [-0.4], [0.4], **settings)
    assert function.certify(x, 1, torch.Generator().manual_seed(0)) == results[0]
