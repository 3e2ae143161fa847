"""The regime contract: each regime states its noise, how it augments a batch and the model output
kinds it trains; a task module whose output kind a regime does not fit gets one line at set-up."""

from __future__ import annotations

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from conftest import CONF
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise
from smoothcert.perturbation import ADDITIVE
from smoothcert.regimes import (
    MACER,
    ConsistencyRegularization,
    GaussianAugmentation,
    SegmentationConsistency,
    SmoothAdv,
    StabilityTraining,
    TrainingObjective,
    regimes_for,
)
from smoothcert.regimes.base import CLASS_LOGITS, LABEL_MAP

REGIME_FILES = sorted((CONF / "regime").glob("*.yaml"))


@pytest.mark.parametrize("path", REGIME_FILES, ids=lambda p: p.stem)
def test_each_regime_config_names_its_own_option(path):
    """The names a mismatch suggests are the real ``regime=`` choices."""
    regime = hydra.utils.get_class(OmegaConf.load(path)["_target_"])
    assert issubclass(regime, TrainingObjective)
    assert regime.option == path.stem and regime.output_kinds


def test_the_regimes_that_fit_each_output_kind():
    assert regimes_for(CLASS_LOGITS) == [
        "gaussian",
        "consistency",
        "macer",
        "smoothadv",
        "smoothmix",
        "stability",
    ]
    assert regimes_for(LABEL_MAP) == ["gaussian", "seg_consistency"]
    assert regimes_for("image") == []


@pytest.mark.parametrize(
    ("regime", "kinds"),
    [
        (GaussianAugmentation, (CLASS_LOGITS, LABEL_MAP)),
        (ConsistencyRegularization, (CLASS_LOGITS,)),
        (SegmentationConsistency, (LABEL_MAP,)),
        (SmoothAdv, (CLASS_LOGITS,)),
        (MACER, (CLASS_LOGITS,)),
        (StabilityTraining, (CLASS_LOGITS,)),
    ],
)
def test_the_contract_states_noise_augmentation_and_kinds(regime, kinds):
    noise = GaussianNoise(0.25)
    contract = regime(noise).contract()
    assert contract.noise is noise and contract.output_kinds == kinds
    x = torch.rand(3, 1, 4, 4)
    torch.manual_seed(0)
    augmented = contract.augment(x)
    torch.manual_seed(0)
    assert torch.equal(augmented, noise(x))  # the noise's own draw, per example
    for kind in kinds:
        contract.check_fits(kind, "any")


def test_a_mismatch_is_one_line_naming_the_regimes_that_fit():
    with pytest.raises(ConfigError) as info:
        ConsistencyRegularization(GaussianNoise(0.25)).check_fits(LABEL_MAP, "segmentation")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("regime=consistency trains class_logits models")
    assert message.endswith("use regime=gaussian or regime=seg_consistency")
    with pytest.raises(ConfigError, match="use regime=gaussian or regime=consistency or "):
        SegmentationConsistency(GaussianNoise(0.25)).check_fits(CLASS_LOGITS, "classification")


def test_gaussian_augmentation_augments_with_its_perturbation():
    noise = GaussianNoise(0.25)
    regime = GaussianAugmentation(noise, ADDITIVE)
    x = torch.rand(2, 1, 3, 3)
    torch.manual_seed(1)
    augmented = regime.contract().augment(x)
    torch.manual_seed(1)
    assert torch.equal(augmented, noise(x))


class Unstated(TrainingObjective):
    def __init__(self, noise: nn.Module | None) -> None:
        super().__init__()
        self.noise = noise

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return model(x).sum()


def test_a_regime_must_state_its_noise_and_kinds():
    with pytest.raises(ConfigError, match="states no output_kinds"):
        Unstated(GaussianNoise(0.25)).contract()
    with pytest.raises(ConfigError, match="keeps no noise"):
        Unstated(None).contract()
