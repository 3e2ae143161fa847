"""model=timm takes local weights (model.net.weights=PATH) and refuses, at once and offline,
pretrained=true when timm's weights are not on this machine."""

from __future__ import annotations

import socket
import time

import pytest
import torch

from conftest import TINY
from lightning_modules.run.runner import build_run, config_error_in
from smoothcert.errors import ConfigError
from smoothcert.models.timm_classifier import timm_classifier


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty Hugging Face and torch hub caches, and any attempt to connect fails the test."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch_hub"))

    def no_network(*args, **kwargs):
        raise AssertionError("the network was reached")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


def test_pretrained_without_local_weights_is_refused_at_once(offline):
    import timm  # noqa: F401  (imported before the clock starts: only the refusal is timed)

    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^pretrained weights for resnet18 are not") as info:
        timm_classifier("resnet18", num_classes=3, pretrained=True)
    assert time.perf_counter() - start < 5
    assert "model.net.weights=PATH" in str(info.value) and "\n" not in str(info.value)


def test_model_timm_pretrained_is_refused_before_anything_is_built(offline, make_cfg, tmp_path):
    cfg = make_cfg(*TINY, "model=timm", "model.net.pretrained=true")
    with pytest.raises(Exception) as info:
        build_run(cfg)
    assert "are not available locally (nothing is downloaded)" in str(config_error_in(info.value))
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("num_classes", [1000, 3])
def test_weights_from_a_file_initialize_the_model(offline, tmp_path, num_classes):
    """timm's pretrained loading: every weight from the file; a head for another number of
    classes is left freshly initialized."""
    import timm

    saved = timm.create_model("resnet18", num_classes=1000).state_dict()
    torch.save(saved, tmp_path / "resnet18.pth")
    net = timm_classifier("resnet18", num_classes, weights=str(tmp_path / "resnet18.pth"))
    loaded = net.state_dict()
    for name, tensor in saved.items():
        if name.startswith("fc.") and num_classes != 1000:
            assert loaded[name].shape[0] == num_classes
        else:
            assert torch.equal(loaded[name], tensor), name


def test_weights_of_another_architecture_or_no_file_are_one_line(offline, tmp_path):
    import timm

    torch.save(timm.create_model("resnet10t").state_dict(), tmp_path / "other.pth")
    with pytest.raises(ConfigError, match=r"does not fit model.net.model_name=resnet18 \("):
        timm_classifier("resnet18", 10, weights=str(tmp_path / "other.pth"))
    with pytest.raises(ConfigError, match=r"^model.net.weights=\S+ is not a file"):
        timm_classifier("resnet18", 10, weights=str(tmp_path / "missing.pth"))
