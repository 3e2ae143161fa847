"""One-line ConfigErrors of the median certifier's settings and outputs."""

from __future__ import annotations

import pytest
import torch

from smoothcert.certifiers.median import PercentileSmooth, as_output_vectors
from smoothcert.errors import ConfigError
from smoothcert.noise import GaussianNoise, LaplaceNoise


def build(**settings) -> PercentileSmooth:
    options = {"eps": 0.36, "n": 2000, "alpha": 2e-5, **settings}
    return PercentileSmooth(lambda b: b.flatten(1), GaussianNoise(0.25), **options)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"p": 1.0}, r"certify.p=1.0 must lie in \(0, 1\)"),
        ({"p": 0.0}, r"certify.p=0.0 must lie in \(0, 1\)"),
        ({"eps": -0.1}, "certify.eps=-0.1 must be a radius >= 0"),
        ({"eps": []}, "certify.eps"),
        ({"alpha": 1.5}, "certify.alpha"),
        ({"n": 0}, "certify.n"),
        ({"guarantee": "joint"}, "certify.guarantee='joint'"),
    ],
)
def test_bad_settings(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        build(**settings)
    assert "\n" not in str(error.value)


def test_n_too_small_names_the_smallest_n() -> None:
    certifier = build(n=100)
    with pytest.raises(ConfigError, match=r"use certify.n >= 148 ") as error:
        certifier.check_certifiable(1)  # alpha / 2 = 1e-5 per bound, as the reference's 0.99999
    assert "\n" not in str(error.value)
    build(n=148).check_certifiable(1)
    with pytest.raises(ConfigError, match=r"m=4"):  # Bonferroni over 8 bounds needs more
        build(n=148, guarantee="simultaneous").check_certifiable(4)


def test_output_must_be_a_real_vector() -> None:
    assert as_output_vectors(torch.ones(5)).shape == (5, 1)
    for bad in (torch.ones(2, 3, 4), torch.ones(2, 3, dtype=torch.long)):
        with pytest.raises(ConfigError, match="real vector"):
            as_output_vectors(bad)


def test_noise_without_worst_case_mass() -> None:
    with pytest.raises(ConfigError, match="noise=laplace"):
        PercentileSmooth(lambda b: b, LaplaceNoise(0.25), 0.1)


@pytest.mark.parametrize(
    ("task", "suggestion"),
    [("detection", "use certify=median"), ("box_regression", "certify=center or certify=median")],
)
def test_a_classification_certifier_on_a_regression_model_points_to_median(task, suggestion):
    from callbacks.certification.checks import check_task

    with pytest.raises(ConfigError, match=suggestion) as error:
        check_task("cohen", ("classification",), task)
    assert "\n" not in str(error.value)
